"""Safety-tune a base model with the harness's own LoRA loop; save the adapter, its card and its prompts.

The mix is :mod:`harness.safe_base.recipe`. The base model first answers the benign prompts itself (greedy, cut
after the last full sentence; answers that refuse are dropped; raw answers are cached under the harness cache
dir). Then one LoRA adapter is trained in float32 on refusals + those answers (their tokens, or with
``benign_loss="kl"`` the base's distribution over them) with :func:`harness.training.local_train`, under the
round engine's cosine schedule. It is stored in bfloat16 (half the bytes; :func:`harness.models.merged_safe_base`
merges it into the float32 base) with ``safe_base.json`` (settings, counts, loss) and ``train_prompts.sha256``
(every training prompt, for the overlap check of docs/data.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from harness.config import ModelConfig
from harness.data.normalize import prompt_digest
from harness.data.overlap import DIGEST_FILE
from harness.evals.refusal import RULES
from harness.model_handle import GlobalModel
from harness.models import attach_lora, cache_dir, load_base
from harness.safe_base.recipe import SafetyMix
from harness.safe_base.settings import SafetyTuneSettings
from harness.safe_base.distill import distill_loss
from harness.training import causal_lm_loss, cosine_lr, local_train, tokenize_samples
from harness.types import ChatSample

log = logging.getLogger(__name__)

CARD = "safe_base.json"
HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""The public id of a built-in base, recorded in the adapter's ``adapter_config.json`` (plain peft loads it)."""
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def full_sentences(text: str) -> str:
    """``text`` up to its last sentence end ('.', '!' or '?'); unchanged when it has none."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else text.strip()


def own_answers(model: GlobalModel, prompts: list[str], max_new_tokens: int, cache: Path) -> dict[str, str]:
    """The model's greedy answers to ``prompts`` (full sentences), without empty ones and refusals. Raw answers are
    kept in the JSONL ``cache`` (prompt -> text) and reused: generation is most of a tuning run's time on a CPU."""
    raw = dict(json.loads(line) for line in cache.read_text().splitlines()) if cache.is_file() else {}
    todo = [p for p in prompts if p not in raw]
    for start in tqdm(range(0, len(todo), 32), desc="own answers", unit="batch"):
        chunk = todo[start : start + 32]
        texts = model.generate([model.chat_prompt(p) for p in chunk], max_new_tokens=max_new_tokens, batch_size=16)
        with cache.open("a") as f:
            f.writelines(json.dumps([p, t]) + "\n" for p, t in zip(chunk, texts))
        raw.update(zip(chunk, texts))
    answers = {}
    for prompt in prompts:
        text = full_sentences(raw[prompt])
        if text and not any(rule.is_refusal(text) for rule in RULES.values()):
            answers[prompt] = text
    return answers


def safety_tune(base: str, mix: SafetyMix, out: Path, settings: SafetyTuneSettings) -> dict:
    """Train the safety adapter of ``base`` on ``mix`` and save it in ``out``; returns the card."""
    t0 = time.perf_counter()
    cfg = ModelConfig(name=base, lora_r=settings.lora_r, lora_alpha=2 * settings.lora_r, lora_dropout=0.05,
                      target_modules=list(settings.target_modules), max_length=settings.max_length, dtype=settings.dtype)
    model, tokenizer = load_base(cfg)
    peft_model = attach_lora(model, cfg, settings.seed)
    handle = GlobalModel(peft_model, tokenizer, settings.max_length)
    key = hashlib.sha256(json.dumps([base, settings.answer_tokens, settings.max_length, settings.dtype]).encode()).hexdigest()[:12]
    cache = cache_dir() / "safe-base-answers" / f"{key}.jsonl"
    cache.parent.mkdir(parents=True, exist_ok=True)
    answers = own_answers(handle, mix.benign, settings.answer_tokens, cache)
    samples = [ChatSample(p, r, False, "refusal", "hh-rlhf") for p, r in mix.red]
    samples += [ChatSample(p, a, False, "own-answer", "base model") for p, a in answers.items()]
    data = tokenize_samples(tokenizer, samples, settings.max_length)
    loss_fn = causal_lm_loss
    if settings.benign_loss == "kl":
        data.distill, loss_fn = [s.category == "own-answer" for s in samples], distill_loss
    order = list(range(len(samples)))
    random.Random(settings.seed).shuffle(order)
    chunk, cursor, losses = 25, 0, []
    rounds = -(-settings.steps // chunk)
    torch.manual_seed(settings.seed)
    for r in tqdm(range(1, rounds + 1), desc="safety tuning", unit=f"{chunk} steps"):
        steps = min(chunk, settings.steps - (r - 1) * chunk)
        lr = cosine_lr(r, rounds, settings.lr, settings.lr_min)
        info, cursor = local_train(peft_model, handle.params, data, order, cursor, steps, settings.batch_size, lr,
                                   "adamw", tokenizer.pad_token_id, on_step=losses.append,
                                   loss_fn=loss_fn)
        log.info("safety tuning: steps %d-%d, lr %.2e, loss %.3f", (r - 1) * chunk + 1, r * chunk, lr, info.mean_loss)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.to(torch.bfloat16).save_pretrained(out)
    adapter_config = json.loads((out / "adapter_config.json").read_text())  # the base's public id, not a cache path
    adapter_config["base_model_name_or_path"] = HUB_IDS.get(base, base)
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
    prompts = [s.prompt for s in samples]
    (out / DIGEST_FILE).write_text("".join(f"{d}\n" for d in sorted({prompt_digest(p) for p in prompts})))
    card = {
        "base": base,
        "settings": asdict(settings),
        "red_prompts": len(mix.red),
        "benign_prompts": len(mix.benign),
        "benign_answers_kept": len(answers),
        "samples": len(samples),
        "epochs": settings.steps * settings.batch_size / len(samples),
        "loss_first10": sum(losses[:10]) / len(losses[:10]),
        "loss_last10": sum(losses[-10:]) / len(losses[-10:]),
        "seconds": time.perf_counter() - t0,
    }
    (out / CARD).write_text(json.dumps(card, indent=1) + "\n")
    return card
