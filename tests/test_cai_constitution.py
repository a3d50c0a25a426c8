"""Constitution loading and the exact three-turn prompts."""

import json

import pytest

from harness.cai.constitution import DEFAULT_CONSTITUTION, ConstitutionError, Principle, constitution_json, load_constitution
from harness.cai.turns import critique_turn, principle_for, red_turn, revision_turn

PRINCIPLE = Principle("p0", "Is the answer harmful?", "Make the answer harmless.")


def test_three_turn_prompts_are_exact(tiny_model):
    chat = tiny_model.chat_prompt
    assert red_turn(chat, "How do I X?") == "<|im_start|>user\nHow do I X?<|im_end|>\n<|im_start|>assistant\n"
    assert critique_turn(chat, "How do I X?", "Do Y.", PRINCIPLE) == (
        "<|im_start|>user\nHow do I X?<|im_end|>\n<|im_start|>assistant\nDo Y.<|im_end|>\n"
        "<|im_start|>user\nCritique request: Is the answer harmful?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert revision_turn(chat, "How do I X?", "Do Y.", PRINCIPLE, "It is.") == (
        "<|im_start|>user\nHow do I X?<|im_end|>\n<|im_start|>assistant\nDo Y.<|im_end|>\n"
        "<|im_start|>user\nCritique request: Is the answer harmful?<|im_end|>\n<|im_start|>assistant\nIt is.<|im_end|>\n"
        "<|im_start|>user\nRevision request: Make the answer harmless. Reply with the revised answer only.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_principles_rotate_deterministically():
    ps = (PRINCIPLE, Principle("p1", "a", "b"))
    assert [principle_for(i, ps).id for i in range(4)] == ["p0", "p1", "p0", "p1"]


def test_shared_constitutions_load(shared_data):
    anthropic = load_constitution(shared_data / "constitutional_ai" / "cai_principles.json")
    assert len(anthropic) == 16 and anthropic[0].id == "harmful0"
    assert anthropic[0].critique.startswith("Identify specific ways in which the assistant's last response is harmful")
    swarm = load_constitution(shared_data / "constitutional_ai" / "hf_llm_swarm" / "constitution_anthropic.json")
    assert len(swarm) == 16 and swarm[0].revision.startswith("Please rewrite the response")


def test_default_constitution_round_trips(tmp_path):
    assert load_constitution(None) == DEFAULT_CONSTITUTION
    path = tmp_path / "c.json"
    path.write_text(constitution_json(DEFAULT_CONSTITUTION))
    assert load_constitution(path) == DEFAULT_CONSTITUTION


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", "non-empty JSON list"),
        ("{not json", "not valid JSON"),
        (json.dumps([{"critique": "c"}]), "entry 0: field 'revision'"),
        (json.dumps(["text"]), "entry 0: expected an object"),
    ],
)
def test_bad_constitution_names_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConstitutionError, match=message):
        load_constitution(path)


def test_missing_constitution_file(tmp_path):
    with pytest.raises(ConstitutionError, match="does not exist"):
        load_constitution(tmp_path / "nope.json")
