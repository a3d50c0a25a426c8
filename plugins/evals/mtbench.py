"""`mtbench`: MT-Bench's 80 two-turn questions, graded 1-10 by an LLM judge as in FastChat.

The model answers turn 1, then turn 2 with its own first answer in the history (greedy). A
judge grades each turn with FastChat's single-answer prompts (``single-v1``, or
``single-math-v1`` with GPT-4 reference answers for math, reasoning and coding; the
``-multi-turn`` variants for turn 2) and ``[[rating]]`` is parsed from its reply.

The judge is either an OpenAI-compatible endpoint (``judge_url`` + ``judge_model``, key from
the environment variable named by ``judge_api_key_env``; vLLM or a hosted API) or a local HF
model (``judge_hf_model``). Judgments without a valid rating are counted (``unparseable``,
``out_of_range``, ``judge_errors``), never dropped silently. Answers and judgments are
stored as ``mtbench_answers.jsonl`` and ``mtbench_judgments.jsonl``.
"""

from __future__ import annotations

import json

from harness.evals.files import data_file
from harness.evals.grading import Judgment, judge_prompt_name, judge_request, summarise
from harness.evals.judges import HFJudge, Judge, JudgeError, OpenAIJudge, parse_rating
from harness.evals.loaders import JudgePrompt, MTBenchQuestion, load_judge_prompts, load_mtbench, take
from harness.hookspecs import hookimpl
from harness.types import EvalResult, Headline, PromptSet

QUESTIONS = "mt_bench/question.jsonl"
REFERENCES = "mt_bench/reference_answer/gpt-4.jsonl"
JUDGE_PROMPTS = "mt_bench/judge_prompts.jsonl"


def make_judge(url: str | None, model: str | None, api_key_env: str | None, hf_model: str | None,
               max_tokens: int, workers: int) -> Judge:
    if bool(url) == bool(hf_model):
        raise ValueError("mtbench needs exactly one judge: judge_url + judge_model (OpenAI-compatible) or judge_hf_model")
    if url:
        return OpenAIJudge(url, model or "", api_key_env, max_tokens=max_tokens, workers=workers)
    return HFJudge(hf_model, max_tokens=max_tokens)


class MTBench:
    headline = (Headline("mtbench/score", "mt-bench score (judge, 1-10)", format=".2f"),)

    def __init__(self, data: str | None = None, judge_url: str | None = None, judge_model: str | None = None,
                 judge_api_key_env: str | None = None, judge_hf_model: str | None = None,
                 judge_max_tokens: int = 2048, judge_workers: int = 8, max_new_tokens: int = 1024,
                 max_prompt_length: int = 4096, batch_size: int = 8):
        self.judge = make_judge(judge_url, judge_model, judge_api_key_env, judge_hf_model, judge_max_tokens, judge_workers)
        self.data = data
        self.max_new_tokens, self.max_prompt_length, self.batch_size = max_new_tokens, max_prompt_length, batch_size
        self._files: tuple[list[MTBenchQuestion], dict[str, JudgePrompt]] | None = None

    def files(self) -> tuple[list[MTBenchQuestion], dict[str, JudgePrompt]]:
        """The questions (with reference answers) and the judge prompts, read (and checked) once."""
        if self._files is None:
            self._files = (load_mtbench(data_file(QUESTIONS, self.data), data_file(REFERENCES, self.data)),
                           load_judge_prompts(data_file(JUDGE_PROMPTS, self.data)))
        return self._files

    @hookimpl
    def on_run_start(self, run) -> None:
        self.files()  # a bad file fails the run before its first round, not at its first eval

    @hookimpl
    def declare_prompts(self, run):
        questions = take(self.files()[0], run.config.plugins.eval_limit, "mtbench")
        return PromptSet.from_texts("eval", "mtbench", [t for q in questions for t in q.turns],
                                    str(data_file(QUESTIONS, self.data)))

    def answer(self, model, questions) -> list[tuple[str, str]]:
        """Both turns for every question; turn 2 sees the model's own turn-1 answer."""
        gen = dict(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, max_prompt_length=self.max_prompt_length)
        first = model.generate([model.chat_prompt(q.turns[0]) for q in questions], **gen)
        second = model.generate(
            [model.chat_prompt(q.turns[1], history=[(q.turns[0], a)]) for q, a in zip(questions, first)], **gen
        )
        return list(zip(first, second))

    def grade(self, questions, answers) -> list[Judgment]:
        prompts = self.files()[1]
        keys = [(q, a, turn) for q, a in zip(questions, answers) for turn in (1, 2)]
        replies = self.judge.judge([judge_request(q, a, turn, prompts) for q, a, turn in keys])
        judgments = []
        for (q, _, turn), reply in zip(keys, replies):
            name = judge_prompt_name(q, turn)
            if isinstance(reply, Exception):
                judgments.append(Judgment(q.question_id, q.category, turn, name, None, None, str(reply)))
            else:
                judgments.append(Judgment(q.question_id, q.category, turn, name, reply, parse_rating(reply)))
        if judgments and all(j.error for j in judgments):
            raise JudgeError(f"every MT-Bench judge request failed; first error: {judgments[0].error}")
        return judgments

    @hookimpl
    def evaluate(self, server_round, model, limit):
        questions = take(self.files()[0], limit, "mtbench")
        answers = self.answer(model, questions)
        judgments = self.grade(questions, answers)
        answer_rows = [
            {"question_id": q.question_id, "category": q.category, "turns": list(a)} for q, a in zip(questions, answers)
        ]
        judgment_rows = [
            {"question_id": j.question_id, "category": j.category, "turn": j.turn, "judge_prompt": j.judge_prompt,
             "rating": j.rating.value if j.rating else None, "status": j.rating.status if j.rating else "judge_error",
             "judgment": j.text, "error": j.error}
            for j in judgments
        ]
        return EvalResult(
            metrics=summarise(judgments),
            artifacts={"mtbench_answers.jsonl": _jsonl(answer_rows), "mtbench_judgments.jsonl": _jsonl(judgment_rows)},
        )


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
