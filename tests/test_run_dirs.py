"""Issue #19 item 3: run directories are unique, confined to ``<output_dir>/runs/`` and locked while a run runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness import registry, runner
from harness.checkpoint import LOCK_FILE, RunDirError, RunDirLock
from harness.cli import main
from harness.config import load_config
from harness.engine import RoundEngine
from harness.hookspecs import hookimpl
from harness.registry import selection
from harness.tracking import MlflowTracker, default_tracking_uri, find_run
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
    with pytest.raises(RunDirError, match=r"in use by another process.*still running there: wait for it to end "
                                          r"\(or stop it\) before resuming it") as refused:
        engine.run()
    assert "--run-name" not in str(refused.value)  # was: "give this one another --run-name", which --resume has not
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


# -- issue #35 item 6: a run stopped before its MLflow run (or its first checkpoint) exists can be started again ------

class SigtermBeforeTheMlflowRun:
    """Sends SIGTERM to this process in ``on_run_start``, before the tracker's (registered later, called first)."""

    @hookimpl(tryfirst=True)
    def on_run_start(self, run):
        os.kill(os.getpid(), signal.SIGTERM)


def tracker_timing_out(self, run):
    """The tracker's ``_start``: creates the MLflow run, then times out (as a slow server can)."""
    TRACKER_START(self, run)
    raise TimeoutError("read timed out")


TRACKER_START = MlflowTracker._start
CLI_RUN = ["run", "--preset", "smoke", "--rounds", "1", "--set", "plugins.evals=[]", "--run-name", "half",
           "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "tracker-timeout"])
@pytest.mark.parametrize("again", ["same-command", "resume"])
def test_a_run_stopped_before_its_first_checkpoint_can_be_started_again(tmp_path, monkeypatch, how, again):
    out = tmp_path / "out"
    if how == "sigterm":
        tracked = runner.tracked_plugins  # the plugin joins the run's core plugins, after the tracker
        monkeypatch.setattr(runner, "tracked_plugins", lambda cfg, uri, run_id=None, extra=(): tracked(
            cfg, uri, run_id, (*extra, SigtermBeforeTheMlflowRun())))
    else:
        monkeypatch.setattr(MlflowTracker, "_start", tracker_timing_out)
    stopped = CliRunner().invoke(main, [*CLI_RUN, "--output-dir", str(out)])
    monkeypatch.undo()
    assert stopped.exit_code == (143 if how == "sigterm" else 1), stopped.output
    assert "before its first checkpoint" in stopped.output and "start it again" in stopped.output
    run_dir = out / "runs" / "half"
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "config.yaml"]

    # was: "already exists ... continue that run with --resume", and --resume: "no MLflow run with id or name"
    args = [*CLI_RUN, "--output-dir", str(out)] if again == "same-command" else ["run", "--resume", "half",
                                                                                  "--output-dir", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert again == "same-command" or "has no checkpoint" in result.output and "starting it again" in result.output
    client = MlflowClient(default_tracking_uri(out))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"] + (["FAILED"] if how == "tracker-timeout" else [])
    assert find_run(default_tracking_uri(out), "half").info.status == "FINISHED"
    assert (run_dir / "final_adapter").is_dir()


def test_a_fresh_run_takes_over_only_a_directory_a_stopped_run_left_and_no_one_holds(tmp_path):
    run_dir = tmp_path / "out" / "runs" / "test-run"
    held = RunDirLock(run_dir, fresh=True)  # a run setting up (lock held, no checkpoint yet)
    (run_dir / "config.yaml").write_text("{}")
    with pytest.raises(RunDirError, match="in use by another process"):
        untracked_engine(quick(tmp_path)).run()
    held.release()
    (run_dir / "final_adapter").mkdir()  # not what a run writes before its first checkpoint: left alone
    with pytest.raises(RunDirError, match="already exists"):
        untracked_engine(quick(tmp_path)).run()
    assert (run_dir / "config.yaml").read_text() == "{}"
