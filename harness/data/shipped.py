"""The prompts of every training and eval set the harness ships, for ``data.exclude_shipped``.

A board compares rows that must train on the same client data, whatever their filter or aligner. So the
exclusion does not depend on a run's plugins: it drops every prompt of the shipped guards' and safe bases'
training sets (their ``train_prompts.sha256``) and of the packaged eval sets (AdvBench, BIG-bench HHH, the
MT-Bench questions, the frozen ``everyday`` benign set). The run's own overlap check (docs/data.md) still runs on top.
"""

from __future__ import annotations

from functools import cache

from harness.data.overlap import DIGEST_FILE, digest_file_set
from harness.evals.files import PACKAGED
from harness.safe_base.load import SAFE_BASES, base_prompt_set
from harness.types import PromptSet


@cache
def shipped_prompt_sets() -> tuple[PromptSet, ...]:
    """Shipped training sets (role = their folder's kind) and packaged eval sets (role ``eval``)."""
    from harness.evals.loaders import (EVERYDAY_FILE, HHH_SUBSETS, everyday_requests, human_text, load_advbench, load_bigbench_hhh,
                                        load_first_turns)
    from harness.guard.defaults import SHIPPED_GUARDS

    sets = [digest_file_set("guard", f"shipped guard {p.parent.name}", p) for p in sorted(SHIPPED_GUARDS.glob(f"*/{DIGEST_FILE}"))]
    sets += [base_prompt_set(name) for name in sorted(SAFE_BASES)]
    advbench = PACKAGED / "advbench" / "harmful_behaviors.csv"
    sets.append(PromptSet.from_texts("eval", "advbench", load_advbench(advbench), str(advbench)))
    hhh = PACKAGED / "hhh" / "bigbench_hhh_alignment"
    items = load_bigbench_hhh({s: hhh / s / "task.json" for s in HHH_SUBSETS})
    sets.append(PromptSet.from_texts("eval", "hhh/bigbench", [human_text(i.context) for i in items], str(hhh)))
    mtbench = PACKAGED / "mt_bench" / "question.jsonl"
    sets.append(PromptSet.from_texts("eval", "mt_bench", [t for _, t in load_first_turns(mtbench)], str(mtbench)))
    everyday = PACKAGED / EVERYDAY_FILE
    sets.append(PromptSet.from_texts("eval", "everyday", [t for _, t in everyday_requests(everyday)], str(everyday)))
    return tuple(sets)
