"""Every prompt set the scenario's prompts must stay clear of, and the check (by normalised prompt, docs/data.md).

The sets: what :func:`harness.data.shipped.shipped_prompt_sets` holds (the shipped guards' and safe bases' training
prompts, the packaged AdvBench, BIG-bench HHH and MT-Bench), what the built-in evals score with all their subsets
(AdvBench; HHH's BIG-bench and 438-item sets; both MT-Bench turns; every over-refusal set), and the CAI aligner's
own prompts (the demo's reserved red-teaming prompts, held-out ones included, and its helpful mix's requests).
"""

from __future__ import annotations

from pathlib import Path

from harness.cai.helpful import load_helpful_prompts
from harness.data.demo import demo_cai_prompts
from harness.data.overlap import Clash, DataOverlapError, declared_sets
from harness.data.shipped import shipped_prompt_sets
from harness.evals.files import data_file
from harness.evals.loaders import load_mtbench
from harness.types import PromptSet, RunInfo


def reference_sets(data: str | None = None) -> list[PromptSet]:
    """The sets above; ``data`` is the eval plugins' ``data`` option (None: ``$HARNESS_DATA``, else packaged, else
    downloaded)."""
    from harness.config import RunConfig
    from harness.default_plugins.evals.advbench import AdvBench
    from harness.default_plugins.evals.hhh import HHH, SETS as HHH_SETS
    from harness.default_plugins.evals.mtbench import QUESTIONS, REFERENCES
    from harness.default_plugins.evals.over_refusal import SETS as OVER_REFUSAL_SETS, OverRefusal

    run = RunInfo("harmful-scenario", Path.cwd(), RunConfig(), {})  # no eval_limit: every scored item
    evals = [AdvBench(data=data), HHH(data=data, sets=list(HHH_SETS)), OverRefusal(data=data, sets=list(OVER_REFUSAL_SETS))]
    sets = list(shipped_prompt_sets()) + declared_sets(e.declare_prompts(run=run) for e in evals)
    questions = data_file(QUESTIONS, data)
    turns = [t for q in load_mtbench(questions, data_file(REFERENCES, data)) for t in q.turns]
    sets.append(PromptSet.from_texts("eval", "mtbench", turns, str(questions)))
    sets.append(PromptSet.from_texts("cai", "CAI demo prompts", demo_cai_prompts() + demo_cai_prompts(heldout=True),
                                     "harness.data.demo"))
    sets.append(PromptSet.from_texts("cai", "CAI helpful prompts", load_helpful_prompts("demo"),
                                     "harness.cai.helpful_prompts"))
    return sets


def clashes(prompts: PromptSet, sets: list[PromptSet]) -> list[Clash]:
    """Each set of ``sets`` that shares a prompt with ``prompts``."""
    return [Clash(prompts, s, prompts.digests & s.digests) for s in sets if prompts.digests & s.digests]


def check_disjoint(prompts: PromptSet, sets: list[PromptSet], target: str) -> None:
    """:class:`DataOverlapError` naming every clash, unless ``prompts`` shares no prompt with ``sets``."""
    found = clashes(prompts, sets)
    if found:
        raise DataOverlapError(f"refusing to write {target}: its prompts overlap sets the harness trains or evaluates "
                               f"on (compared after normalisation): {'; '.join(c.describe() for c in found)}")
