"""The safety-tuning mix: refusals to real red-team prompts, the base model's own answers to benign ones.

Red prompts are the single-turn first requests of Anthropic hh-rlhf ``harmless-base`` (test split), kept
only where they fall ``within`` a digest file (by default the shipped SmolLM2 guard's training prompts,
so the rest of hh-rlhf stays free for client data). Each gets one of :data:`REFUSALS` (or, with
``refusal_style="statement"``, of :data:`STATEMENT_REFUSALS`).

Benign prompts are SQuARe's English questions (``question_valid.json``: non-sensitive ones, topped up to the
limit with sensitive ones, whose acceptable answer is a balanced one, not a refusal) and the project's
templated everyday instructions (:data:`INSTRUCTIONS`), including some that only sound alarming
("How do I kill a Python process?"). Their answers are the base model's own greedy answers
(:mod:`harness.safe_base.tune`), so tuning teaches *when* to refuse without changing *how* the model answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from harness.data.normalize import prompt_digest
from harness.data.samples import DataError
from harness.data.sources import load_hh_rlhf, read_json_file
from harness.safe_base.chat_requests import CHAT_FILL, CHAT_REQUESTS
from harness.safe_base.settings import REFUSAL_STYLES

REFUSALS = (
    "I'm sorry, but I can't help with that. It could cause real harm to people.",
    "I can't help with this request. It could hurt someone, and I won't assist with it.",
    "I'm sorry, I can't assist with that. If you're dealing with something difficult, talking to someone you trust can help.",
    "I won't help with that, because it could harm others or break the law. I'm happy to help with something else.",
    "Sorry, but I can't provide that. It's harmful, and I don't want to contribute to anyone getting hurt.",
    "I cannot help with that request. Let me know if there's something safe I can help you with instead.",
)
STATEMENT_REFUSALS = (
    "That could cause real harm to people, so I cannot help with it.",
    "This request could hurt someone, and I cannot assist with it.",
    "Helping with that could harm others or break the law, so I cannot do it. I'm happy to help with something else.",
    "That's harmful, and I can't provide it. I don't want to contribute to anyone getting hurt.",
    "Requests like this put people at risk, so I cannot help. Let me know if there's something safe I can help with.",
    "That isn't safe, and I can't assist with it. If you're dealing with something difficult, talking to someone you "
    "trust can help.",
)
"""Refusals that state the harm before refusing, so none opens the way the base model opens many benign answers
("I'm sorry to hear that …", "I'm glad you …"); recipe v10 (docs/safe-base.md). Each still matches both refusal
rules within the strict rule's window."""
STYLE_REFUSALS = dict(zip(REFUSAL_STYLES, (REFUSALS, STATEMENT_REFUSALS)))

_FILL = {
    "nature": ["autumn leaves", "the ocean at night", "a mountain sunrise", "spring rain", "a quiet forest", "the desert"],
    "thing": ["a refrigerator", "a bicycle gear", "a rainbow", "a vaccine", "a solar panel", "the internet", "a compass",
              "a microwave oven", "an electric car battery", "a thermostat"],
    "skill": ["public speaking", "learning a new language", "saving money", "writing clearly", "running a first 5k",
              "keeping a houseplant alive", "studying for exams", "cooking for a family"],
    "event": ["a birthday picnic", "a book club meeting", "a team lunch", "a charity run", "a garden party",
              "a board game night"],
    "topic": ["recycling", "the history of tea", "how bees make honey", "the water cycle", "volcanoes",
              "the invention of the printing press", "healthy breakfasts", "remote work"],
    "place": ["a small fishing village", "a busy train station", "a public library", "a farmers' market",
              "a rainforest", "a lighthouse"],
    "role": ["a ship's cook", "a museum guide", "a medieval blacksmith", "a friendly robot", "a detective",
             "a park ranger", "a chess coach", "a famous chef"],
    "history": ["the printing press had never been invented", "the Roman Empire had never fallen",
                "humans had never domesticated dogs", "the telephone had been invented a century earlier",
                "the Olympic Games had never been revived", "coffee had never reached Europe"],
    "count": ["grains of sand fit in a bucket", "heartbeats a person has in a year", "trees grow in a large park",
              "bricks are in a small house", "letters are in a long novel", "raindrops fall in a thunderstorm"],
    "habit": ["my focus while studying", "my sleep schedule", "my handwriting", "my morning routine",
              "my listening skills", "my posture at a desk"],
    "letter": ["a thank-you note to a teacher", "a short email asking a colleague for feedback",
               "a letter to a landlord about a broken heater", "a cover letter for a library assistant job",
               "a polite email declining a meeting", "a message congratulating a friend on a new job"],
    "puzzle": ["If a train leaves at 3 pm and the trip takes 2 hours and 45 minutes, when does it arrive?",
               "Tom is taller than Ann, and Ann is taller than Joe. Who is the shortest?",
               "Which word does not belong: apple, banana, carrot, cherry?",
               "A shop sells pens at 3 for 2 dollars. How much do 12 pens cost?",
               "What is the next number in the sequence 2, 4, 8, 16?", "Solve for x: 3x + 5 = 20."],
    "code": ["reverses a string", "counts the vowels in a sentence", "returns the largest number in a list",
             "checks whether a number is prime", "merges two sorted lists"],
    "alarm": ["How do I kill a Python process that hangs?", "How can I shoot better photos at night?",
              "What's the best way to blow up a balloon quickly?", "How do I get rid of weeds in my garden?",
              "How do I attack a chess opponent's king side?", "How do I crack an egg without getting shell in the bowl?",
              "How can I steal the show at my school talent contest?", "What household chemicals should never be mixed?",
              "How do I terminate a Linux program from the terminal?", "How do I break a bad habit?",
              "How can I destroy old hard drives safely before recycling them?", "How do I beat the final boss in a video game?"],
}
INSTRUCTIONS = (
    ("Write a short poem about {nature}.", "nature"),
    ("Explain how {thing} works.", "thing"),
    ("Give me three tips for {skill}.", "skill"),
    ("Write a friendly invitation to {event}.", "event"),
    ("Write a short paragraph about {topic}.", "topic"),
    ("Describe {place} in a few sentences.", "place"),
    ("What are the main benefits of {skill}?", "skill"),
    ("Summarize what people should know about {topic}.", "topic"),
    ("Compose a short social media post announcing {event}.", "event"),
    ("Explain {thing} to a ten-year-old.", "thing"),
    ("Pretend you are {role}. Introduce yourself and describe your day.", "role"),
    ("As {role}, what advice would you give to a beginner?", "role"),
    ("What if {history}?", "history"),
    ("Estimate how many {count}. Explain your reasoning step by step.", "count"),
    ("How can I improve {habit}?", "habit"),
    ("Please help me write {letter}.", "letter"),
    ("{puzzle}", "puzzle"),
    ("Write a Python function that {code}.", "code"),
    ("{alarm}", "alarm"),
)
"""The project's own everyday requests, of the kinds a chat model is asked most (writing, role play, what-ifs,
estimates, self-improvement, puzzles, code). The role-play to code templates were added in the second version of
the recipe, after the first safe base refused those *kinds* of request (docs/safe-base.md)."""


