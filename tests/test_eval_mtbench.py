"""MT-Bench: rating parsing, FastChat prompt filling and a fake OpenAI-compatible judge on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.evals.judges import JudgeError, OpenAIJudge, Rating, parse_rating
from harness.registry import PluginError, instantiate
from harness.default_plugins.evals.mtbench import MTBench

KEY = "sk-test-never-logged"


@pytest.mark.parametrize("text, rating", [
    ("The answer is thorough. Rating: [[8]]", Rating(8.0, "ok")),
    ("Rating: [[7.5]]", Rating(7.5, "ok")),
    ("Rating: [6]", Rating(6.0, "ok")),  # FastChat's single-bracket fallback
    ("Rating: [[10]] and then [[2]]", Rating(10.0, "ok")),  # the first double-bracket rating wins
    ("I would give it a seven.", Rating(None, "unparseable")),
    ("Rating: [[high]]", Rating(None, "unparseable")),
    ("Rating: [[11]]", Rating(None, "out_of_range")),
    ("Rating: [[0]]", Rating(None, "out_of_range")),
])
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


class FakeJudgeServer(ThreadingHTTPServer):
    """An OpenAI-compatible /v1/chat/completions that answers via ``reply(body) -> (status, text)``."""

    def __init__(self, reply):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply, self.seen, self.lock = reply, [], threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            status, text = self.server.reply(body)
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]} if status == 200
                             else {"error": {"message": text}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def serve():
    servers = []

    def start(reply):
        server = FakeJudgeServer(reply)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def mini_mtbench(shared_data, tmp_path):
    """A data dir with three MT-Bench questions (writing, math, roleplay) and the real reference/prompt files."""
    rows = [json.loads(line) for line in (shared_data / "mt_bench/question.jsonl").read_text().splitlines()]
    picked = [next(r for r in rows if r["category"] == c) for c in ("writing", "math", "roleplay")]
    root = tmp_path / "data" / "mt_bench"
    (root / "reference_answer").mkdir(parents=True)
    (root / "question.jsonl").write_text("".join(json.dumps(r) + "\n" for r in picked))
    (root / "judge_prompts.jsonl").symlink_to(shared_data / "mt_bench/judge_prompts.jsonl")
    (root / "reference_answer/gpt-4.jsonl").symlink_to(shared_data / "mt_bench/reference_answer/gpt-4.jsonl")
    return root.parent, picked


def test_judged_end_to_end_with_every_kind_of_judgment(tiny_model, serve, mini_mtbench, monkeypatch):
    data, (writing, math, roleplay) = mini_mtbench
    flaky = {"failed": False}

    def reply(body):
        user = body["messages"][1]["content"]
        turn2 = "### User:" in user
        if writing["turns"][0] in user:
            return 200, "Rating: [7.5]" if turn2 else "Helpful and vivid. Rating: [[8]]"
        if math["turns"][0] in user:
            return 200, "Rating: [[11]]" if turn2 else "The answer is wrong, I would not rate it."
        if turn2 and not flaky["failed"]:
            flaky["failed"] = True
            return 500, "overloaded"  # retried
        return 200, "Rating: [[5]]" if turn2 else "Rating: [[3]]"

    server = serve(reply)
    monkeypatch.setenv("FAKE_JUDGE_KEY", KEY)
    plugin = instantiate("eval", "mtbench", {
        "data": str(data), "judge_url": server.url, "judge_model": "fake-judge", "judge_api_key_env": "FAKE_JUDGE_KEY",
        "max_new_tokens": 4, "judge_workers": 2,
    })
    result = plugin.evaluate(server_round=2, model=tiny_model, limit=None)

    m = result.metrics
    assert m["mtbench/judgments"] == 6 and m["mtbench/rated"] == 4
    assert m["mtbench/unparseable"] == 1 and m["mtbench/out_of_range"] == 1 and m["mtbench/judge_errors"] == 0
    assert m["mtbench/score"] == pytest.approx((8 + 7.5 + 3 + 5) / 4)
    assert m["mtbench/turn_1"] == pytest.approx(5.5) and m["mtbench/turn_2"] == pytest.approx(6.25)
    assert m["mtbench/category/writing"] == pytest.approx(7.75) and m["mtbench/category/roleplay"] == 4
    assert "mtbench/category/math" not in m

    assert len(server.seen) == 7  # six judgments, one retried
    assert {s["path"] for s in server.seen} == {"/v1/chat/completions"}
    assert {s["auth"] for s in server.seen} == {f"Bearer {KEY}"}
    assert {s["body"]["model"] for s in server.seen} == {"fake-judge"}
    assert all(s["body"]["temperature"] == 0 for s in server.seen)

    answers = {r["question_id"]: r["turns"] for r in map(json.loads, result.artifacts["mtbench_answers.jsonl"].splitlines())}
    math_t1 = next(s["body"]["messages"] for s in server.seen if math["turns"][0] in s["body"]["messages"][1]["content"]
                   and "### User:" not in s["body"]["messages"][1]["content"])
    assert math_t1[0]["content"] == "You are a helpful assistant."
    assert "[The Start of Reference Answer]" in math_t1[1]["content"]
    assert f"[The Start of Assistant's Answer]\n{answers[math['question_id']][0]}\n" in math_t1[1]["content"]
    writing_t2 = next(s["body"]["messages"][1]["content"] for s in server.seen
                      if writing["turns"][1] in s["body"]["messages"][1]["content"])
    first, second = answers[writing["question_id"]]
    assert f"### Assistant A:\n{first}\n\n### User:\n{writing['turns'][1]}\n\n### Assistant A:\n{second}" in writing_t2

    judgments = [json.loads(line) for line in result.artifacts["mtbench_judgments.jsonl"].splitlines()]
    assert sorted(j["status"] for j in judgments) == ["ok"] * 4 + ["out_of_range", "unparseable"]
    assert {j["judge_prompt"] for j in judgments if j["category"] == "math"} == {
        "single-math-v1", "single-math-v1-multi-turn"}
    assert KEY not in json.dumps(result.metrics) + "".join(result.artifacts.values())


def test_rejected_key_is_a_clear_error_without_the_key(serve, monkeypatch):
    server = serve(lambda body: (401, "invalid api key"))
    monkeypatch.setenv("FAKE_JUDGE_KEY", KEY)
    judge = OpenAIJudge(server.url, "fake-judge", "FAKE_JUDGE_KEY")
    with pytest.raises(JudgeError, match=r"rejected the request \(HTTP 401\): .*invalid api key") as info:
        judge.judge([("system", "user")])
    assert KEY not in str(info.value) and KEY not in repr(judge)


def test_unreachable_judge_is_counted_then_fatal_when_nothing_worked(tiny_model, mini_mtbench):
    data, _ = mini_mtbench
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "nobody", retries=1, timeout=2)
    assert all(isinstance(r, Exception) for r in judge.judge([("s", "u"), ("s", "u")]))
    plugin = MTBench(data=str(data), judge_url="http://127.0.0.1:9/v1", judge_model="nobody", max_new_tokens=2)
    with pytest.raises(JudgeError, match="every MT-Bench judge request failed"):
        plugin.evaluate(server_round=1, model=tiny_model, limit=1)


def test_local_hf_judge_counts_unparseable_judgments(tiny_model, mini_mtbench):
    data, _ = mini_mtbench
    plugin = MTBench(data=str(data), judge_hf_model="tiny-random", judge_max_tokens=3, max_new_tokens=2)
    result = plugin.evaluate(server_round=1, model=tiny_model, limit=1)
    m = result.metrics
    assert m["mtbench/judgments"] == 2
    assert m["mtbench/rated"] + m["mtbench/unparseable"] + m["mtbench/out_of_range"] == 2


@pytest.mark.parametrize("options, message", [
    ({}, "needs exactly one judge"),
    ({"judge_url": "http://x/v1", "judge_hf_model": "tiny-random"}, "needs exactly one judge"),
    ({"judge_url": "localhost:8000", "judge_model": "m"}, "must start with http"),
    ({"judge_url": "http://x/v1"}, "needs judge_model"),
    ({"judge_url": "http://x/v1", "judge_model": "m", "judge_api_key_env": "SURELY_UNSET_KEY_VAR"},
     "SURELY_UNSET_KEY_VAR, but that environment variable is not set"),
])
def test_judge_configuration_errors(options, message):
    with pytest.raises(PluginError, match=message):
        instantiate("eval", "mtbench", options)
