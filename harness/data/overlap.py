"""Disjoint data, checked at run start: client data, plugins' training prompts and eval sets by prompt digest.

Every set is a :class:`harness.types.PromptSet`: the engine builds ``client`` from the run's mixture (the
samples handed to clients), plugins declare theirs through the ``declare_prompts`` hook (eval plugins
their scored items as role ``eval``, a guard filter its ``train_prompts.sha256`` as role ``guard``, the
CAI aligner its prompts as role ``cai``). Prompts are equal when their normalised texts are
(:func:`harness.data.normalize.prompt_digest`). For every pair of roles the number of shared distinct
prompts is logged as ``data/overlap_<a>_<b>`` (training roles, then ``client``, then ``eval``:
``data/overlap_guard_eval``, ``data/overlap_cai_client``, ``data/overlap_client_eval``).

Policy (docs/data.md): a training role (anything but ``client`` and ``eval``) sharing a prompt with an eval set
or with the client data refuses the run, and so does client data sharing a prompt with an eval set, unless
``data.allow_overlap`` is true; then the counts are logged and a warning names the sets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from harness.data.normalize import prompt_digest
from harness.data.samples import DataError
from harness.types import ChatSample, PromptSet

log = logging.getLogger(__name__)

CLIENT, EVAL = "client", "eval"
DIGEST_FILE = "train_prompts.sha256"
"""A trained guard's (or any training set's) prompts: one sha256 hex of the normalised prompt per line."""
_HEX = re.compile(r"^[0-9a-f]{64}$")
_ROLE = re.compile(r"^[a-z][a-z0-9]*$")
EXAMPLES = 3


class DataOverlapError(DataError):
    """Training or client data share prompts with an eval set (or training data with the client data)."""


def read_digest_file(path: Path | str) -> frozenset[str]:
    """The digests in a ``train_prompts.sha256`` file (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist (expected one sha256 hex of a normalised prompt per line)")
    digests = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip().lower()
        if not text or text.startswith("#"):
            continue
        if not _HEX.match(text):
            raise DataError(f"{path} line {n}: expected a sha256 hex digest (64 hex digits), got {line[:80]!r}")
        digests.add(text)
    return frozenset(digests)


def digest_file_set(role: str, name: str, path: Path | str) -> PromptSet:
    """A :class:`PromptSet` from a ``train_prompts.sha256`` file (a guard directory's, for instance)."""
    return PromptSet.from_digests(role, name, read_digest_file(path), str(path))


def client_set(samples: Iterable[ChatSample], source: str) -> PromptSet:
    return PromptSet.from_texts(CLIENT, f"client data (data.source={source})", (s.prompt for s in samples), source)


def _rank(role: str) -> tuple[int, str]:
    return (2 if role == EVAL else 1 if role == CLIENT else 0, role)


def _refused(a: str, b: str) -> bool:
    """Whether roles ``a`` < ``b`` (in metric order) must be disjoint: anything vs eval, training vs client."""
    return b == EVAL or b == CLIENT


@dataclass
class Clash:
    left: PromptSet
    right: PromptSet
    shared: frozenset[str]

    def describe(self) -> str:
        examples = [self.left.examples.get(d) or self.right.examples.get(d) for d in sorted(self.shared)]
        shown = [repr(e[:100]) for e in examples if e][:EXAMPLES]
        where = lambda s: f"{s.role} set {s.name!r}" + (f" ({s.origin})" if s.origin else "")  # noqa: E731
        return (f"{where(self.left)} and {where(self.right)} share {len(self.shared)} prompt(s)"
                + (f", e.g. {'; '.join(shown)}" if shown else ""))


def check_overlap(sets: list[PromptSet], allow: bool = False) -> dict[str, float]:
    """``data/overlap_<a>_<b>`` counts for every pair of roles present; raises :class:`DataOverlapError`
    on a refused overlap unless ``allow`` (then it logs a warning)."""
    for s in sets:
        if not _ROLE.match(s.role):
            raise ValueError(f"prompt set {s.name!r} has role {s.role!r}; roles are lower-case words (eval, guard, cai)")
    roles = sorted({s.role for s in sets}, key=_rank)
    union = {role: frozenset().union(*(s.digests for s in sets if s.role == role)) for role in roles}
    metrics = {f"data/overlap_{a}_{b}": float(len(union[a] & union[b])) for a, b in combinations(roles, 2)}
    clashes = []
    for left, right in combinations(sorted(sets, key=lambda s: _rank(s.role)), 2):
        if left.role == right.role or not _refused(left.role, right.role):
            continue
        shared = left.digests & right.digests
        if shared:
            clashes.append(Clash(left, right, shared))
    if clashes:
        lines = "\n  ".join(c.describe() for c in clashes)
        if not allow:
            raise DataOverlapError(
                f"refusing the run: its data sets overlap (prompts compared after normalisation):\n  {lines}\n"
                "Eval sets must be disjoint from the data anything trains on, and plugins' training data from the "
                "client data (docs/data.md). Use disjoint data, or force the run with --set data.allow_overlap=true "
                "(the counts are then logged as data/overlap_* metrics)."
            )
        log.warning("data sets overlap (data.allow_overlap=true, so the run goes on):\n  %s", lines)
    return metrics


def declared_sets(results: Iterable[object]) -> list[PromptSet]:
    """Flatten the ``declare_prompts`` hook's answers (a PromptSet, a list of them, or None per plugin)."""
    out: list[PromptSet] = []
    for result in results:
        items = [result] if isinstance(result, PromptSet) else list(result or [])
        for item in items:
            if not isinstance(item, PromptSet):
                raise TypeError(f"declare_prompts must return PromptSet objects, got {type(item).__name__}")
            out.append(item)
    return out


def drop_prompts(samples: list[ChatSample], digests: frozenset[str]) -> list[ChatSample]:
    """``samples`` whose prompt digest is not among ``digests`` (``data.exclude_shipped``)."""
    return [s for s in samples if prompt_digest(s.prompt) not in digests]
