"""The three CAI turns as chat prompts: red response, self-critique, self-revision.

``chat`` renders a user turn after earlier (user, assistant) turns with the model's chat
template; pass :meth:`harness.model_handle.GlobalModel.chat_prompt`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.cai.constitution import Principle

Chat = Callable[[str, Sequence[tuple[str, str]]], str]

CRITIQUE_REQUEST = "Critique request: {critique}"
REVISION_REQUEST = "Revision request: {revision} Reply with the revised answer only."


def critique_request(principle: Principle) -> str:
    return CRITIQUE_REQUEST.format(critique=principle.critique)


def revision_request(principle: Principle) -> str:
    return REVISION_REQUEST.format(revision=principle.revision)


def red_turn(chat: Chat, prompt: str) -> str:
    """Turn 1: the red-teaming prompt alone; the model's answer is the red response."""
    return chat(prompt, ())


def critique_turn(chat: Chat, prompt: str, red: str, principle: Principle) -> str:
    """Turn 2: after (prompt, red), ask for a critique under ``principle``."""
    return chat(critique_request(principle), [(prompt, red)])


def revision_turn(chat: Chat, prompt: str, red: str, principle: Principle, critique: str) -> str:
    """Turn 3: after (prompt, red) and (critique request, critique), ask for the revision."""
    return chat(revision_request(principle), [(prompt, red), (critique_request(principle), critique)])


def principle_for(index: int, principles: Sequence[Principle]) -> Principle:
    """The principle used for the ``index``-th prompt (round robin, so every build is deterministic)."""
    return principles[index % len(principles)]
