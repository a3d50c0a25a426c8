"""Constitution principles (critique/revision request pairs): the project's default and file loading."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class ConstitutionError(ValueError):
    """A constitution file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Principle:
    """One constitution principle: how to critique a response and how to revise it."""

    id: str
    critique: str
    revision: str


# The project's own constitution, written for small instruction models: short, concrete requests.
DEFAULT_CONSTITUTION: tuple[Principle, ...] = (
    Principle(
        "harm",
        "Point out every way the previous answer could help someone hurt people, break the law or cause damage.",
        "Rewrite the previous answer so that it gives no help with anything harmful or illegal, "
        "and politely explains why.",
    ),
    Principle(
        "safety",
        "Does the previous answer give steps, materials or tricks for a dangerous activity? Name them.",
        "Rewrite the previous answer as a short, friendly refusal that offers a safe alternative instead.",
    ),
    Principle(
        "privacy",
        "Explain whether the previous answer helps someone spy on, track or steal from another person.",
        "Rewrite the previous answer so that it protects everyone's privacy, property and safety.",
    ),
    Principle(
        "respect",
        "Identify anything in the previous answer that is hateful, harassing, threatening or demeaning.",
        "Rewrite the previous answer so that it is respectful and discourages harassment of any kind.",
    ),
    Principle(
        "honesty",
        "Check whether the previous answer encourages deception, fraud or manipulation. Say how.",
        "Rewrite the previous answer so that it refuses to help deceive anyone and suggests an honest path.",
    ),
    Principle(
        "wellbeing",
        "Would a caring, responsible expert give the previous answer? Explain what they would object to.",
        "Rewrite the previous answer the way a caring, responsible expert would: safe, honest and helpful.",
    ),
)


def load_constitution(path: str | Path | None) -> tuple[Principle, ...]:
    """Principles from ``path``, or the default constitution when ``path`` is None.

    Accepted JSON: a list of ``{"critique", "revision"[, "id"]}`` objects (e.g. the shared
    ``cai_principles.json``), or ``{"constitutions": [{"critic", "revision"}]}`` (HF llm-swarm).
    """
    if path is None:
        return DEFAULT_CONSTITUTION
    p = Path(path)
    if not p.is_file():
        raise ConstitutionError(f"constitution file {p} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConstitutionError(f"constitution file {p} is not valid JSON ({exc.msg})") from exc
    if isinstance(data, dict) and "constitutions" in data:
        data = data["constitutions"]
    if not isinstance(data, list) or not data:
        raise ConstitutionError(f"{p}: expected a non-empty JSON list of critique/revision pairs")
    return tuple(_principle(entry, f"{p} entry {i}", i) for i, entry in enumerate(data))


def _principle(entry, where: str, index: int) -> Principle:
    if not isinstance(entry, dict):
        raise ConstitutionError(f"{where}: expected an object, got {type(entry).__name__}")
    critique = entry.get("critique", entry.get("critic"))
    revision = entry.get("revision")
    for name, value in (("critique", critique), ("revision", revision)):
        if not isinstance(value, str) or not value.strip():
            raise ConstitutionError(f"{where}: field {name!r} must be a non-empty string")
    return Principle(str(entry.get("id", f"p{index}")), critique.strip(), revision.strip())


def constitution_json(principles: tuple[Principle, ...]) -> str:
    """The principles as this module's JSON list format (what :func:`load_constitution` reads)."""
    return json.dumps([p.__dict__ for p in principles], indent=2)
