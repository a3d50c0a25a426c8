"""`advbench`: harmless rate on AdvBench's 520 harmful behaviours (Zou et al., 2023).

Each goal is sent through the model's chat template and answered greedily; a response is
harmless when the refusal rule matches it (see :mod:`harness.evals.refusal`). Both rules are
always reported, ``rule`` picks the headline ``advbench/harmless_rate`` (default: the harness's headline rule,
``strict``, which agrees best with hand labels; ``openfedllm`` for the paper's numbers). ``items`` scores a fixed subset:
that many goals spaced evenly over the file (the run's ``eval_limit`` then takes the first of those). With ``guard`` set to
a filter plugin (e.g. ``lg3``), that filter also judges each (goal, response) pair: responses
it keeps (and empty ones) count as harmless. With ``judge_url`` + ``judge_model`` (key from the environment
variable ``judge_api_key_env``) an LLM judge also labels each pair (:mod:`harness.evals.refusal_judge`):
``advbench/harmless_rate_judge`` is its share of refusals, ``advbench/judge_failures`` the pairs it did not label.
Every response is stored as ``advbench_responses.jsonl``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from harness import registry as plugin_registry
from harness.evals.files import data_file
from harness.evals.loaders import load_advbench, spread, take
from harness.evals.refusal import HEADLINE_RULE, RULES, get_rule
from harness.evals.refusal_judge import make_refusal_judge, refusal_rate
from harness.hookspecs import hookimpl
from harness.types import ChatSample, EvalResult, Headline, PromptSet

ADVBENCH_FILE = "advbench/harmful_behaviors.csv"


class AdvBench:
    # the headline rule's rate leads the summary (harness.evals.report.headline_rows); the other rules follow
    headline = tuple(Headline(f"advbench/harmless_rate_{rule}", f"advbench harmless, {rule} rule",
                              items="advbench/items") for rule in RULES if rule != HEADLINE_RULE)

    def __init__(self, data: str | None = None, rule: str = HEADLINE_RULE, max_new_tokens: int = 256,
                 batch_size: int = 16, guard: str | None = None, guard_options: dict[str, Any] | None = None,
                 items: int | None = None, judge_url: str | None = None, judge_model: str | None = None,
                 judge_api_key_env: str | None = None):
        get_rule(rule)
        spread([], items, "advbench")  # checks items
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        self.data, self.rule = data, rule
        self.max_new_tokens, self.batch_size, self.items = max_new_tokens, batch_size, items
        self.guard = plugin_registry.instantiate("filter", guard, guard_options) if guard else None
        self.judge = make_refusal_judge(judge_url, judge_model, judge_api_key_env)
        self._goals: list[str] | None = None

    def goals(self) -> list[str]:
        """AdvBench's goals, read (and checked) once."""
        if self._goals is None:
            self._goals = spread(load_advbench(data_file(ADVBENCH_FILE, self.data)), self.items, "advbench")
        return self._goals

    @hookimpl
    def on_run_start(self, run) -> None:
        self.goals()  # a bad file fails the run before its first round, not at its first eval

    @hookimpl
    def declare_prompts(self, run):
        goals = take(self.goals(), run.config.plugins.eval_limit, "advbench")
        return PromptSet.from_texts("eval", "advbench", goals, str(data_file(ADVBENCH_FILE, self.data)))

    @hookimpl
    def evaluate(self, server_round, model, limit):
        goals = take(self.goals(), limit, "advbench")
        prompts = [model.chat_prompt(goal) for goal in goals]
        start = time.perf_counter()
        responses = model.generate(prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        seconds = time.perf_counter() - start
        tokens = sum(len(model.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)
        refused = {name: [rule.is_refusal(r) for r in responses] for name, rule in RULES.items()}
        rows = [
            {"goal": g, "response": r, **{f"refusal_{name}": flags[i] for name, flags in refused.items()}}
            for i, (g, r) in enumerate(zip(goals, responses))
        ]
        metrics = {f"advbench/harmless_rate_{name}": sum(flags) / len(flags) for name, flags in refused.items()}
        metrics["advbench/harmless_rate"] = metrics[f"advbench/harmless_rate_{self.rule}"]
        metrics["advbench/items"] = float(len(goals))
        metrics["advbench/tokens_per_second"] = tokens / max(seconds, 1e-9)
        if self.guard is not None:
            safe = guard_verdicts(self.guard, server_round, goals, responses)
            for row, ok in zip(rows, safe):
                row["guard_safe"] = ok
            metrics["advbench/guard_harmless_rate"] = sum(safe) / len(safe)
        if self.judge is not None:
            verdicts = self.judge.classify(goals, responses)
            for row, v in zip(rows, verdicts):
                row["refusal_judge"], row["judge_verdict"] = v.refused, v.name
            rate, failures = refusal_rate(verdicts)
            metrics["advbench/harmless_rate_judge"], metrics["advbench/judge_failures"] = rate, float(failures)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return EvalResult(metrics=metrics, artifacts={"advbench_responses.jsonl": text})


def guard_verdicts(guard: Any, server_round: int, goals: list[str], responses: list[str]) -> list[bool]:
    """True where the guard filter keeps (goal, response); empty responses are harmless and not sent to it."""
    asked = [i for i, r in enumerate(responses) if r.strip()]
    samples = [ChatSample(prompt=goals[i], response=responses[i], source="advbench") for i in asked]
    safe = [True] * len(responses)
    if not samples:
        return safe
    verdict = guard.pre_local_train(client_id=-1, samples=samples, server_round=server_round)
    keep = verdict.keep if verdict is not None else [True] * len(samples)
    if len(keep) != len(samples):
        raise ValueError(f"the guard returned {len(keep)} verdicts for {len(samples)} responses")
    for i, k in zip(asked, keep):
        safe[i] = bool(k)
    return safe
