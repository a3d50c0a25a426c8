"""Issue #19 item 3: run directories are unique, confined to ``<output_dir>/runs/`` and locked while a run runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness import registry
from harness.checkpoint import LOCK_FILE, RunDirError, RunDirLock
from harness.cli import main
from harness.config import load_config
from harness.engine import RoundEngine
from harness.hookspecs import hookimpl
from harness.registry import selection
from harness.tracking import default_tracking_uri, find_run
from tests.helpers import run_tracked, smoke_config, untracked_engine


def quick(tmp_path, **overrides):
    return smoke_config(tmp_path, **{"federation.rounds": 1, "plugins.evals": [], **overrides})


def snapshot(directory):
    return {p.relative_to(directory): (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.rglob("*") if p.is_file()}


def test_second_fresh_run_with_the_same_name_is_refused_and_the_first_untouched(tmp_path):
    cfg = quick(tmp_path)
    assert run_tracked(cfg).status == "FINISHED"
    run_dir = tmp_path / "out" / "runs" / "test-run"
    before = snapshot(run_dir)
    with pytest.raises(RunDirError, match=r"already exists.*--resume 'test-run' or choose another --run-name"):
        run_tracked(quick(tmp_path))
    assert snapshot(run_dir) == before
    client = MlflowClient(default_tracking_uri(cfg.output_dir))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"]  # the refused run created no MLflow run


def test_cli_reusing_a_run_name_exits_2_suggesting_resume(tmp_path):
    (tmp_path / "out" / "runs" / "taken").mkdir(parents=True)
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--rounds", "1", "--set", "plugins.evals=[]",
                                       "--output-dir", str(tmp_path / "out"), "--run-name", "taken", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "already exists" in result.output and "--resume" in result.output
    assert list((tmp_path / "out" / "runs" / "taken").iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "../../victim", "/tmp/victim-abs"])
def test_cli_run_name_escaping_the_store_exits_2_and_creates_nothing(tmp_path, name):
    out = tmp_path / "a" / "out"
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--output-dir", str(out), "--run-name", name])
    assert result.exit_code == 2 and "not a valid run name" in result.output, result.output
    assert not (tmp_path / "a").exists()


def test_absolute_run_name_in_a_config_file_is_refused(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: smoke\ntracking: {run_name: /etc/x}\n")
    result = CliRunner().invoke(main, ["run", "--config", str(f), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "tracking.run_name '/etc/x' is not a valid run name" in result.output


def test_automatic_names_started_in_the_same_second_differ(tmp_path):
    cfg = load_config("smoke", overrides={"output_dir": str(tmp_path)})
    pm = registry.build_manager(selection(cfg))
    names = {RoundEngine(cfg, pm, progress=False).run_name for _ in range(20)}
    assert len(names) == 20
    assert len({name.rsplit("-", 1)[0] for name in names}) <= 2  # same prefix (up to a second boundary)


def test_a_locked_run_is_refused_and_released_after_the_run(tmp_path):
    cfg = quick(tmp_path)
    run_dir = tmp_path / "out" / "runs" / "test-run"
    held = RunDirLock(run_dir, fresh=True)  # as a running process holds it
    engine = untracked_engine(cfg, resume=True)
    with pytest.raises(RunDirError, match=r"in use by another process"):
        engine.run()
    held.release()
    RunDirLock(run_dir, fresh=False).release()  # free again


def test_the_lock_is_held_while_the_run_runs_and_dropped_after(tmp_path):
    seen = []

    class Probe:
        @hookimpl
        def on_round_end(self, server_round, metrics, artifacts):
            with pytest.raises(RunDirError, match="in use"):
                RunDirLock(run_dir, fresh=False)
            seen.append(server_round)

    run_dir = tmp_path / "out" / "runs" / "test-run"
    assert run_tracked(quick(tmp_path), Probe()).status == "FINISHED"
    assert seen and (run_dir / LOCK_FILE).is_file()
    RunDirLock(run_dir, fresh=False).release()


def test_lock_held_by_another_process(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    script = ("import sys, time; from pathlib import Path; from harness.checkpoint import RunDirLock; "
              "lock = RunDirLock(Path(sys.argv[1]), fresh=True); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match="in use by another process"):
            RunDirLock(run_dir, fresh=False)
        with pytest.raises(RunDirError, match="already exists"):
            RunDirLock(run_dir, fresh=True)
    finally:
        proc.kill()
        proc.wait()
    RunDirLock(run_dir, fresh=False).release()  # the kernel dropped the killed process's lock


@pytest.mark.parametrize("name", ["o'brien", 'say "hi"', "it's \"q\"", "back\\slash"])
def test_find_run_by_a_name_with_quotes(tmp_path, name):
    uri = default_tracking_uri(tmp_path)
    client = MlflowClient(uri)
    exp = client.create_experiment("x")
    client.create_run(exp, run_name="other")
    wanted = client.create_run(exp, run_name=name).info.run_id
    client.create_run(exp, run_name="zzz")
    assert find_run(uri, name).info.run_id == wanted