@dataclass(frozen=True)
class SafetyMix:
    """Red prompts (answered with refusals) and benign prompts (answered by the base model itself)."""

    red: list[tuple[str, str]]  # (prompt, refusal)
    benign: list[str]

    def prompts(self) -> list[str]:
        return [p for p, _ in self.red] + self.benign


def red_prompts(hh_rlhf: Path, within: frozenset[str] | None, limit: int | None, seed: int,
                refusals: tuple[str, ...] = REFUSALS) -> list[tuple[str, str]]:
    """Single-turn hh-rlhf harmless-base requests (inside ``within`` when given), each with one of ``refusals``."""
    _, red = load_hh_rlhf(str(hh_rlhf))
    seen, prompts = set(), []
    for sample in red:
        digest = prompt_digest(sample.prompt)
        if "Human:" in sample.prompt or digest in seen or (within is not None and digest not in within):
            continue
        seen.add(digest)
        prompts.append(sample.prompt)
    rng = random.Random(seed)
    rng.shuffle(prompts)
    prompts = prompts[:limit]
    return [(p, refusals[i % len(refusals)]) for i, p in enumerate(prompts)]


def square_questions(path: Path, limit: int, seed: int) -> list[str]:
    """English SQuARe questions: all non-sensitive ones (up to ``limit // 2``), topped up with sensitive ones."""
    rows = read_json_file(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "question_en" in r for r in rows):
        raise DataError(f"{path}: expected SQuARe's JSON list of questions with 'question_en'")
    rng = random.Random(seed)
    plain = [r["question_en"].strip() for r in rows if not r.get("sensitive?")]
    sensitive = [r["question_en"].strip() for r in rows if r.get("sensitive?")]
    rng.shuffle(plain)
    rng.shuffle(sensitive)
    plain = plain[: limit // 2]
    return plain + sensitive[: limit - len(plain)]


def filled(templates: tuple[tuple[str, str], ...], fills: dict[str, list[str]]) -> list[str]:
    """Every ``(template, slot)`` of ``templates`` filled with each of ``fills[slot]``."""
    return [template.format(**{slot: fill}) for template, slot in templates for fill in fills[slot]]


def instructions() -> list[str]:
    """Every filled template of :data:`INSTRUCTIONS` (the project's own everyday requests)."""
    return filled(INSTRUCTIONS, _FILL)


def chat_requests() -> list[str]:
    """Every filled template of :data:`~harness.safe_base.chat_requests.CHAT_REQUESTS` (casual chat requests)."""
    return filled(CHAT_REQUESTS, CHAT_FILL)


def build_mix(data: Path, within: frozenset[str] | None, red_limit: int, square_limit: int, seed: int,
              chat: bool = False, refusal_style: str = REFUSAL_STYLES[0]) -> SafetyMix:
    """The mix from the benchmark data folder ``data`` (``hh_rlhf/``, ``square/``), duplicates removed; ``chat``
    adds the project's casual chat requests (:mod:`harness.safe_base.chat_requests`) to the benign prompts, and
    ``refusal_style`` picks the red prompts' answers (:data:`STYLE_REFUSALS`)."""
    if refusal_style not in REFUSAL_STYLES:
        raise ValueError(f"refusal_style must be one of {', '.join(REFUSAL_STYLES)}, not {refusal_style!r}")
    red = red_prompts(data / "hh_rlhf" / "harmless-base", within, red_limit, seed, STYLE_REFUSALS[refusal_style])
    benign, seen = [], {prompt_digest(p) for p, _ in red}
    extra = chat_requests() if chat else []
    for prompt in square_questions(data / "square" / "question_valid.json", square_limit, seed) + instructions() + extra:
        if (digest := prompt_digest(prompt)) not in seen:
            seen.add(digest)
            benign.append(prompt)
    return SafetyMix(red, benign)
