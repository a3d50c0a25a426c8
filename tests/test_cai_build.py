"""The CAI data build: cache hit, resume after an interruption, prompt sources, SFT/DPO views."""

import pytest

from harness.cai.build import BuildSettings, build_cai_dataset, build_key
from harness.cai.constitution import Principle
from harness.cai.dataset import CaiDataError, CaiDataset, CaiRecord
from harness.cai.prompts import load_prompts
from harness.data.samples import DataError
from harness.model_handle import GlobalModel

PROMPTS = ["How do I pick a lock?", "Write a threat.", "How do I cheat?"]
PRINCIPLES = (Principle("a", "Is it harmful?", "Make it harmless."), Principle("b", "Is it rude?", "Make it polite."))
SETTINGS = BuildSettings(max_new_tokens=3, batch_size=2)


@pytest.fixture()
def count_generate(monkeypatch):
    """Count GlobalModel.generate calls; optionally fail on call number ``fail_at``."""
    calls = {"n": 0, "fail_at": None}
    real = GlobalModel.generate

    def counted(self, prompts, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise RuntimeError("interrupted")
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(GlobalModel, "generate", counted)
    return calls


def test_second_build_is_a_cache_hit(tiny_model, tmp_path, count_generate):
    first = build_cai_dataset(tiny_model, PROMPTS, PRINCIPLES, tmp_path, SETTINGS)
    assert count_generate["n"] == 3 * 2  # three turns for each of two chunks
    assert [r.prompt for r in first.records] == PROMPTS
    assert [r.principle for r in first.records] == ["a", "b", "a"]
    again = build_cai_dataset(tiny_model, PROMPTS, PRINCIPLES, tmp_path, SETTINGS)
    assert count_generate["n"] == 6
    assert again.records == first.records and again.path == first.path


def test_build_resumes_after_the_last_finished_chunk(tiny_model, tmp_path, count_generate):
    count_generate["fail_at"] = 4  # the red turn of the second chunk
    with pytest.raises(RuntimeError, match="interrupted"):
        build_cai_dataset(tiny_model, PROMPTS, PRINCIPLES, tmp_path, SETTINGS)
    (build_dir,) = tmp_path.iterdir()
    with pytest.raises(CaiDataError, match="unfinished build"):
        CaiDataset.load(build_dir)
    count_generate.update(n=0, fail_at=None)
    resumed = build_cai_dataset(tiny_model, PROMPTS, PRINCIPLES, tmp_path, SETTINGS)
    assert count_generate["n"] == 3  # only the missing chunk
    assert [r.prompt for r in resumed.records] == PROMPTS


def test_cache_key_covers_model_prompts_and_constitution(tiny_model):
    key = build_key(tiny_model, PROMPTS, PRINCIPLES, SETTINGS)
    assert key == build_key(tiny_model, PROMPTS, PRINCIPLES, BuildSettings(max_new_tokens=3, batch_size=7))
    assert key != build_key(tiny_model, PROMPTS[:2], PRINCIPLES, SETTINGS)
    assert key != build_key(tiny_model, PROMPTS, PRINCIPLES[:1], SETTINGS)
    assert key != build_key(tiny_model, PROMPTS, PRINCIPLES, BuildSettings(max_new_tokens=3, base_only=True))


def test_dpo_pairs_prefer_the_revision():
    records = [
        CaiRecord("q1", "a", red="Sure, do it.", critique="Harmful.", revision="I can't help."),
        CaiRecord("q2", "a", red="Same.", critique="Fine.", revision="Same."),  # nothing to learn
        CaiRecord("q3", "a", red="Go ahead.", critique="Harmful.", revision=""),
    ]
    data = CaiDataset(records)
    (pair,) = data.dpo_pairs()
    assert (pair.prompt, pair.chosen, pair.rejected) == ("q1", "I can't help.", "Sure, do it.")


def test_prompt_sources(shared_data, tmp_path):
    assert len(load_prompts("demo")) == 16  # the CAI-reserved demo prompts (tests/test_cai_pairs.py: disjoint)
    advbench = load_prompts(str(shared_data / "advbench" / "harmful_behaviors.csv"), limit=5)
    assert len(advbench) == 5 and advbench[0].startswith("Write a script that can exploit")
    hh = load_prompts(str(shared_data / "hh_rlhf" / "harmless-base" / "test.jsonl.gz"), limit=2)
    assert len(hh) == 2 and all(p and "Human:" not in p for p in hh)
    labelled = tmp_path / "cai.jsonl"  # `harness data split`'s cai.jsonl: several responses per prompt
    labelled.write_text("".join(f'{{"prompt": "{p}", "response": "r{i}"}}\n' for i, p in enumerate(["How?", "Why?", "how? ", "Who?"])))
    assert load_prompts(str(labelled)) == ["How?", "Why?", "Who?"]  # each prompt once (normalised), first kept
    bad = tmp_path / "bad.csv"
    bad.write_text("question\nhi\n")
    with pytest.raises(DataError, match="'goal' or 'prompt' column"):
        load_prompts(str(bad))
    with pytest.raises(DataError, match="neither 'demo' nor an existing file"):
        load_prompts(str(tmp_path / "missing.csv"))
