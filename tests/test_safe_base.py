"""The safe base: its recipe keeps eval sets out, `safety-tune` trains what it says, the shipped one loads."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from harness.cli import main
from harness.config import ModelConfig
from harness.data.normalize import prompt_digest
from harness.data.overlap import DIGEST_FILE, read_digest_file
from harness.evals.refusal import RULES
from harness.guard.defaults import SMOLLM2_GUARD
from harness.model_handle import GlobalModel
from harness.models import SMOLLM2_SAFE, attach_lora, load_base
from harness.safe_base import tune
from harness.safe_base.distill import distill_loss
from harness.safe_base.load import adapter_dir, base_prompt_set
from harness.safe_base.recipe import REFUSALS, STATEMENT_REFUSALS, build_mix, chat_requests, instructions
from harness.safe_base.tune import CARD, SafetyTuneSettings, full_sentences, safety_tune
from harness.training import causal_lm_loss, collate, tokenize_samples
from harness.types import ChatSample
from harness.default_plugins.evals.advbench import AdvBench
from harness.default_plugins.evals.hhh import HHH
from harness.default_plugins.evals.over_refusal import OverRefusal


def eval_digests(shared_data) -> frozenset[str]:
    run = SimpleNamespace(config=SimpleNamespace(plugins=SimpleNamespace(eval_limit=None)))
    sets = [AdvBench(data=str(shared_data)).declare_prompts(run), OverRefusal(data=str(shared_data)).declare_prompts(run)]
    sets += HHH(data=str(shared_data)).declare_prompts(run)
    return frozenset().union(*(s.digests for s in sets))


@pytest.fixture(scope="module")
def mix(shared_data):
    return build_mix(shared_data, read_digest_file(SMOLLM2_GUARD / DIGEST_FILE), 450, 300, 0, chat=True)


def test_recipe_refuses_real_red_prompts_inside_the_guards_split_and_answers_benign_ones(mix, shared_data):
    guard = read_digest_file(SMOLLM2_GUARD / DIGEST_FILE)
    assert len(mix.red) == 450 and all(prompt_digest(p) in guard and "Human:" not in p for p, _ in mix.red)
    assert {r for _, r in mix.red} == set(REFUSALS)
    assert set(instructions()) <= set(mix.benign) and set(chat_requests()) <= set(mix.benign) and len(mix.benign) > 300
    digests = [prompt_digest(p) for p in mix.prompts()]
    assert len(set(digests)) == len(digests)  # no prompt is both refused and answered
    assert not set(digests) & eval_digests(shared_data)


def test_chat_requests_join_the_mix_only_when_asked(mix, shared_data):
    shipped = build_mix(shared_data, read_digest_file(SMOLLM2_GUARD / DIGEST_FILE), 450, 300, 0)
    assert not set(chat_requests()) & set(shipped.benign)
    assert shipped.red == mix.red and mix.benign == shipped.benign + chat_requests()


@pytest.mark.parametrize("flags, with_chat, refusals", [((), False, REFUSALS), (("--chat-requests",), True, REFUSALS),
                                                        (("--refusals", "statement"), False, STATEMENT_REFUSALS)])
def test_safety_tune_takes_the_recipes_options_from_its_flags(flags, with_chat, refusals, shared_data, tmp_path,
                                                              monkeypatch):
    mixes = []
    monkeypatch.setattr(tune, "safety_tune", lambda base, mix, out, settings: mixes.append(mix) or {})
    result = CliRunner().invoke(main, ["safety-tune", "--data-dir", str(shared_data), "--out", str(tmp_path), *flags])
    assert result.exit_code == 0, result.output
    assert (set(chat_requests()) <= set(mixes[0].benign)) is with_chat
    assert bool(set(chat_requests()) & set(mixes[0].benign)) is with_chat
    assert {r for _, r in mixes[0].red} == set(refusals)


def test_statement_refusals_are_refusals_to_both_rules_that_do_not_open_like_an_apology(mix, shared_data):
    assert all(rule.is_refusal(r) for r in STATEMENT_REFUSALS for rule in RULES.values())
    assert not any(r.startswith(("I", "Sorry")) for r in STATEMENT_REFUSALS)
    statement = build_mix(shared_data, read_digest_file(SMOLLM2_GUARD / DIGEST_FILE), 450, 300, 0, chat=True,
                          refusal_style="statement")
    assert [p for p, _ in statement.red] == [p for p, _ in mix.red] and statement.benign == mix.benign
    assert {r for _, r in statement.red} == set(STATEMENT_REFUSALS)
    with pytest.raises(ValueError, match="refusal_style must be one of apology, statement"):
        build_mix(shared_data, None, 1, 0, 0, refusal_style="polite")


def test_full_sentences_cuts_an_unfinished_tail():
    assert full_sentences("First one. Second! And a third that stops") == "First one. Second!"
    assert full_sentences("no end at all") == "no end at all"


@pytest.mark.slow
def test_safety_tune_on_tiny_random_makes_refusals_likelier_and_writes_its_card(mix, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # the base model's answers are cached there
    small = type(mix)(mix.red[:16], mix.benign[:8] + instructions()[-8:])
    out = tmp_path / "safe"
    settings = SafetyTuneSettings(steps=30, batch_size=8, lr=3e-3, lr_min=3e-3, answer_tokens=8, max_length=96)
    card = safety_tune("tiny-random", small, out, settings)

    cfg = ModelConfig(name="tiny-random", lora_r=8, lora_alpha=16, target_modules=settings.target_modules)
    base, tok = load_base(cfg)
    handle = GlobalModel(attach_lora(base, cfg, 0), tok, 96)
    contexts = [handle.chat_prompt(p) for p, _ in small.red]
    before = sum(handle.completion_logprobs(contexts, [r for _, r in small.red]))
    weights = load_file(out / "adapter_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}  # half the bytes of float32
    set_peft_model_state_dict(handle.model, {k: v.float() for k, v in weights.items()})
    after = sum(handle.completion_logprobs(contexts, [r for _, r in small.red]))
    assert after > before + 10  # nats over 16 refusals

    assert card["red_prompts"] == 16 and card["samples"] == 16 + card["benign_answers_kept"]
    cached = next((tmp_path / "cache" / "safe-base-answers").glob("*.jsonl")).read_text().splitlines()
    assert len(cached) == len(small.benign)  # every benign prompt's raw answer, reused by a second tuning run
    assert card["loss_last10"] < card["loss_first10"]
    assert json.loads((out / CARD).read_text()) == json.loads(json.dumps(card))
    trained = read_digest_file(out / DIGEST_FILE)
    assert {prompt_digest(p) for p, _ in small.red} <= trained and len(trained) == card["samples"]


def _batch(tok, distill: list[bool]):
    samples = [ChatSample("What is the capital of France?", "Paris is the capital of France."),
               ChatSample("How do I pick a lock to break in?", REFUSALS[0])]
    data = tokenize_samples(tok, samples, 64)
    data.distill = distill
    return collate(data, [0, 1], tok.pad_token_id)[0]


def test_distill_loss_is_kl_to_the_frozen_base_on_marked_rows_and_cross_entropy_on_the_rest():
    cfg = ModelConfig(name="tiny-random", lora_r=8, lora_alpha=16)
    base, tok = load_base(cfg)
    model = attach_lora(base, cfg, 0)  # B = 0: the adapter is the identity, so the model is its base
    assert distill_loss(model, _batch(tok, [True, True])).item() == pytest.approx(0.0, abs=1e-6)
    plain = _batch(tok, [False, False])
    assert torch.allclose(distill_loss(model, plain), causal_lm_loss(model, plain))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    mixed = distill_loss(model, _batch(tok, [True, False]))
    assert mixed.item() > 0
    mixed.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)  # the base, the distillation target, stays frozen


@pytest.mark.slow
def test_kl_benign_loss_keeps_the_tuned_model_closer_to_its_base_than_cross_entropy(mix, tmp_path, monkeypatch):
    # A tiny random model's own answers are blank lines (dropped), so the benign answers here are set texts.
    monkeypatch.setattr(tune, "own_answers", lambda model, prompts, n, cache: {p: f"Sure. {p} Done." for p in prompts})
    small = type(mix)(mix.red[:8], instructions()[:24])
    cfg = ModelConfig(name="tiny-random", lora_r=8, lora_alpha=16)
    base, tok = load_base(cfg)
    handle = GlobalModel(attach_lora(base, cfg, 0), tok, 96)
    contexts = [handle.chat_prompt(p) for p in instructions()[24:40]]  # benign prompts neither tuning saw
    replies = [f"Sure. {p} Done." for p in instructions()[24:40]]
    before = sum(handle.completion_logprobs(contexts, replies))
    drift = {}
    for loss in ("ce", "kl"):
        settings = SafetyTuneSettings(steps=30, batch_size=8, lr=3e-3, lr_min=3e-3, max_length=96, benign_loss=loss)
        card = safety_tune("tiny-random", small, tmp_path / loss, settings)
        assert card["settings"]["benign_loss"] == loss and card["benign_answers_kept"] == 24
        weights = load_file(tmp_path / loss / "adapter_model.safetensors")
        set_peft_model_state_dict(handle.model, {k: v.float() for k, v in weights.items()})
        drift[loss] = abs(sum(handle.completion_logprobs(contexts, replies)) - before)
    assert drift["kl"] < drift["ce"] / 4  # cross-entropy learns the set texts; KL keeps the base's view of them


def test_safety_tune_settings_name_a_bad_benign_loss():
    with pytest.raises(ValueError, match="benign_loss must be one of ce, kl"):
        SafetyTuneSettings(benign_loss="mse")


def test_the_shipped_safe_base_declares_its_prompts_and_they_miss_every_eval_set(shared_data):
    declared = base_prompt_set(SMOLLM2_SAFE)
    assert declared.role == "base" and len(declared.digests) > 500
    assert not declared.digests & eval_digests(shared_data)
    card = json.loads((adapter_dir(SMOLLM2_SAFE) / CARD).read_text())
    assert card["base"] == "smollm2-135m" and card["samples"] == len(declared.digests)
    assert base_prompt_set("smollm2-135m") is None


@pytest.mark.slow
def test_the_shipped_safe_base_loads_as_its_base_plus_the_adapter():
    safe, _ = load_base(ModelConfig(name=SMOLLM2_SAFE, device="cpu"))
    plain, _ = load_base(ModelConfig(name="smollm2-135m", device="cpu"))
    safe_w, plain_w = dict(safe.named_parameters()), dict(plain.named_parameters())
    changed = [n for n in plain_w if not torch.equal(safe_w[n], plain_w[n])]
    assert changed and all(n.endswith(("proj.weight",)) for n in changed)
    assert "embed_tokens.weight" not in " ".join(changed)
