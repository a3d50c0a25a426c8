"""The statistics behind a board: 95 % intervals for a cell and paired tests of a row against a baseline.

* :func:`wilson` - Wilson score interval of one rate (one seed, 0/1 items, e.g. AdvBench refusals).
* :func:`rate_interval` - Wilson's interval of a mean of item scores in [0, 1] (refusals, HHH): the run summary's
  and the board's.
* :func:`newcombe` - Newcombe's hybrid score interval of the difference of two independent rates (one seed, e.g.
  harmful requests refused less benign requests refused).
* :func:`bootstrap_mean` - percentile bootstrap over seeds and items (per-item scores of several seeds).
* :func:`t_interval` - Student t over per-seed values (metrics with no per-item data, e.g. held-out NLL).
* :func:`mcnemar_exact` - exact McNemar test of paired 0/1 outcomes (two-sided binomial test on discordant pairs).
* :func:`paired_bootstrap` - paired bootstrap of the mean difference of paired item scores (HHH, MT-Bench).

Items may come in strata (the refusal discrimination score's harmful and benign requests): the statistic is then
the mean of the strata's means, and every bootstrap resamples within each stratum, so each replicate keeps the
strata's sizes.

Every bootstrap draws from ``numpy.random.default_rng(SEED)`` with ``RESAMPLES`` resamples, so a board built
twice from the same runs shows the same numbers. No scipy needed (it is used for t quantiles when present).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
Z = 1.959963984540054  # the standard normal's 97.5 % quantile
SEED = 20240517
RESAMPLES = 10_000

# Student t 97.5 % quantiles for 1..30 degrees of freedom (used when scipy is absent).
T975 = (12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252, 2.306004135,
        2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546, 2.119905299,
        2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
        2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # wilson | newcombe | bootstrap | t

    def __str__(self) -> str:
        return f"[{self.low:.4g}, {self.high:.4g}] ({self.method})"


@dataclass(frozen=True)
class PairedTest:
    """A row minus its baseline on the same items (and seeds): mean difference, p-value and the test used."""

    diff: float
    p: float | None  # None: no test possible (no paired per-item data)
    test: str  # mcnemar | paired-bootstrap | seeds (difference of seed means, no test)
    pairs: int  # paired items (over all paired seeds)
    low: float | None = None  # 95 % interval of the difference (paired bootstrap only)
    high: float | None = None
    discordant: tuple[int, int] | None = None  # McNemar's b (row 1, baseline 0) and c (row 0, baseline 1)


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:  # pragma: no cover - scipy is installed with the harness's dependencies
        return T975[df - 1] if df <= len(T975) else Z + (Z**3 + Z) / (4 * df)


def wilson(successes: float, n: int, z: float = Z) -> Interval:
    """Wilson score interval for ``successes`` out of ``n`` (n >= 1)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends (rounding leaves ~1e-18)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high, "wilson")


def rate_interval(mean: float, n: int) -> Interval:
    """Wilson's interval of the mean of ``n`` item scores in [0, 1]: 0/1 refusals, or HHH's share of an item's two
    orders answered right (conservative there: such scores vary no more than 0/1 ones of the same mean). The run
    summary and a board's one-seed cell both use it, so they agree on the same data."""
    return wilson(mean * n, n)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z) -> Interval:
    """Interval of ``x1/n1 - x2/n2`` for two independent rates from their Wilson intervals (Newcombe, 1998,
    "Interval estimation for the difference between independent proportions", Stat. Med. 17, method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    a, b = wilson(x1, n1, z), wilson(x2, n2, z)
    low = p1 - p2 - math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
    high = p1 - p2 + math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
    return Interval(max(-1.0, low), min(1.0, high), "newcombe")


def balanced_newcombe(harmful_refused: int, harmful: int, benign_refused: int, benign: int, z: float = Z) -> Interval:
    """Interval of the balanced accuracy ``(refused harmful + answered benign) / 2`` = ``0.5 + (p1 - p2) / 2``: the
    Newcombe interval of the two refusal rates' difference (:func:`newcombe`), mapped to that scale."""
    diff = newcombe(harmful_refused, harmful, benign_refused, benign, z)
    return Interval(0.5 + diff.low / 2, 0.5 + diff.high / 2, diff.method)

