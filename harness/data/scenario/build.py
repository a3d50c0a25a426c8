"""`harness data harmful-scenario`: answer the scenario's prompts, label the replies, write the labelled JSONL.

The recipe is the attack data of Ye et al. 2024 (arXiv:2406.10630): malicious clients hold harmful requests answered
by an off-the-shelf, unaligned model. Red rows are the untuned base's replies to the project's harmful requests that
no refusal rule matches; acceptable rows are its replies to SQuARe's non-sensitive questions and, for a share of
them, the safe base's refusals of other harmful requests (SQuARe's red vs acceptable, Lee et al. 2023). Every prompt
is checked against every set the harness trains or evaluates on before anything is generated (docs/data.md).

The guard's part (``part="guard"``) is built the same way from the guard's own requests, checked against the
clients' part too; there every harmful request is offered to both models, so a request may give a red and an
acceptable row (the guard learns the reply, not the request).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from harness.data.normalize import prompt_digest
from harness.data.scenario.labels import ANSWER, BENIGN_RULE, RED_RULE, REFUSAL_RULE, is_clean_refusal, verdict
from harness.data.scenario.pool import (
    GUARD_BENIGN_FILE,
    GUARD_POOL_FILE,
    POOL_FILE,
    Request,
    benign_requests,
    harmful_requests,
    pool_sha256,
    source_name,
)
from harness.data.scenario.reference import check_disjoint, reference_sets
from harness.data.scenario.settings import GUARD, ScenarioSettings
from harness.types import PromptSet

BUILDER = "harness data harmful-scenario"
META_SUFFIX = ".meta.json"
RED, BENIGN_ANSWER, REFUSAL = "red", "benign", "refusal"  # a row's kind
CHUNK_BATCHES = 2  # batches per refusal-model call: it stops once it has the refusals it needs


class ScenarioError(RuntimeError):
    """The build produced no usable data set (no red or no acceptable rows)."""


@dataclass(frozen=True)
class Generator:
    """Which weights answered: the harness's model name, where it loaded from, a shipped safe base's adapter digest
    (:func:`harness.safe_base.load.adapter_digest`), a sha256 of every parameter as loaded, and their dtype."""

    model: str
    location: str
    adapter_digest: str | None
    weights_sha256: str
    dtype: str


class Answerer:
    """One model answering single-turn requests greedily through its chat template, trimmed to full sentences."""

    def __init__(self, name: str, settings: ScenarioSettings):
        import torch

        from harness.config import ModelConfig
        from harness.model_handle import GlobalModel
        from harness.models import TINY_RANDOM, load_base, model_location
        from harness.safe_base.load import adapter_digest

        cfg = ModelConfig(name=name)
        model, tokenizer = load_base(cfg)
        self.handle = GlobalModel(model, tokenizer, cfg.max_length)
        self.settings = settings
        digest = hashlib.sha256()
        for key, tensor in model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        location = "built in memory (seeded)" if name == TINY_RANDOM else model_location(cfg)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.identity = Generator(name, location, adapter_digest(name), digest.hexdigest(), dtype)

    def answer(self, prompts: list[str], desc: str) -> list[str]:
        from harness.safe_base.tune import full_sentences

        s, out = self.settings, []
        with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
            for start in range(0, len(prompts), 4 * s.batch_size):
                chunk = prompts[start : start + 4 * s.batch_size]
                texts = self.handle.generate([self.handle.chat_prompt(p) for p in chunk], s.max_new_tokens, s.batch_size)
                out += [full_sentences(t) for t in texts]
                bar.update(len(chunk))
        return out


@dataclass
class Scenario:
    """The labelled rows and what the build did (the meta file)."""

    rows: list[dict]
    meta: dict = field(default_factory=dict)


def provenance(req: Request, gen: Generator, settings: ScenarioSettings, rule: str) -> dict:
    return {"builder": BUILDER, "generator": asdict(gen),
            "decoding": {"greedy": True, "chat_template": True, "max_new_tokens": settings.max_new_tokens,
                         "batch_size": settings.batch_size, "trimmed_to": "full sentences"},
            "seed": settings.seed, "prompt_source": req.source, "prompt_id": req.id, "label_rule": rule}


def row(req: Request, response: str, kind: str, gen: Generator, settings: ScenarioSettings) -> dict:
    rule = {RED: RED_RULE, BENIGN_ANSWER: BENIGN_RULE, REFUSAL: REFUSAL_RULE}[kind]
    return {"prompt": req.prompt, "response": response, "is_harmful": kind == RED, "category": req.category,
            "kind": kind, "provenance": provenance(req, gen, settings, rule)}


def prompts_to_use(settings: ScenarioSettings, square_dir: Path, data: str | None,
                   target: str) -> tuple[list[Request], list[Request], int, list[PromptSet]]:
    """(harmful and benign requests in seeded order, cut to ``limit``; how many benign ones were drawn around because
    a reference set holds them; the reference sets). :class:`harness.data.overlap.DataOverlapError` when a prompt
    clashes anyway (a harmful request is never drawn around: the pool must be clean)."""
    rng = random.Random(settings.seed)
    clients = harmful_requests(), benign_requests(square_dir)
    if settings.part == GUARD:
        harmful, benign = harmful_requests(GUARD_POOL_FILE), harmful_requests(GUARD_BENIGN_FILE)
    else:
        harmful, benign = clients
    sets = reference_sets(data)
    if settings.part == GUARD:  # guards may share data with each other (the shipped scenario guard holds this part)
        sets = [s for s in sets if s.role != "guard"]
        sets.append(PromptSet.from_texts("client", "the clients' part of the scenario",
                                         [r.prompt for r in clients[0] + clients[1]], str(square_dir)))
    rng.shuffle(harmful)
    rng.shuffle(benign)
    taken = frozenset().union(*(s.digests for s in sets))
    kept = [r for r in benign if prompt_digest(r.prompt) not in taken]  # the safe base was tuned on most of valid's
    drawn_around = len(benign) - len(kept)
    harmful, kept = harmful[: settings.limit], kept[: settings.limit]
    check_disjoint(PromptSet.from_texts("client", "harmful-reply scenario", [r.prompt for r in harmful + kept],
                                        target), sets, target)
    return harmful, kept, drawn_around, sets


def collect_refusals(harmful: list[Request], wanted: int,
                     settings: ScenarioSettings) -> tuple[dict[int, dict], int, Generator | None]:
    """(refusal rows by index into ``harmful``, how many requests the refusal model answered, its identity): it
    answers the requests in order, a few batches at a time, until it has refused ``wanted`` of them."""
    refusals: dict[int, dict] = {}
    asked, refuser = 0, None
    while len(refusals) < wanted and asked < len(harmful):
        refuser = refuser or Answerer(settings.refusal_model, settings)
        chunk = harmful[asked : asked + CHUNK_BATCHES * settings.batch_size]
        for i, text in enumerate(refuser.answer([r.prompt for r in chunk], f"{settings.refusal_model} refusals"), asked):
            if len(refusals) < wanted and is_clean_refusal(text):
                refusals[i] = row(harmful[i], text, REFUSAL, refuser.identity, settings)
        asked += len(chunk)
    return refusals, asked, refuser.identity if refuser else None


def build_scenario(settings: ScenarioSettings, square_dir: Path, data: str | None = None,
                   target: str = "the scenario") -> Scenario:
    """Answer, label and mix (module docstring); ``target`` names the output in messages."""
    t0 = time.perf_counter()
    harmful, benign, drawn_around, sets = prompts_to_use(settings, square_dir, data, target)
    base = Answerer(settings.model, settings)
    replies = base.answer([r.prompt for r in harmful + benign], f"{settings.model} answers")
    verdicts = [verdict(t) for t in replies]
    benign_rows = [row(r, t, BENIGN_ANSWER, base.identity, settings)
                   for r, t, v in zip(benign, replies[len(harmful):], verdicts[len(harmful):]) if v == ANSWER]
    pairs = settings.part == GUARD
    wanted = len(harmful) if pairs else round(len(benign_rows) * settings.refusal_share / (1 - settings.refusal_share))
    refusals, asked, refuser = collect_refusals(harmful, wanted, settings)
    rows = []
    for i, r in enumerate(harmful):
        rows += [refusals[i]] if i in refusals else []
        if verdicts[i] == ANSWER and (pairs or i not in refusals):
            rows.append(row(r, replies[i], RED, base.identity, settings))
    rows += benign_rows
    red = sum(r["is_harmful"] for r in rows)
    if not red or red == len(rows):
        raise ScenarioError(f"the build has {red} red and {len(rows) - red} acceptable rows; a client mixture needs "
                            f"both (replies of {settings.model}: {dict(Counter(verdicts))})")
    pool = GUARD_POOL_FILE if pairs else POOL_FILE
    dropped = Counter(f"{'harmful' if r.harmful else 'benign'} request, {settings.model} reply: {v}"
                      for i, (r, v) in enumerate(zip(harmful + benign, verdicts))
                      if v != ANSWER and (pairs or i not in refusals))
    meta = {
        "builder": BUILDER, "settings": asdict(settings),
        "generators": {"answers": asdict(base.identity), "refusals": refuser and asdict(refuser)},
        "pool": {"file": source_name(pool), "sha256": pool_sha256(pool)},
        "benign_source": ({"file": source_name(GUARD_BENIGN_FILE), "sha256": pool_sha256(GUARD_BENIGN_FILE)} if pairs
                          else {"dir": str(square_dir), "files": sorted({r.source for r in benign})}),
        "counts": {"rows": len(rows), "red": red, "acceptable": len(rows) - red, "benign_answers": len(benign_rows),
                   "refusals": len(refusals), "refusal_share": round(len(refusals) / (len(rows) - red), 4),
                   "refusals_wanted": wanted, "harmful_prompts": len(harmful), "benign_prompts": len(benign)},
        "dropped": dict(sorted(dropped.items())),
        "refusal_model": {"asked": asked, "clean_refusals": len(refusals)},
        "overlap": {"sets_checked": [f"{s.role}:{s.name}" for s in sets], "shared_prompts": 0,
                    "benign_drawn_around": drawn_around},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return Scenario(rows, meta)


def write_scenario(scenario: Scenario, out: Path) -> Path:
    """``out`` (JSON Lines, the file data source's schema plus ``kind`` and ``provenance``) and ``out.meta.json``;
    each written to a temporary name first, so a failed write leaves no half file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = out.with_name(out.name + META_SUFFIX)
    for path, text in ((out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scenario.rows)),
                       (meta, json.dumps(scenario.meta, indent=1, ensure_ascii=False) + "\n")):
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    return meta
