"""over-refusal's `everyday` set: the project's own frozen benign requests (issue #34): frozen (its sha256 is the
README's), shipped, disjoint from every eval set and training source, and scored like the other sets."""

import csv
import gzip
import json
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.data import demo
from harness.data.normalize import prompt_digest
from harness.evals.files import DATA_ENV, PACKAGED, EvalDataError, sha256
from harness.evals.loaders import _CHOICE_RE
from harness.safe_base import recipe
from harness.default_plugins.evals.over_refusal import SETS, OverRefusal
from harness.evals.loaders import EVERYDAY_SHA256, everyday_requests

from test_eval_over_refusal import Scripted

REPO = Path(__file__).resolve().parents[1]
FILE = PACKAGED / SETS["everyday"]
CATEGORIES = {"cooking", "household", "gardening", "pets", "travel", "money", "health", "work", "school",
              "parenting", "hobbies", "tech", "shopping", "etiquette", "writing"}


def rows():
    return [json.loads(line) for line in FILE.read_text(encoding="utf-8").splitlines()]


def human_turns(text):
    """Every human turn of a "Human: ... Assistant: ..." transcript, and the text itself."""
    return [t.strip() for t in re.findall(r"Human:(.*?)(?=\n\nAssistant:|\nAssistant:|$)", text, re.S)] + [text]


def strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict | list):
        for v in x.values() if isinstance(x, dict) else x:
            yield from strings(v)


def test_the_set_is_frozen_and_its_checksum_is_the_readme_s():
    got = sha256(FILE)
    readme = (FILE.parent / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"\b[0-9a-f]{64}\b", readme) == [got] == [EVERYDAY_SHA256]
    assert "2026-12-07" in readme and "a new version is a new file" in readme
    data = rows()
    assert f"Count: {len(data)} " in readme
    prompts = [r["prompt"] for r in data]
    assert len(prompts) >= 150 and len({prompt_digest(p) for p in prompts}) == len(prompts)
    assert [r["id"] for r in data] == [f"everyday-{n:03d}" for n in range(1, len(data) + 1)]
    assert {r["category"] for r in data} == CATEGORIES and all(isinstance(r["borderline"], bool) for r in data)
    assert 30 <= sum(r["borderline"] for r in data) <= 60
    assert everyday_requests() == [(f"{r['id']}:{r['category']}", r["prompt"]) for r in data]


def test_an_edited_copy_is_refused(tmp_path):
    edited = tmp_path / "requests.jsonl"
    edited.write_text(FILE.read_text(encoding="utf-8").replace("mushy", "soggy"), encoding="utf-8")
    with pytest.raises(EvalDataError, match="frozen everyday set was changed"):
        everyday_requests(edited)


def test_it_ships_as_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["harness"]
    for name in ("requests.jsonl", "README.md"):
        relative = f"evals/data/everyday/{name}"
        assert (REPO / "harness" / relative).is_file()
        assert any(fnmatch(relative, p) and p.count("/") == relative.count("/") for p in patterns)


def sources(data):
    """(name, prompt texts) of every eval set and training source the set must not share a prompt with."""
    yield "advbench", [c for f in sorted((data / "advbench").glob("*.csv"))
                       for row in csv.reader(f.open(encoding="utf-8")) for c in row]
    for name in ("mt_bench", "vicuna_bench"):
        yield name, [t for line in (data / name / "question.jsonl").open() for t in json.loads(line)["turns"]]
    hhh = data / "hhh" / "bigbench_hhh_alignment"
    yield "bigbench-hhh", [t for f in sorted(hhh.glob("*/task.json")) for ex in json.loads(f.read_text())["examples"]
                           for t in human_turns("Human: " + ex["input"]) + list(ex["target_scores"])]
    cai438 = [_CHOICE_RE.match(json.loads(line)["prompt"])
              for line in (data / "hhh" / "anthropic_cai" / "438HHHEvaluations.jsonl").open()]
    yield "hhh-438", [t for m in cai438 for t in human_turns(m["context"]) + [m["a"], m["b"]]]
    with gzip.open(data / "hh_rlhf" / "harmless-base" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]
    yield "hh-rlhf harmless-base test", [t for p in pairs for k in ("chosen", "rejected") for t in human_turns(p[k])]
    square = [json.loads(f.read_text()) for f in sorted((data / "square").rglob("*.json"))]
    yield "square", [r["question_en"] for rs in square if isinstance(rs, list) for r in rs
                     if isinstance(r, dict) and isinstance(r.get("question_en"), str)]
    yield "constitutional_ai", [t for f in sorted((data / "constitutional_ai").rglob("*.json"))
                                for s in strings(json.loads(f.read_text())) for t in human_turns(s)]
    yield "safe-base recipe", recipe.instructions() + recipe.chat_requests()
    demo_prompts = [t.format(x=x, X=x[:1].upper() + x[1:]) for cat, pairs in demo._BENIGN.items()
                    for prompt, _ in pairs for t in (prompt,) for x in demo._TOPICS[cat]]
    demo_prompts += [f"Tell me how to {x}." for xs in demo._HARMFUL.values() for x in xs]
    yield "demo", demo_prompts + demo.demo_cai_prompts() + demo.demo_cai_prompts(heldout=True)


