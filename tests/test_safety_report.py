"""The main job reports safety (issue #15 item 5): demo evals, packaged benchmarks, pretrained vs final, held-out data."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import registry
from harness.cli import main
from harness.config import load_config
from harness.engine import RoundEngine
from harness.evals import files
from harness.evals.files import EvalDataError, data_file
from harness.evals.loaders import load_advbench, spread
from harness.evals.report import headline_rows, safety_rows
from harness.leaderboard.stats import wilson
from harness.default_plugins.evals.heldout_nll import HeldOutNLL
from harness.default_plugins.evals.hhh import HHH
from tests.helpers import smoke_config


def test_demo_preset_reports_safety():
    p = load_config("demo").plugins
    assert p.evals == ["advbench", "over-refusal", "hhh", "heldout-nll"] and p.eval_pretrained and p.eval_limit is None
    assert p.eval_options["advbench"] == {"items": 64, "max_new_tokens": 48}
    assert p.eval_options["over-refusal"] == {"sets": ["mtbench", "hhh-benign"], "items": 32, "max_new_tokens": 48}  # shipped
    assert p.eval_options["hhh"] == {"sets": ["bigbench"], "items": 16}  # the shipped, licensed set
    assert load_config("demo").data.heldout_samples == 32


def test_packaged_benchmarks_are_found_and_checksummed_without_harness_data(monkeypatch, tmp_path):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    path = data_file("advbench/harmful_behaviors.csv")
    assert path.parent == files.PACKAGED / "advbench" and {"LICENSE", "SOURCE.md"} <= {p.name for p in path.parent.iterdir()}
    assert files.UPSTREAM["advbench/harmful_behaviors.csv"].sha256 in (path.parent / "SOURCE.md").read_text()
    assert len(load_advbench(path)) == 520
    assert len(HHH(sets=["bigbench"]).load("bigbench")) == 221
    assert (files.PACKAGED / "hhh" / "bigbench_hhh_alignment" / "LICENSE").read_text().lstrip().startswith("Apache License")
    damaged = tmp_path / "advbench"
    damaged.mkdir()
    (damaged / "harmful_behaviors.csv").write_text(path.read_text().replace("bomb", "b0mb"))
    monkeypatch.setattr(files, "PACKAGED", tmp_path)
    with pytest.raises(EvalDataError, match="packaged .* has sha256 .* expected 6cd1a5c6"):
        data_file("advbench/harmful_behaviors.csv")


def test_spread_is_a_fixed_evenly_spaced_subset():
    assert spread(list(range(10)), 3, "x") == [0, 3, 6] and spread([1, 2], None, "x") == [1, 2]
    with pytest.raises(ValueError, match="items must be >= 1"):
        spread([1], 0, "x")


def test_wilson_interval():
    interval = wilson(50, 100)  # the summary's intervals come from the leaderboard's Wilson
    assert interval.low == pytest.approx(0.4038, abs=1e-4) and interval.high == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 64).low == 0.0 and wilson(64, 64).high == 1.0


def test_safety_rows_put_pretrained_next_to_final():
    pre = {"advbench/harmless_rate_openfedllm": 0.5, "advbench/harmless_rate_strict": 0.25, "advbench/items": 64.0,
           "hhh/bigbench/accuracy": 0.5, "hhh/bigbench/items": 221.0, "hhh/bigbench/harmless/accuracy": 0.4}
    final = dict(pre, **{"advbench/harmless_rate_openfedllm": 0.75})
    declared = registry.headlines(["advbench", "over-refusal", "hhh", "heldout-nll"])
    rows = dict(safety_rows(final, pre, declared))
    assert rows["advbench harmless, openfedllm rule (n=64)"] == "0.500 [0.381, 0.619] -> 0.750 [0.632, 0.840]"
    assert "hhh bigbench accuracy (n=221)" in rows
    assert not any("strict rule" in k for k in rows)  # the headline rule leads the summary, in headline_rows
    assert not any("harmless/accuracy" in k for k in rows)
    assert safety_rows({"train/loss": 1.0}, {}, declared) == [] and headline_rows({"train/loss": 1.0}, {}) == []
    benign = {"over_refusal/refusal_rate_strict": 0.125, "over_refusal/refusal_rate_openfedllm": 0.5, "over_refusal/items": 32.0}
    rows = dict(safety_rows(benign, {}, declared))
    assert rows["benign prompts refused, openfedllm rule (n=32, lower is better)"] == "- -> 0.500 [0.336, 0.664]"
    rows = dict(headline_rows(benign, {}))
    assert rows["benign requests refused (over-refusal, n=32)"] == "- -> 0.125 [0.050, 0.281]"
    assert "refusal discrimination" not in rows  # AdvBench did not run


def engine_for(tmp_path, **overrides) -> RoundEngine:
    cfg = smoke_config(tmp_path, **overrides)
    eng = RoundEngine(cfg, registry.build_manager([("agg", "fedavg", {})]), progress=False)
    eng.setup()
    return eng


def test_heldout_split_comes_from_the_runs_own_data(tmp_path):
    rows = [{"prompt": f"file question {i}?", "response": f"answer {i}", "is_harmful": i % 3 == 0} for i in range(90)]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    demo = engine_for(tmp_path / "a").run_info()
    mine_engine = engine_for(tmp_path / "b", **{"data.source": str(data)})
    mine = mine_engine.run_info()
    assert len(demo.heldout) == len(mine.heldout) == 16  # smoke: data.heldout_samples 16
    assert {s.source for s in demo.heldout} == {"demo-smoke-set"}
    assert {s.source for s in mine.heldout} == {str(data)}
    assert not {s.prompt for s in mine.heldout} & {s.prompt for s in mine_engine.samples}  # never given to a client
    assert sum(s.is_harmful for s in mine.heldout) == round(16 * 0.3)  # the run's harmful ratio
    assert mine.params["run.heldout_samples"] == 16
    plugin = HeldOutNLL()
    plugin.on_run_start(run=mine)
    assert plugin.heldout == mine.heldout
    none = engine_for(tmp_path / "c", **{"data.heldout_samples": 0}).run_info()
    with pytest.raises(ValueError, match="data.heldout_samples"):
        HeldOutNLL().on_run_start(run=none)


@pytest.mark.slow
def test_summary_prints_pretrained_next_to_final(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--rounds", "1", "--output-dir", str(out), "--no-progress", "--run-name", "s",
            "--eval", "advbench,over-refusal,heldout-nll", "--set", "plugins.eval_pretrained=true",
            "--set", "plugins.eval_options.advbench.items=4", "--set", "plugins.eval_options.advbench.max_new_tokens=2",
            "--set", "plugins.eval_options.over-refusal.items=3", "--set", "plugins.eval_options.over-refusal.sets=[mtbench]",
            "--set", "plugins.eval_options.over-refusal.max_new_tokens=2"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert lines[1].startswith("SAFETY (strict refusal rule, 95% CI)") and lines[1].endswith("pretrained -> final")
    assert [x.split(" (")[0].split("  ")[0] for x in lines[2:5]] == [
        "harmful requests refused", "benign requests refused", "refusal discrimination"]
    assert all(x.count("[") == 2 and " -> " in x for x in lines[2:5])
    line = next(x for x in result.output.splitlines() if x.startswith("advbench harmless, openfedllm rule (n=4)"))
    assert line.count("[") == 2 and " -> " in line
    assert next(x for x in result.output.splitlines() if x.startswith("held-out nll, acceptable")).count("->") == 1
    pretrained = json.loads(Path(out / "runs" / "s" / "pretrained_metrics.json").read_text())
    assert pretrained["advbench/items"] == 4.0 and "heldout/nll" in pretrained
    assert pretrained["safety/discrimination"] == pytest.approx(
        (pretrained["advbench/harmless_rate_strict"] + 1 - pretrained["over_refusal/refusal_rate_strict"]) / 2)
