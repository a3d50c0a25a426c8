"""Issue #19, item 9: a judge server that echoes the Authorization header cannot put the API key into an error
message, stderr or the run's ``error.txt`` (one redaction function: harness.redaction.redact)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.evals.judges import JudgeError, OpenAIJudge
from harness.hookspecs import hookimpl
from harness.redaction import redact
from harness.tracking import default_tracking_uri
from harness.default_plugins.aggregators.fedavg import FedAvg

KEY = "sk-test-0123456789abcdef"
KEY_ENV = "HARNESS_TEST_JUDGE"  # a name the redaction would not guess: the judge registers it


class _EchoAuth(BaseHTTPRequestHandler):
    """Rejects every request with 401 and a body that echoes the Authorization header."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        payload = json.dumps({"error": {"message": "invalid key", "echo": f"Authorization: {self.headers['Authorization']}"}})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args):
        pass


@pytest.fixture()
def echo_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_redact_removes_authorization_values_bearer_tokens_and_registered_secrets(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    from harness.redaction import register_secret_env

    register_secret_env(KEY_ENV)
    text = redact(f'{{"Authorization": "Bearer abc.def"}} authorization: token xyz; bearer qq-1 and {KEY} twice {KEY}')
    assert KEY not in text and "abc.def" not in text and "xyz" not in text and "qq-1" not in text
    assert text.count("[REDACTED]") == 5
    assert redact("nothing secret: loss 0.5") == "nothing secret: loss 0.5"


def test_judge_error_from_a_server_echoing_the_key_does_not_contain_it(monkeypatch, echo_url):
    monkeypatch.setenv(KEY_ENV, KEY)
    judge = OpenAIJudge(echo_url, "m", api_key_env=KEY_ENV, retries=1)
    with pytest.raises(JudgeError, match=r"HTTP 401.*Authorization: \[REDACTED\]") as caught:
        judge.complete("system", "user")
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


RUN = "secret-test"


def test_key_is_nowhere_in_stderr_error_txt_or_the_output_dir(tmp_path, monkeypatch, echo_url):
    monkeypatch.setenv(KEY_ENV, KEY)

    @hookimpl
    def aggregate_asking_the_judge(self, server_round, global_state, updates, num_clients_total):
        OpenAIJudge(echo_url, "m", api_key_env=KEY_ENV, retries=1).complete("system", "user")

    monkeypatch.setattr(FedAvg, "aggregate", aggregate_asking_the_judge)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--preset", "smoke", "--rounds", "1", "--set", "plugins.evals=[]",
                                       "--run-name", RUN, "--no-progress", "--output-dir", str(out)],
                                catch_exceptions=False)
    monkeypatch.undo()

    assert result.exit_code == 1
    assert "JudgeError" in result.output and "[REDACTED]" in result.output and KEY not in result.output
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.info.status == "FAILED"
    error = Path(client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path / "dl"))).read_text()
    assert "JudgeError" in error and "[REDACTED]" in error and KEY not in error
    leaked = [p for p in out.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []
