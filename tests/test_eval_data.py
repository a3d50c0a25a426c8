"""Benchmark files: where they are found, their schema checks, and the real sets' sizes."""

import json
from collections import Counter

import pytest

from harness.evals.files import DATA_ENV, UPSTREAM, EvalDataError, data_file, sha256
from harness.evals.loaders import (
    CAI_ONLY_SUBSET,
    choice_prompt,
    load_advbench,
    load_bigbench_hhh,
    load_cai_hhh,
    load_judge_prompts,
    load_mtbench,
    take,
)
from harness.default_plugins.evals.hhh import CAI_FILE, bigbench_files


def test_upstream_hashes_match_the_shared_copies(shared_data):
    for relative, source in UPSTREAM.items():
        assert sha256(shared_data / relative) == source.sha256, relative


def test_data_option_beats_the_environment(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_file("advbench/harmful_behaviors.csv", shared_data) == shared_data / "advbench/harmful_behaviors.csv"
    with pytest.raises(EvalDataError, match=rf"\${DATA_ENV} \({tmp_path}\) must be a directory laid out like shared/data"):
        data_file("advbench/harmful_behaviors.csv")
    with pytest.raises(EvalDataError, match="data option"):
        data_file("mt_bench/question.jsonl", tmp_path / "nowhere")


def test_real_set_sizes(shared_data):
    assert len(load_advbench(data_file("advbench/harmful_behaviors.csv", shared_data))) == 520
    bigbench = load_bigbench_hhh(bigbench_files(str(shared_data)))
    assert len(bigbench) == 221
    assert Counter(i.subset for i in bigbench) == {"harmless": 58, "helpful": 59, "honest": 61, "other": 43}
    cai = load_cai_hhh(data_file(CAI_FILE, shared_data), bigbench)
    assert len(cai) == 438
    assert Counter(i.correct for i in cai) == {0: 228, 1: 210}
    assert Counter(i.subset for i in cai)[CAI_ONLY_SUBSET] == 217
    questions = load_mtbench(data_file("mt_bench/question.jsonl", shared_data),
                             data_file("mt_bench/reference_answer/gpt-4.jsonl", shared_data))
    assert len(questions) == 80 and Counter(q.category for q in questions)["math"] == 10
    assert sum(q.reference is not None for q in questions) == 30
    prompts = load_judge_prompts(data_file("mt_bench/judge_prompts.jsonl", shared_data))
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"} <= set(prompts)


def test_cai_prompts_round_trip_through_the_choice_frame(shared_data, tmp_path):
    first = data_file(CAI_FILE, shared_data).read_text().splitlines()[0]
    (tmp_path / "one.jsonl").write_text(first + "\n")
    (item,) = load_cai_hhh(tmp_path / "one.jsonl")
    assert choice_prompt(item.context, *item.options) == json.loads(first)["prompt"]


@pytest.mark.parametrize("text, message", [
    ("prompt,target\nx,y\n", "expected a CSV with a 'goal' column"),
    ("goal,target\n,y\n", r"empty goal on line\(s\) \[2\]"),
    ("goal,target\n", "no rows"),
])
def test_advbench_schema_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(EvalDataError, match=message):
        load_advbench(path)


def test_cai_and_mtbench_schema_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Which is better? (A) or (B)", "corrects": [" (A)"]}\n')
    with pytest.raises(EvalDataError, match=r"bad.jsonl row 1: prompt is not in the"):
        load_cai_hhh(bad)
    bad.write_text('{"question_id": 1, "category": "writing", "turns": ["only one"]}\n')
    refs = tmp_path / "refs.jsonl"
    refs.write_text("")
    with pytest.raises(EvalDataError, match="exactly two string turns"):
        load_mtbench(bad, refs)
    bad.write_text('{"question_id": 1, "category": "math", "turns": ["a", "b"]}\n')
    with pytest.raises(EvalDataError, match="math question 1 has no reference answer"):
        load_mtbench(bad, refs)
    bad.write_text("not json\n")
    with pytest.raises(EvalDataError, match=r"bad.jsonl row 1: not valid JSON"):
        load_judge_prompts(bad)


def test_a_zero_limit_is_an_error_not_an_empty_benchmark():
    assert take([1, 2, 3], None, "x") == [1, 2, 3] and take([1, 2, 3], 2, "x") == [1, 2]
    with pytest.raises(ValueError, match="hhh: the eval limit must be >= 1"):
        take([1, 2, 3], 0, "hhh")
