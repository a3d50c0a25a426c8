"""Issue #19, item 9: a judge server that echoes the Authorization header cannot put the API key into an error
message, stderr or the run's ``error.txt`` (one redaction function: harness.redaction.redact). Issue #35, item 1:
nor can a judge that echoes it in a successful answer put it into the run's artifacts, checkpoints, MLflow store
or logs."""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.evals.judges import JudgeError, OpenAIJudge
from harness.hookspecs import hookimpl
from harness.redaction import redact, redact_logs, redact_result
from harness.tracking import _param_value, default_tracking_uri
from harness.types import EvalResult
from harness.default_plugins.aggregators.fedavg import FedAvg
from tests.test_eval_mtbench import mini_mtbench, serve  # noqa: F401 (fixtures)

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


@pytest.mark.slow
def test_a_judge_echoing_the_key_in_a_200_answer_leaves_it_in_no_file_of_the_run_or_the_store(
        tmp_path, monkeypatch, serve, mini_mtbench):  # noqa: F811
    data, _ = mini_mtbench
    server = serve(lambda body: (200, f"Helpful. Rating: [[6]] (request signed with {KEY})"))
    monkeypatch.setenv(KEY_ENV, KEY)
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--rounds", "1", "--eval", "mtbench", "--eval-limit", "1", "--run-name", RUN,
            "--output-dir", str(out), "--no-progress"]
    options = {"data": data, "judge_url": server.url, "judge_model": "m", "judge_api_key_env": KEY_ENV,
               "max_new_tokens": 4}
    for key, value in options.items():
        args += ["--set", f"plugins.eval_options.mtbench.{key}={value}"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    monkeypatch.undo()

    assert result.exit_code == 0, result.output
    assert {s["auth"] for s in server.seen} == {f"Bearer {KEY}"} and KEY not in result.output
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    judgments = Path(client.download_artifacts(run.info.run_id, "round_001/mtbench_judgments.jsonl", str(tmp_path)))
    assert "Rating: [[6]] (request signed with [REDACTED])" in judgments.read_text()  # stored, without the key
    state = out / "runs" / RUN / "checkpoints" / "round_0001" / "state.json"
    assert "request signed with [REDACTED]" in state.read_text()  # the checkpoint's pending log holds it too
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any("mlartifacts" in p.parts for p in files)
    assert [p for p in files if KEY.encode() in p.read_bytes()] == []


def test_hook_results_params_and_log_lines_lose_the_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    from harness.redaction import register_secret_env

    register_secret_env(KEY_ENV)
    result = EvalResult({f"judge/{KEY}": 1.0, "judge/score": 2.0}, {f"{KEY}.txt": f"echo {KEY}"})
    redact_result(result)
    assert result.metrics == {"judge/REDACTED": 1.0, "judge/score": 2.0}  # a name MLflow accepts
    assert result.artifacts == {"REDACTED.txt": "echo [REDACTED]"}
    assert KEY not in _param_value({"judge_url": f"https://judge/v1?key={KEY}"})

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        redact_logs()
        try:
            raise RuntimeError(f"judge answered {KEY}")
        except RuntimeError:
            logging.getLogger("plugin").exception("judge said %s", KEY)
    finally:
        logging.getLogger().removeHandler(handler)
    logged = stream.getvalue()
    assert "judge said [REDACTED]" in logged and "RuntimeError: judge answered [REDACTED]" in logged and KEY not in logged
