"""The harmful-reply scenario (issue #34 item 3): the frozen pool, the labels, the overlap check, the built file."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.normalize import prompt_digest
from harness.data.scenario import build
from harness.data.scenario.build import Answerer, Generator
from harness.data.scenario.labels import ANSWER, REFUSAL, degenerate, is_clean_refusal, verdict
from harness.data.scenario.pool import GUARD_BENIGN_FILE, GUARD_POOL_FILE, POOL_FILE, Request, benign_requests, harmful_requests
from harness.data.scenario.reference import clashes, reference_sets
from harness.data.scenario.settings import ScenarioSettings
from harness.data.sources import load_rows_file
from harness.evals.files import DATA_ENV, data_file
from harness.evals.loaders import load_advbench
from harness.guard.labelled import DataSpec, labelled_set
from harness.types import PromptSet
from tests.helpers import run_tracked, smoke_config

BASE, SAFE = "fake-base", "fake-safe"
COMPLY = "Here is what you asked for. First, gather what you need. Then follow the steps one by one."
REFUSE = "I'm sorry, but I can't help with that. It could cause real harm."


def fake_reply(model: str, prompt: str) -> str:
    """The base complies with 70 % of prompts, refuses 10 % (strict rule), opens 10 % with 'As an' (only the loose
    rule) and loops on 10 %; the safe model refuses 70 %."""
    h = zlib.crc32(prompt.encode()) % 10
    if model == SAFE:
        return REFUSE if h < 7 else COMPLY
    return {0: REFUSE, 1: "As an assistant I will explain it now in detail.", 2: "yes " * 20}.get(h, COMPLY)


class FakeAnswerer:
    """Stands in for :class:`Answerer` (no model): :func:`fake_reply` per prompt."""

    def __init__(self, name: str, settings: ScenarioSettings):
        self.name = name
        self.identity = Generator(name, "fake weights", None, "0" * 64, "float32")

    def answer(self, prompts: list[str], desc: str) -> list[str]:
        return [fake_reply(self.name, p) for p in prompts]


def build_cli(out: Path, *extra: str):
    return CliRunner().invoke(main, ["data", "harmful-scenario", "--out", str(out), "--model", BASE,
                                     "--refusal-model", SAFE, *extra])


def build_with_fakes(out: Path, shared_data: Path, *extra: str):
    """``harness data harmful-scenario`` into ``out`` with :class:`FakeAnswerer` (no model); it must succeed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DATA_ENV, str(shared_data))
        mp.setattr(build, "Answerer", FakeAnswerer)
        result = build_cli(out, *extra)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> Path:
    """The scenario built from every prompt with :class:`FakeAnswerer`."""
    out = tmp_path_factory.mktemp("scenario") / "harmful.jsonl"
    build_with_fakes(out, shared_data)
    return out


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_pool_is_frozen_and_its_readme_counts_it():
    readme = (POOL_FILE.parent / "README.md").read_text()
    assert hashlib.sha256(POOL_FILE.read_bytes()).hexdigest() in readme
    pool = harmful_requests()
    counts = Counter(r.category for r in pool)
    table = dict(re.findall(r"^\| (S\d+) \| [^|]+ \| (\d+) \|$", readme, re.M))
    assert {code: int(n) for code, n in table.items()} == counts
    assert set(counts) == {f"S{i}" for i in range(1, 15)} and len(pool) >= 400
    assert len({prompt_digest(r.prompt) for r in pool}) == len(pool)


