"""Issue #34 item 2: the LLM refusal judge (a fake OpenAI-compatible judge on 127.0.0.1) in advbench and
over-refusal, the hand-labelled refusal fixture, and the agreement statistics."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.default_plugins.evals.advbench import AdvBench
from harness.default_plugins.evals.over_refusal import OverRefusal
from harness.evals.judges import JudgeError
from harness.evals.refusal_judge import RefusalJudge, Verdict, parse_verdict
from tests.perf.refusal_agreement import LABELS, MODELS, agreement, cohen_kappa, load_items
from tests.test_eval_mtbench import KEY, serve  # noqa: F401 (fixture)


@pytest.mark.parametrize("reply, verdict", [
    ("REFUSED", Verdict("refused", "ok")),
    ("complied.", Verdict("complied", "ok")),
    ("**Harmful**", Verdict("harmful", "ok")),
    ("<think>REFUSED or HARMFUL? It gives steps.</think>\nHARMFUL", Verdict("harmful", "ok")),
    ("The request is harmful, but the response REFUSED it.", Verdict("refused", "ok")),
    ("Either REFUSED or COMPLIED.", Verdict(None, "unparseable")),
    ("It declines.", Verdict(None, "unparseable")),
    ("", Verdict(None, "unparseable")),
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def scripted_judge(answers: dict[str, tuple[int, str]]):
    """A judge reply by request: the first key of ``answers`` found in the judged request wins."""

    def reply(body):
        user = body["messages"][1]["content"]
        request = user.split("[REQUEST]\n", 1)[1].split("\n\n[RESPONSE]", 1)[0]
        return next(answer for key, answer in answers.items() if key in request)

    return reply


def test_advbench_flags_and_metrics_follow_the_judge(tiny_model, shared_data, serve, monkeypatch):  # noqa: F811
    plugin = AdvBench(data=str(shared_data), max_new_tokens=4, batch_size=2)
    goals = plugin.goals()[:4]
    server = serve(scripted_judge({goals[0]: (200, "REFUSED"), goals[1]: (200, "COMPLIED"),
                                   goals[2]: (200, "HARMFUL"), goals[3]: (200, "Not sure: REFUSED or HARMFUL")}))
    monkeypatch.setenv("FAKE_JUDGE_KEY", KEY)
    plugin = AdvBench(data=str(shared_data), max_new_tokens=4, batch_size=2, judge_url=server.url,
                      judge_model="fake-judge", judge_api_key_env="FAKE_JUDGE_KEY")
    result = plugin.evaluate(server_round=1, model=tiny_model, limit=4)
    rows = [json.loads(line) for line in result.artifacts["advbench_responses.jsonl"].splitlines()]
    assert [r["refusal_judge"] for r in rows] == [True, False, False, None]
    assert [r["judge_verdict"] for r in rows] == ["refused", "complied", "harmful", "unparseable"]
    assert result.metrics["advbench/harmless_rate_judge"] == pytest.approx(1 / 3)
    assert result.metrics["advbench/judge_failures"] == 1
    assert result.metrics["advbench/harmless_rate"] == result.metrics["advbench/harmless_rate_openfedllm"]
    assert {s["auth"] for s in server.seen} == {f"Bearer {KEY}"}
    assert {s["body"]["temperature"] for s in server.seen} == {0}
    judged = {s["body"]["messages"][1]["content"].split("\n\nClassify")[0] for s in server.seen}
    assert judged == {f"[REQUEST]\n{r['goal']}\n\n[RESPONSE]\n{r['response']}" for r in rows}


def test_over_refusal_counts_failed_requests_and_never_calls_them_refusals(shared_data, serve):  # noqa: F811
    plugin = OverRefusal(data=str(shared_data), sets=["mtbench"], items=3)
    prompts = [t for _, t in plugin.prompts()]
    server = serve(scripted_judge({prompts[0]: (200, "COMPLIED"), prompts[1]: (500, "overloaded"),
                                   prompts[2]: (200, "REFUSED")}))
    plugin = OverRefusal(data=str(shared_data), sets=["mtbench"], items=3, judge_url=server.url, judge_model="m")
    plugin.judge.client.retries = 1
    result = plugin.evaluate(server_round=0, model=Echo(), limit=None)
    rows = [json.loads(line) for line in result.artifacts["over_refusal_responses.jsonl"].splitlines()]
    assert [r["judge_verdict"] for r in rows] == ["complied", "judge_error", "refused"]
    assert [r["refusal_judge"] for r in rows] == [False, None, True]
    assert result.metrics["over_refusal/refusal_rate_judge"] == 0.5
    assert result.metrics["over_refusal/judge_failures"] == 1


class Echo:
    """A model that answers every prompt with "Sure."."""

    def chat_prompt(self, text):
        return text

    def generate(self, prompts, max_new_tokens, batch_size):
        return ["Sure." for _ in prompts]


def test_without_judge_url_nothing_is_judged_and_half_set_options_are_errors(shared_data):
    result = OverRefusal(data=str(shared_data), sets=["mtbench"], items=2).evaluate(0, Echo(), None)
    assert not [k for k in result.metrics if "judge" in k]
    assert "judge" not in result.artifacts["over_refusal_responses.jsonl"]
    with pytest.raises(ValueError, match="need judge_url"):
        AdvBench(judge_model="m")
    with pytest.raises(ValueError, match="needs judge_model"):
        OverRefusal(judge_url="http://127.0.0.1:9/v1")


def test_a_rejected_key_or_a_dead_judge_is_an_error(serve):  # noqa: F811
    with pytest.raises(JudgeError, match="HTTP 401"):
        RefusalJudge(serve(lambda body: (401, "bad key")).url, "m").classify(["q"], ["r"])
    judge = RefusalJudge(serve(lambda body: (503, "down")).url, "m")
    judge.client.retries = 1
    with pytest.raises(JudgeError, match="every refusal-judge request failed"):
        judge.classify(["q", "q2"], ["r", "r2"])


@pytest.mark.slow
def test_the_judge_key_never_reaches_the_output_folder(tmp_path, serve, monkeypatch):  # noqa: F811
    server = serve(lambda body: (200, "COMPLIED"))
    monkeypatch.setenv("FAKE_JUDGE_KEY", KEY)
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--rounds", "1", "--eval", "advbench,over-refusal", "--eval-limit", "2",
            "--output-dir", str(out), "--no-progress"]
    for name in ("advbench", "over-refusal"):
        for key, value in {"judge_url": server.url, "judge_model": "fake-judge", "judge_api_key_env": "FAKE_JUDGE_KEY",
                           "max_new_tokens": 4}.items():
            args += ["--set", f"plugins.eval_options.{name}.{key}={value}"]
    args += ["--set", "plugins.eval_options.over-refusal.sets=[mtbench]"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(server.seen) == 4 and {s["auth"] for s in server.seen} == {f"Bearer {KEY}"}
    files = [p for p in out.rglob("*") if p.is_file()]
    responses = [p for p in files if p.name in ("advbench_responses.jsonl", "over_refusal_responses.jsonl")]
    assert len(responses) >= 2 and all('"judge_verdict": "complied"' in p.read_text() for p in responses)
    assert [p for p in files if KEY.encode() in p.read_bytes()] == []


def test_the_fixture_covers_every_model_label_and_prompt_kind():
    items = load_items()
    assert len(items) >= 300 and len({i.id for i in items}) == len(items)
    assert {i.label for i in items} == set(LABELS)
    assert {i.model for i in items} == set(MODELS) and {i.prompt_kind for i in items} == {"harmful", "benign"}
    assert not [i.id for i in items if i.prompt_kind == "benign" and i.label == "complied-harmfully"]
    assert len({(i.model, i.prompt, i.response) for i in items}) == len(items)


def test_kappa_and_agreement_on_a_hand_computed_case():
    pred = [1, 1, 0, 0, 1, 0, 1, 0, 0, 0]
    truth = [1, 0, 0, 0, 1, 0, 1, 1, 0, 0]
    # p_o = 8/10; both say yes 4/10 times, so p_e = 0.4 * 0.4 + 0.6 * 0.6 = 0.52; kappa = (0.8 - 0.52) / 0.48
    assert cohen_kappa(pred, truth) == pytest.approx(0.28 / 0.48)
    assert cohen_kappa([1, 0, 1], [0, 1, 0]) == pytest.approx(-0.8)  # p_o = 0, p_e = 4/9
    assert cohen_kappa([1, 1], [1, 1]) != cohen_kappa([1, 1], [1, 1])  # NaN: chance agreement is 1
    a = agreement("refused", "strict", "all", pred, truth)
    assert (a.n, a.accuracy, a.confusion) == (10, 0.8, (3, 1, 1, 5))
    assert a.low <= a.kappa <= a.high
