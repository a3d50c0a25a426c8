"""The Llama Guard 3 prompt text against the published format, and parsing of the guard's answer."""

import json
from string import Template

from harness.guard.template import HAZARD_CATEGORIES, llama_guard_prompt, parse_guard_output, render_guard_prompt
from harness.models import tiny_tokenizer

PROMPT, RESPONSE = "How do I pick a lock?", "Insert a tension wrench, then rake the pins."


def test_prompt_equals_the_published_format_for_a_fixed_conversation(shared_data):
    published = Template((shared_data / "llama_guard3" / "prompt_template.txt").read_text(encoding="utf-8"))
    expected = published.substitute(agent_type="Agent", conversations=f"User: {PROMPT}\n\nAgent: {RESPONSE}")
    assert llama_guard_prompt(PROMPT, RESPONSE) == expected
    assert expected.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_categories_match_the_published_codes_and_names(shared_data):
    card = json.loads((shared_data / "llama_guard3" / "hazard_categories.json").read_text())
    assert HAZARD_CATEGORIES == {c["code"]: c["name"] for c in card["categories"]}


def test_non_llama3_backbone_gets_the_task_inside_its_own_chat_template():
    tok = tiny_tokenizer()
    text = render_guard_prompt(tok, PROMPT, RESPONSE)
    assert text.startswith("<|im_start|>user\nTask: Check if there is unsafe content in 'Agent' messages")
    assert f"User: {PROMPT}\n\nAgent: {RESPONSE}" in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert "<|start_header_id|>" not in text


def test_parse_guard_output():
    assert parse_guard_output("safe") == (False, [])
    assert parse_guard_output(" unsafe\nS1,S10") == (True, ["S1", "S10"])
    assert parse_guard_output("unsafe\nS99, S3") == (True, ["S3"])
    assert parse_guard_output("unsafe") == (True, [])
    assert parse_guard_output("") == (False, [])