def test_the_pool_overlaps_no_set_the_harness_ships_or_reads_and_copies_no_advbench_goal(shared_data, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    from harness.default_plugins.evals.over_refusal import SETS as OVER_REFUSAL_SETS

    sets = reference_sets()
    names = {f"{s.role}:{s.name}" for s in sets}
    assert {"eval:advbench", "eval:hhh/bigbench", "eval:hhh/cai438", "eval:mtbench", "eval:over-refusal",
            "base:safe base smollm2-135m-safe", "cai:CAI demo prompts", "cai:CAI helpful prompts"} <= names
    assert sum(s.role == "guard" for s in sets) >= 2  # the shipped guards
    over_refusal = next(s for s in sets if s.name == "over-refusal")
    assert all(path in over_refusal.origin for path in OVER_REFUSAL_SETS.values())  # every set, `everyday` too
    pool = [r.prompt for r in harmful_requests()]
    assert clashes(PromptSet.from_texts("client", "pool", pool), sets) == []
    words = lambda text: set(re.findall(r"[a-z']+", text.lower()))  # noqa: E731
    goals = [words(g) for g in load_advbench(data_file("advbench/harmful_behaviors.csv"))]
    assert max(len(words(p) & g) / len(words(p) | g) for p in pool for g in goals) < 0.5


def test_verdicts():
    assert verdict(COMPLY) == ANSWER
    assert verdict(REFUSE) == REFUSAL and is_clean_refusal(REFUSE)
    assert verdict("As an example, mix the two and stir for an hour.") == REFUSAL  # the loose rule counts too
    assert not is_clean_refusal("As an example, mix the two and stir for an hour.")  # ... but not for refusal rows
    assert verdict("Sure thing!") == "too short"
    assert degenerate("  ") == "empty" and degenerate("ok " * 10) == "repeated word"
    assert degenerate("Step.\nStep.\nStep.\nDone now.") == "repeated line"
    assert degenerate("buy the thing and then " * 6) == "looping"
    # a numbered or bulleted list repeating one item (harmful-v1 holds 3 such replies, built before this rule)
    assert degenerate("1. The Great Gatsby\n2. The Nightingale\n3. The Nightingale\n4. the nightingale\n5.") == "repeated line"
    assert degenerate("- Mix it.\n- Mix it.\n* Stir well.") == "repeated line"
    assert degenerate("1. Preheat the oven.\n2. Mix the flour.\n3. Bake for 20 minutes.") is None
    assert not is_clean_refusal("I'm sorry. " * 10)


def test_red_rows_are_exactly_the_base_models_compliant_answers_to_harmful_requests(built):
    written = rows(built)
    meta = json.loads(built.with_name(built.name + ".meta.json").read_text())
    by_kind = {kind: [r for r in written if r["kind"] == kind] for kind in ("red", "benign", "refusal")}
    refused = {r["prompt"] for r in by_kind["refusal"]}
    pool = harmful_requests()
    expected_red = {r.prompt for r in pool if fake_reply(BASE, r.prompt) == COMPLY} - refused
    assert {r["prompt"] for r in by_kind["red"]} == expected_red
    assert all(r["is_harmful"] and r["response"] == COMPLY for r in by_kind["red"])
    assert all(r["response"] == REFUSE and not r["is_harmful"] and r["category"].startswith("S") for r in by_kind["refusal"])
    assert all(fake_reply(BASE, r["prompt"]) != REFUSE for r in by_kind["red"])  # a refused harmful request is never red
    assert all(not r["is_harmful"] and r["category"] == "benign" and r["response"] == COMPLY for r in by_kind["benign"])
    assert len(refused) == round(len(by_kind["benign"]) * 0.2 / 0.8)
    assert not refused & {r["prompt"] for r in by_kind["red"]}  # a harmful request makes one row at most
    counts = meta["counts"]
    assert (counts["red"], counts["benign_answers"], counts["refusals"]) == tuple(map(len, by_kind.values()))
    assert meta["overlap"]["benign_drawn_around"] == 231  # SQuARe valid questions the safe base was tuned on
    assert meta["pool"]["sha256"] == hashlib.sha256(POOL_FILE.read_bytes()).hexdigest()
    acceptable, red = load_rows_file(built)  # what `harness run --data FILE` reads
    assert {s.prompt for s in red} == expected_red and len(acceptable) == len(written) - len(red)


def test_every_row_records_its_provenance(built):
    for r in rows(built):
        p = r["provenance"]
        model = SAFE if r["kind"] == "refusal" else BASE
        assert p["generator"] == {"model": model, "location": "fake weights", "adapter_digest": None,
                                  "weights_sha256": "0" * 64, "dtype": "float32"}
        assert p["decoding"]["greedy"] and p["decoding"]["max_new_tokens"] == 96 and p["seed"] == 0
        assert p["prompt_id"] and p["prompt_source"] and p["label_rule"].startswith("red" if r["is_harmful"] else "acceptable")


@pytest.mark.slow
def test_a_smoke_run_trains_on_the_file_and_the_oracle_drops_exactly_the_red_rows(built, tmp_path):
    cfg = smoke_config(tmp_path, **{"data.source": str(built), "plugins.filter": "oracle", "federation.rounds": 1})
    summary = run_tracked(cfg)
    assert summary.status == "FINISHED"
    assert summary.final_metrics["filter/precision"] == 1.0 and summary.final_metrics["filter/recall"] == 1.0


def test_an_overlapping_prompt_is_refused_before_any_generation(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    goal = load_advbench(data_file("advbench/harmful_behaviors.csv"))[0]
    monkeypatch.setattr(build, "harmful_requests", lambda: harmful_requests() + [Request("x-1", goal, "S2", "test")])
    monkeypatch.setattr(build, "Answerer", None)  # generating would fail the test
    out = tmp_path / "s.jsonl"
    result = build_cli(out)
    assert result.exit_code == 2
    assert result.output.startswith("Error: refusing to write") and "eval set 'advbench'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    result = build_cli(tmp_path / "s.jsonl")
    assert result.exit_code == 2 and result.output.startswith("Error: no SQuARe questions")
    result = build_cli(tmp_path / "s.jsonl", "--square-dir", str(tmp_path))
    assert result.exit_code == 2 and "question_valid.json does not exist" in result.output
    assert build_cli(tmp_path / "s.jsonl", "--refusal-share", "1").exit_code == 2


def test_the_answerer_generates_with_the_tiny_model_and_names_its_weights():
    settings = ScenarioSettings(max_new_tokens=4, batch_size=2)
    first, again = Answerer("tiny-random", settings), Answerer("tiny-random", settings)
    assert len(first.answer(["Hi", "How are you?", "Name a colour."], "test")) == 3
    assert first.identity == again.identity and first.identity.model == "tiny-random"
    assert len(first.identity.weights_sha256) == 64 and first.identity.adapter_digest is None


@pytest.fixture(scope="module")
def guard_part(tmp_path_factory, shared_data) -> Path:
    """The guard's part built with :class:`FakeAnswerer`."""
    out = tmp_path_factory.mktemp("scenario") / "guard.jsonl"
    result = build_with_fakes(out, shared_data, "--part", "guard")
    assert "use: harness filter train --data" in result.output and "warning" not in result.output
    return out


@pytest.mark.parametrize("pool", [GUARD_POOL_FILE, GUARD_BENIGN_FILE], ids=["harmful", "benign"])
def test_the_guards_pools_are_frozen_and_share_nothing_with_the_clients_part(pool, shared_data, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    readme = (POOL_FILE.parent / "README.md").read_text()
    assert hashlib.sha256(pool.read_bytes()).hexdigest() in readme
    requests = harmful_requests(pool)
    assert len({prompt_digest(r.prompt) for r in requests}) == len(requests) >= 200
    harmful = pool == GUARD_POOL_FILE
    assert {r.category for r in requests} == ({f"S{i}" for i in range(1, 15)} if harmful else {"benign"})
    clients = [r.prompt for r in harmful_requests() + benign_requests(shared_data / "square")]
    guards = [s for s in reference_sets() if s.role == "guard"]  # guards may share data; none may share the clients'
    sets = [s for s in reference_sets() if s.role != "guard"] + [PromptSet.from_texts("client", "clients' part", clients)]
    assert clashes(PromptSet.from_texts("guard", "guard pool", [r.prompt for r in requests]), sets) == []
    assert clashes(PromptSet.from_texts("client", "clients' part", clients), guards) == []
    scenario_guard = next(s for s in guards if s.name.endswith("smollm2-135m-lg3-harmful"))
    own = harmful_requests(GUARD_POOL_FILE) + harmful_requests(GUARD_BENIGN_FILE)
    assert scenario_guard.digests <= {prompt_digest(r.prompt) for r in own}  # trained on its own split only
    words = lambda text: set(re.findall(r"[a-z0-9']+", text.lower()))  # noqa: E731
    near = [words(p) for p in clients] + [words(g) for g in load_advbench(data_file("advbench/harmful_behaviors.csv"))]
    assert max(len(words(r.prompt) & w) / len(words(r.prompt) | w) for r in requests for w in near) < 0.5


def test_the_guard_part_pairs_each_requests_compliance_with_its_refusal(guard_part, built):
    written = rows(guard_part)
    meta = json.loads(guard_part.with_name(guard_part.name + ".meta.json").read_text())
    assert meta["settings"]["part"] == "guard" and meta["pool"]["sha256"] == hashlib.sha256(GUARD_POOL_FILE.read_bytes()).hexdigest()
    assert meta["benign_source"]["file"].endswith(GUARD_BENIGN_FILE.name) and meta["overlap"]["benign_drawn_around"] == 0
    by_kind = {kind: {r["prompt"] for r in written if r["kind"] == kind} for kind in ("red", "benign", "refusal")}
    pool = harmful_requests(GUARD_POOL_FILE)
    assert by_kind["red"] == {r.prompt for r in pool if fake_reply(BASE, r.prompt) == COMPLY}
    assert by_kind["refusal"] == {r.prompt for r in pool if fake_reply(SAFE, r.prompt) == REFUSE}  # every request asked
    assert by_kind["red"] & by_kind["refusal"]  # one request, both replies
    assert by_kind["benign"] == {r.prompt for r in harmful_requests(GUARD_BENIGN_FILE) if fake_reply(BASE, r.prompt) == COMPLY}
    assert not {prompt_digest(r["prompt"]) for r in written} & {prompt_digest(r["prompt"]) for r in rows(built)}
    train, test = (labelled_set([DataSpec.parse(str(guard_part))], split) for split in ("train", "test"))
    assert train and test and not {s.prompt for s in train} & {s.prompt for s in test}  # a request's pair stays together
