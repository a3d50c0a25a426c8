"""Issue #10, item 4: safe defaults. Adapters and checkpoints are safetensors (no pickle), remote code is off
unless asked for, documented MLflow servers bind to 127.0.0.1, and a judge API key never reaches MLflow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.config import PRESETS, load_config
from tests.test_eval_mtbench import KEY, mini_mtbench, serve  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("harness", "plugins") for p in (REPO / d).rglob("*.py"))


def source_lines(pattern: str) -> list[str]:
    found = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    return found


def test_no_pickle_loading_and_torch_load_only_with_weights_only():
    assert source_lines(r"pickle\.loads?\(|torch\.load\((?!.*weights_only=True)") == []


def test_remote_code_is_off_unless_the_config_turns_it_on():
    assert all(load_config(p).model.trust_remote_code is False for p in PRESETS)
    assert source_lines(r"trust_remote_code\s*=\s*True") == []


def test_documented_mlflow_servers_bind_to_localhost():
    commands = [line for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
                for line in doc.read_text().splitlines() if re.search(r"mlflow (server|ui)\b", line)]
    assert any("mlflow server" in c for c in commands)
    assert [c for c in commands if "--host 127.0.0.1" not in c] == []


@pytest.mark.slow
def test_run_dir_holds_no_pickle_and_the_judge_key_is_nowhere_in_the_mlflow_store(
        tmp_path, serve, mini_mtbench, monkeypatch):  # noqa: F811
    data, _ = mini_mtbench
    server = serve(lambda body: (200, "Rating: [[6]]"))
    monkeypatch.setenv("FAKE_JUDGE_KEY", KEY)
    out = tmp_path / "out"
    options = {"data": data, "judge_url": server.url, "judge_model": "fake-judge",
               "judge_api_key_env": "FAKE_JUDGE_KEY", "max_new_tokens": 4}
    args = ["run", "--preset", "smoke", "--rounds", "1", "--eval", "mtbench", "--eval-limit", "1",
            "--output-dir", str(out), "--no-progress"]
    for key, value in options.items():
        args += ["--set", f"plugins.eval_options.mtbench.{key}={value}"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {s["auth"] for s in server.seen} == {f"Bearer {KEY}"}  # the key was used ...

    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any("mlartifacts" in p.parts for p in files)
    assert [p for p in files if KEY.encode() in p.read_bytes()] == []  # ... and stored nowhere
    suffixes = {p.suffix for p in files if "runs" in p.relative_to(out).parts}
    assert suffixes <= {".safetensors", ".json", ".yaml", ".md", ""}, suffixes  # no .bin/.pt/.pkl