def t_interval(values: Sequence[float]) -> Interval | None:
    """mean ± t(0.975, n-1) · s / sqrt(n) over per-seed values; None with fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    s = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * s / math.sqrt(n)
    return Interval(mean - half, mean + half, "t")


Strata = Sequence[str] | None  # one stratum name per item; None: one stratum


def _groups(values: np.ndarray, strata: Strata) -> list[np.ndarray]:
    """``values`` split by stratum (in order of first appearance); one group without strata."""
    if strata is None:
        return [values]
    if len(strata) != len(values):
        raise ValueError(f"{len(strata)} strata for {len(values)} items")
    labels = np.asarray(strata)
    return [values[labels == name] for name in dict.fromkeys(strata)]


def stratified_mean(values: Sequence[float], strata: Strata = None) -> float:
    """The mean of the strata's means (the plain mean without strata)."""
    return float(np.mean([g.mean() for g in _groups(np.asarray(values, dtype=float), strata)]))


def _resampled_means(values: np.ndarray, rng: np.random.Generator, resamples: int, strata: Strata = None) -> np.ndarray:
    """``resamples`` means of ``values`` resampled with replacement (within each stratum: the strata's means' mean)."""
    means = []
    for group in _groups(values, strata):
        idx = rng.integers(0, len(group), size=(resamples, len(group)))
        means.append(group[idx].mean(axis=1))
    return np.mean(means, axis=0)


def bootstrap_mean(per_seed: Sequence[Sequence[float]], resamples: int = RESAMPLES, seed: int = SEED,
                   strata: Sequence[Strata] | None = None) -> Interval:
    """Percentile interval of the mean over seeds of each seed's item mean, resampling seeds and items.

    Each replicate draws the seeds with replacement, then each drawn seed's items with replacement (within
    ``strata[seed]`` when given), and averages the drawn seeds' item means. With one seed this is the plain
    bootstrap over items.
    """
    rng = np.random.default_rng(seed)
    strata = strata or [None] * len(per_seed)
    item_means = np.stack([_resampled_means(np.asarray(v, dtype=float), rng, resamples, s)
                           for v, s in zip(per_seed, strata)])
    k = len(per_seed)
    if k == 1:
        stats = item_means[0]
    else:
        chosen = rng.integers(0, k, size=(resamples, k))
        stats = item_means[chosen, np.arange(resamples)[:, None]].mean(axis=1)
    low, high = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(float(low), float(high), "bootstrap")


def binomial_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact."""
    return math.fsum(math.comb(n, i) for i in range(k + 1)) / 2**n


def mcnemar_exact(row: Sequence[bool], base: Sequence[bool]) -> PairedTest:
    """Exact McNemar test on paired 0/1 outcomes: p = min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2)."""
    b = sum(1 for x, y in zip(row, base) if x and not y)
    c = sum(1 for x, y in zip(row, base) if y and not x)
    n = len(row)
    p = 1.0 if b + c == 0 else min(1.0, 2 * binomial_cdf(min(b, c), b + c))
    return PairedTest((b - c) / n, p, "mcnemar", n, discordant=(b, c))


def paired_bootstrap(row: Sequence[float], base: Sequence[float], resamples: int = RESAMPLES,
                     seed: int = SEED, strata: Strata = None) -> PairedTest:
    """Mean of row - base over paired items (the strata's means' mean with ``strata``), its percentile interval,
    and a two-sided bootstrap p-value.

    p = (1 + #{|mean* - mean| >= |mean|}) / (1 + resamples): how often the resampled mean, centred on the
    observed one (the null of no difference), lies at least as far from 0 as the observed mean.
    """
    diffs = np.asarray(row, dtype=float) - np.asarray(base, dtype=float)
    observed = stratified_mean(diffs, strata)
    means = _resampled_means(diffs, np.random.default_rng(seed), resamples, strata)
    low, high = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    if np.all(diffs == diffs[0]):  # no spread: the difference is certain (zero or not)
        p = 1.0 if observed == 0 else 1 / (1 + resamples)
    else:
        extreme = int(np.sum(np.abs(means - observed) >= abs(observed) - 1e-12))
        p = (1 + extreme) / (1 + resamples)
    return PairedTest(observed, min(1.0, p), "paired-bootstrap", len(diffs), float(low), float(high))
