"""Issue #19, items 5 and 8 (tracker): SIGINT/SIGTERM stop `harness run` cleanly (last checkpoint kept, MLflow
KILLED, one line with the resume command, exit 130/143); an MLflow store that is deleted, corrupted or not
writable, and two processes creating a fresh store at once, give one clear message or succeed, never a
traceback."""

from __future__ import annotations

import os
import signal
import sqlite3
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.checkpoint import CheckpointStore
from harness.tracking import TrackingError, default_tracking_uri, open_client

ROOT = Path(__file__).resolve().parents[1]
RUN = "signal-test"
FLAGS = ["--preset", "smoke", "--filter", "none", "--agg", "fedavg", "--align", "none", "--local-optimizer", "sgd",
         "--set", "plugins.evals=[]", "--run-name", RUN, "--no-progress"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

# `harness run` with one extra plugin that damages the MLflow store in on_round_end of round 2 (argv[1]: how).
DAMAGING_RUN = textwrap.dedent("""
    import os, sys
    from harness import cli, registry
    from harness.hookspecs import hookimpl

    how, out = sys.argv[1], sys.argv[2]

    class DamageStore:
        @hookimpl(tryfirst=True)
        def on_round_end(self, server_round, metrics, artifacts):
            if server_round == 2:
                db = os.path.join(out, "mlflow.db")
                if how == "delete":
                    os.remove(db)
                else:
                    with open(db, "r+b") as f:
                        f.write(b"this is not a sqlite database" * 100)

    build = registry.build_manager
    registry.build_manager = lambda chosen, extra=(): build(chosen, extra=[*extra, DamageStore()])
    cli.main(["run", *sys.argv[3:]])
""")


def harness(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], env=ENV, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def run_of(out: Path):
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    return client, run


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "Aborted!" not in stderr, stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_killed_with_the_resume_command_and_resume_finishes(tmp_path, sig, code):
    out = tmp_path / "out"
    proc = harness("run", *FLAGS, "--rounds", "40", "--output-dir", str(out))
    checkpoints = out / "runs" / RUN / "checkpoints"
    deadline = time.time() + 240
    while not (checkpoints.is_dir() and any(p.name.startswith("round_") for p in checkpoints.iterdir())):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(1.0)  # a few rounds in
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)

    assert proc.returncode == code, stderr[-3000:]
    no_traceback(stderr)
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and f"stopped by {signal.Signals(sig).name}" in lines[0], stderr[-3000:]
    assert f"harness run --resume {RUN} --output-dir {out}" in lines[0]
    client, run = run_of(out)
    assert run.info.status == "KILLED"
    stopped_at = CheckpointStore(out / "runs" / RUN).load_latest().next_round
    assert 1 <= stopped_at <= 40

    resumed = harness("run", "--resume", RUN, "--output-dir", str(out))
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    client, run = run_of(out)
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == list(range(1, 41))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["delete", "corrupt"])
def test_a_store_damaged_mid_run_gives_one_message_with_the_resume_command(tmp_path, how):
    out = tmp_path / "out"
    script = tmp_path / "damaging_run.py"
    script.write_text(DAMAGING_RUN)
    proc = subprocess.run([sys.executable, str(script), how, str(out), *FLAGS, "--rounds", "4", "--output-dir",
                           str(out)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert proc.returncode == 1, proc.stderr[-3000:]
    no_traceback(proc.stderr)
    message = proc.stderr[proc.stderr.index("Error: "):]
    assert "MLflow tracking failed while logging round 2" in message, message
    assert "checkpoints" in message and "intact" in message
    assert f"harness run --resume {RUN} --output-dir {out}" in message
    assert len(message.splitlines()) <= 4, message
    store = CheckpointStore(out / "runs" / RUN)
    checkpoint = store.load_latest()  # verifies
    assert checkpoint.next_round == 3 and not checkpoint.logged  # round 2 saved, its metrics never logged

    if how == "corrupt":
        (out / "mlflow.db").unlink()  # "fixing the store"; a deleted one is already gone
    resumed = harness("run", "--resume", RUN, "--output-dir", str(out))
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "has no run 'signal-test' (was the store deleted?)" in stderr
    client, run = run_of(out)  # a new MLflow run of the same name, with the rounds from the checkpoint on
    assert run.info.status == "FINISHED" and run.info.run_name == RUN
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == [2, 3, 4]


@pytest.fixture
def searchable_dir():
    """A fresh directory that an unprivileged user can reach (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="harness-ro-"))
    path.chmod(0o755)
    yield path
    (path / "ro").chmod(0o755) if (path / "ro").exists() else None
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(sys.platform != "linux" or not shutil.which("setpriv"), reason="runs as nobody with setpriv")
@pytest.mark.parametrize("store", ["fresh", "existing"])
def test_a_read_only_output_dir_gives_a_clear_error(searchable_dir, store):
    out = searchable_dir / "ro"
    out.mkdir()
    if store == "existing":
        open_client(default_tracking_uri(out))
        (out / "mlflow.db").chmod(0o444)
    out.chmod(0o555)
    command = [sys.executable, "-m", "harness", "run", *FLAGS, "--rounds", "1", "--output-dir", str(out)]
    if os.geteuid() == 0:  # root writes anywhere: run as nobody
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        for parent in [*searchable_dir.parents, ROOT, *ROOT.parents, Path(sys.executable).parent]:
            if parent.stat().st_mode & 0o005 != 0o005:
                pytest.skip(f"{parent} is not readable by nobody")
    proc = subprocess.run(command, env={**ENV, "HOME": str(out)}, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)

    assert proc.returncode == 2, proc.stderr[-3000:]
    no_traceback(proc.stderr)
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    if store == "fresh":
        assert "MLflow store" in line and str(out) in line and "not writable" in line, line
        assert not (out / "mlflow.db").exists()
    else:
        assert f"cannot write {out / 'runs'}: Permission denied; nothing was trained" in line, line


def test_the_store_error_names_the_store_and_what_failed(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database" * 100)
    with pytest.raises(TrackingError, match=r"cannot open the MLflow store sqlite:///.*mlflow.db.*: .*Error: "):
        open_client(f"sqlite:///{db}")


# Two processes create the same fresh store at the same moment (MLflow's migrations race without the lock).
CREATE_STORE = textwrap.dedent("""
    import sys, time
    from harness.tracking import open_client
    while time.time() < float(sys.argv[2]):
        time.sleep(0.001)
    client = open_client(sys.argv[1])
    print(client.search_experiments()[0].name)
""")


def test_processes_creating_a_fresh_store_at_once_all_succeed(tmp_path):
    for attempt in range(3):
        uri = f"sqlite:///{tmp_path / str(attempt) / 'mlflow.db'}"
        start_at = str(time.time() + 6)  # after the imports of every process
        procs = [subprocess.Popen([sys.executable, "-c", CREATE_STORE, uri, start_at], env=ENV, cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-3000:]
            assert stdout.strip() == "Default"
    with sqlite3.connect(tmp_path / "0" / "mlflow.db") as db:
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