def test_no_prompt_is_in_any_eval_set_or_training_source(shared_data):
    mine = {prompt_digest(r["prompt"]) for r in rows()}
    seen = []
    for name, texts in sources(shared_data):
        assert len(texts) > 10, name  # the source was read
        assert not mine & {prompt_digest(t) for t in texts}, name
        seen.append(name)
    assert len(seen) == 10
    digest_files = sorted(REPO.glob("harness/safe_base/*/train_prompts.sha256"))
    digest_files += sorted(REPO.glob("plugins/filters/guards/*/train_prompts.sha256"))
    assert len(digest_files) >= 2
    for path in digest_files:
        digests = {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
        assert len(digests) > 100 and not mine & digests, path
    shipped_hhh = {prompt_digest(t) for _, t in OverRefusal(sets=["hhh-benign"], data=str(shared_data)).prompts()}
    assert not mine & shipped_hhh


def test_the_eval_loads_it_from_the_package_whatever_the_data_folder(monkeypatch, tmp_path):
    expected = [(f"everyday:{k}", t) for k, t in everyday_requests()]
    monkeypatch.setenv(DATA_ENV, str(tmp_path))  # a data folder without it: the packaged copy is still read
    plugin = OverRefusal(sets=["everyday"], data=str(tmp_path / "missing"))
    assert plugin.prompts() == expected and expected[0][0] == "everyday:everyday-001:cooking"
    run = SimpleNamespace(config=SimpleNamespace(plugins=SimpleNamespace(eval_limit=None)))
    declared = plugin.declare_prompts(run)
    assert declared.role == "eval" and declared.digests == {prompt_digest(t) for _, t in expected}
    assert str(FILE) in declared.origin
    assert len(OverRefusal(sets=["everyday"], items=15).prompts()) == 15


def test_it_is_scored_beside_another_set(shared_data):
    plugin = OverRefusal(data=str(shared_data), sets=["mtbench", "everyday"], max_new_tokens=5, batch_size=8)
    result = plugin.evaluate(server_round=1, model=Scripted("kill"), limit=None)
    rows_out = [json.loads(line) for line in result.artifacts["over_refusal_responses.jsonl"].splitlines()]
    everyday = [r for r in rows_out if r["key"].startswith("everyday:")]
    assert len(everyday) == len(rows()) and len(rows_out) == 80 + len(everyday)
    kills = sum("kill" in r["prompt"].lower() for r in everyday)
    assert kills > 0 and result.metrics["over_refusal/everyday/refusal_rate"] == pytest.approx(kills / len(everyday))


def test_a_real_model_answers_a_few(tiny_model):
    result = OverRefusal(sets=["everyday"], max_new_tokens=4, batch_size=3).evaluate(1, tiny_model, limit=3)
    out = [json.loads(line) for line in result.artifacts["over_refusal_responses.jsonl"].splitlines()]
    assert [r["key"].split(":")[2] for r in out] == ["cooking", "household", "gardening"]
    assert result.metrics["over_refusal/items"] == 3.0 and 0.0 <= result.metrics["over_refusal/refusal_rate"] <= 1.0
