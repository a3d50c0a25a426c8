"""FastChat's single-answer grading for MT-Bench: which judge prompt, filled how, and the averages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from harness.evals.files import EvalDataError
from harness.evals.judges import JudgeRequest, Rating
from harness.evals.loaders import MT_BENCH_REF_CATEGORIES, JudgePrompt, MTBenchQuestion


@dataclass(frozen=True)
class Judgment:
    question_id: int
    category: str
    turn: int  # 1 or 2
    judge_prompt: str
    text: str | None  # the judge's answer; None when the request failed
    rating: Rating | None
    error: str | None = None


def judge_prompt_name(question: MTBenchQuestion, turn: int) -> str:
    name = "single-math-v1" if question.category in MT_BENCH_REF_CATEGORIES else "single-v1"
    return name + ("-multi-turn" if turn == 2 else "")


def judge_request(
    question: MTBenchQuestion, answers: tuple[str, str], turn: int, prompts: dict[str, JudgePrompt]
) -> JudgeRequest:
    """The (system, user) messages FastChat sends its judge for ``turn`` of ``question``."""
    name = judge_prompt_name(question, turn)
    if name not in prompts:
        raise EvalDataError(f"judge prompts lack {name!r} (have: {', '.join(sorted(prompts))})")
    prompt = prompts[name]
    fields: dict[str, str] = (
        {"question": question.turns[0], "answer": answers[0]}
        if turn == 1
        else {"question_1": question.turns[0], "question_2": question.turns[1],
              "answer_1": answers[0], "answer_2": answers[1]}
    )
    if question.category in MT_BENCH_REF_CATEGORIES:
        fields["ref_answer_1"], fields["ref_answer_2"] = question.reference
    return prompt.system_prompt, prompt.prompt_template.format(**fields)


def summarise(judgments: Sequence[Judgment], prefix: str = "mtbench") -> dict[str, float]:
    """Mean 1-10 rating overall, per turn and per category, plus counts of every judgment that has none."""
    counts = {"ok": 0, "unparseable": 0, "out_of_range": 0, "judge_errors": 0}
    overall: list[float] = []
    by_group: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        if j.rating is None:
            counts["judge_errors"] += 1
            continue
        counts[j.rating.status] += 1
        if j.rating.value is not None:
            overall.append(j.rating.value)
            by_group[f"turn_{j.turn}"].append(j.rating.value)
            by_group[f"category/{j.category}"].append(j.rating.value)
    metrics = {
        f"{prefix}/judgments": float(len(judgments)),
        f"{prefix}/rated": float(counts["ok"]),
        f"{prefix}/unparseable": float(counts["unparseable"]),
        f"{prefix}/out_of_range": float(counts["out_of_range"]),
        f"{prefix}/judge_errors": float(counts["judge_errors"]),
    }
    if overall:
        metrics[f"{prefix}/score"] = sum(overall) / len(overall)
    metrics.update({f"{prefix}/{group}": sum(v) / len(v) for group, v in sorted(by_group.items())})
    return metrics
