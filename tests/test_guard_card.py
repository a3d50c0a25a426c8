"""Guard cards: the refusal rule, the default guard per run model, and the shipped guard's training-prompt digests."""

import json
from types import SimpleNamespace

import pytest

from harness.data.normalize import prompt_digest
from harness.data.overlap import read_digest_file
from harness.guard.card import (
    MIN_RECALL,
    TRAIN_PROMPTS,
    GuardRefusedError,
    assess_guard,
    record_held_out,
    write_train_prompts,
)
from harness.guard.defaults import HUB_GUARD, SMOLLM2_GUARD
from harness.guard.labelled import DataSpec, labelled_set
from harness.default_plugins.filters.lg3 import LlamaGuardFilter


def run_info(tmp_path, model: str):
    return SimpleNamespace(run_dir=tmp_path / "run", config=SimpleNamespace(model=SimpleNamespace(name=model)),
                           heldout=[])


def card(tmp_path, held_out: dict | None):
    guard = tmp_path / "guard"
    guard.mkdir(parents=True)
    (guard / "guard.json").write_text(json.dumps({"filter": "lg3", "base": "tiny-random"}))
    if held_out is not None:
        record_held_out(guard / "guard.json", held_out)
    return str(guard)


def test_the_shipped_guard_is_accepted_on_its_held_out_recall():
    verdict = assess_guard(str(SMOLLM2_GUARD))
    assert verdict.accepted and verdict.recall == pytest.approx(0.704, abs=1e-3)  # table2.json both/finetuned


@pytest.mark.parametrize("model", ["smollm2-135m", "tiny-random", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_a_bare_base_model_is_refused(model):
    verdict = assess_guard(model)
    assert not verdict.accepted and verdict.recall is None and "not a guard" in verdict.reason


@pytest.mark.parametrize("model", [HUB_GUARD, "meta-llama/Llama-Guard-3-8B", "/models/Llama-Guard-3-1B"])
def test_a_published_llama_guard_is_accepted(model):
    assert assess_guard(model).accepted


def test_a_card_decides_by_its_held_out_recall(tmp_path):
    low = assess_guard(card(tmp_path / "a", {"recall": MIN_RECALL / 2, "n": 100}))
    assert not low.accepted and "0.050 < 0.1" in low.reason
    assert assess_guard(card(tmp_path / "b", {"recall": 0.5, "n": 100})).accepted
    unknown = assess_guard(card(tmp_path / "c", None))  # trained before cards held metrics: accepted, unknown
    assert unknown.accepted and unknown.recall is None


def test_no_model_means_the_default_guard_for_the_runs_model_chosen_without_loading_it(tmp_path):
    plugin = LlamaGuardFilter()
    plugin.on_run_start(run=run_info(tmp_path, "tiny-random"))
    assert plugin.model == str(SMOLLM2_GUARD) and plugin._scorer is None  # the guard loads on first use
    assert f"model={SMOLLM2_GUARD}" in plugin.identity
    record = json.loads((tmp_path / "run" / "filter-lg3" / "guard.json").read_text())
    assert record["model"] == str(SMOLLM2_GUARD) and record["default"] and record["accepted"]
    assert record["held_out_recall"] == pytest.approx(0.704, abs=1e-3)
    hub = LlamaGuardFilter()
    hub.on_run_start(run=run_info(tmp_path / "hub", "Qwen/Qwen2.5-0.5B-Instruct"))
    assert hub.model == HUB_GUARD


def test_a_named_base_model_fails_the_run_start_unless_forced(tmp_path):
    with pytest.raises(GuardRefusedError, match=r"lg3 refuses guard 'tiny-random'.*force=true"):
        LlamaGuardFilter(model="tiny-random").on_run_start(run=run_info(tmp_path, "tiny-random"))
    forced = LlamaGuardFilter(model="tiny-random", force=True)
    forced.on_run_start(run=run_info(tmp_path, "tiny-random"))
    record = json.loads((tmp_path / "run" / "filter-lg3" / "guard.json").read_text())
    assert record["forced"] and not record["accepted"] and not record["default"]
    with pytest.raises(ValueError, match="force must be true or false"):
        LlamaGuardFilter(force="yes")


def test_train_prompt_digests_are_sorted_distinct_normalised_prompts(tmp_path):
    assert write_train_prompts(tmp_path, ["How do I bake bread?", "  how do I bake   BREAD", "Other."]) == 2
    lines = (tmp_path / TRAIN_PROMPTS).read_text().splitlines()
    assert lines == sorted({prompt_digest("how do i bake bread"), prompt_digest("other")})
    assert read_digest_file(tmp_path / TRAIN_PROMPTS) == set(lines)


def test_the_shipped_guards_prompt_digests_are_its_documented_training_split(shared_data):
    """README recipe: train split (80 % by prompt hash) of SQuARe + hh-rlhf, --max-per-class 10000, seed 0."""
    guard = json.loads((SMOLLM2_GUARD / "guard.json").read_text())
    specs = [DataSpec("square", str(shared_data / "square")), DataSpec("hh-rlhf", str(shared_data / "hh_rlhf"))]
    train = labelled_set(specs, "train", 0.2, 10000, guard["settings"]["seed"])
    assert len(train) == guard["metrics"]["train/samples"] == 4026
    stored = read_digest_file(SMOLLM2_GUARD / TRAIN_PROMPTS)
    assert stored == {prompt_digest(s.prompt) for s in train}
    assert len(stored) == 2044  # 2045 distinct prompts (hh-rlhf pairs share one), two equal once normalised
    held_out = labelled_set(specs, "test", 0.2, 10000, 0)
    assert not stored & {prompt_digest(s.prompt) for s in held_out}
