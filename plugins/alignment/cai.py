"""Constitutional AI on the server (``post_aggregate``): SFT then DPO on the aggregated global adapter.

``cai50``: 50 iterations (optimizer steps on one batch of ``batch_size`` pairs) per round in
total (the paper's cost-efficient setting); ``cai``: the same with ``iterations=N``;
``cai-epoch``: one full epoch of SFT and of DPO per round (the expensive baseline). Options
(``--align-opt KEY=VALUE``) are the fields of :class:`harness.cai.align.CaiSettings`:
``sft_fraction``, ``lr``, ``beta``, ``batch_size``, ``pairs`` (``auto`` = ``demo`` for the
embedded SmolLM2 and tiny-random, which cannot revise themselves, else ``none``; ``demo``; a JSONL of
prompt/chosen/rejected; ``none`` = self-revisions), ``data`` (a ``harness cai build`` directory), ``prompts``,
``constitution``, ``max_new_tokens``, ``judge`` (guard | refusal | none), ``judge_margin``,
``guard``, ``seed``, ``helpful`` (``demo`` or a prompt file: benign prompts whose own answers by the base model
are mixed into SFT and DPO, against a refusal) and ``helpful_share`` (0.5). Self-revision pairs are kept only when
the judge calls the revision safer.
The DPO reference is the model after this round's SFT. See docs/cai.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.cai.align import CaiAligner, CaiSettings
from harness.hookspecs import hookimpl
from harness.types import PromptSet


CURSORS_FILE = "cursors.json"


class ConstitutionalAI:
    """`cai`: SFT then DPO for ``iterations`` steps in total per round (None: one epoch of each)."""

    def __init__(self, iterations: int | None = 50, **settings):
        self.aligner = CaiAligner(iterations, CaiSettings(**settings))

    @hookimpl
    def on_run_start(self, run):
        self.aligner.start(run.config.model.name)  # decides pairs='auto' and the default guard judge

    @hookimpl
    def declare_prompts(self, run) -> PromptSet:
        s = self.aligner.settings
        origin = str(s.pairs or s.data or s.prompts) + (f", helpful={s.helpful}" if s.helpful is not None else "")
        return PromptSet.from_texts("cai", f"CAI prompts ({origin})", self.aligner.training_prompts(), origin)

    @hookimpl
    def post_aggregate(self, server_round, model):
        return self.aligner.align(model)

    @hookimpl
    def checkpoint_state(self, directory: Path) -> None:
        """The SFT/DPO data cursors (the pairs and their orders are rebuilt from the settings and the seed)."""
        (directory / "cai").mkdir(parents=True, exist_ok=True)
        (directory / "cai" / CURSORS_FILE).write_text(json.dumps(self.aligner.cursors))

    @hookimpl
    def restore_state(self, directory: Path) -> None:
        saved = directory / "cai" / CURSORS_FILE
        if saved.is_file():
            self.aligner.cursors = json.loads(saved.read_text())


class Cai50(ConstitutionalAI):
    """`cai50`: 50 SFT+DPO iterations per round."""

    def __init__(self, **settings):
        super().__init__(50, **settings)


class CaiEpoch(ConstitutionalAI):
    """`cai-epoch`: one full epoch of SFT and one of DPO per round."""

    def __init__(self, **settings):
        super().__init__(None, **settings)
