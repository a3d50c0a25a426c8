"""LoRA fine-tuning of a guard so that its first answer token is 'safe' or 'unsafe'.

Batches are left-padded so every answer ends the row; the LM head runs only on the last
few positions (``logits_to_keep``), which keeps memory and time close to the body's forward.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from harness.config import ModelConfig
from harness.guard.scoring import GUARD_CARD, GuardBackbone, GuardScorer
from harness.guard.settings import FilterTrainSettings
from harness.guard.template import SAFE, UNSAFE
from harness.models import attach_lora, load_base
from harness.training import IGNORE
from harness.types import ChatSample

log = logging.getLogger(__name__)


def answer_ids(tokenizer) -> dict[bool, list[int]]:
    """Target tokens by label: 'unsafe' / 'safe' followed by the end token."""
    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return {flag: tokenizer(UNSAFE if flag else SAFE, add_special_tokens=False)["input_ids"] + end
            for flag in (True, False)}


def answer_loss(model, scorer: GuardScorer, prompts: list[list[int]], answers: list[list[int]]) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens after their guard prompts (one left-padded batch)."""
    k = max(len(a) for a in answers)
    (_, ids, mask, positions), = scorer.batches([p + a for p, a in zip(prompts, answers)], sort=False)
    targets = torch.full((len(answers), k), IGNORE, dtype=torch.long)
    for row, a in enumerate(answers):
        targets[row, k - len(a) :] = torch.tensor(a)
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                   logits_to_keep=k + 1).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.to(device).reshape(-1),
                                             ignore_index=IGNORE)


def train_guard(base: str, samples: list[ChatSample], out: Path, settings: FilterTrainSettings) -> dict[str, float]:
    """Fine-tune ``base`` with LoRA on labelled ``samples``; save the adapter and ``guard.json`` in ``out``."""
    unlabelled = [i for i, s in enumerate(samples) if s.is_harmful is None]
    if unlabelled:
        raise ValueError(f"guard training sample {unlabelled[0]} has no is_harmful label")
    cfg = ModelConfig(name=base, lora_r=settings.lora_r, lora_alpha=2 * settings.lora_r, lora_dropout=0.0,
                      max_length=settings.max_length)
    model, tokenizer = load_base(cfg)
    model = attach_lora(model, cfg, settings.seed)
    targets = answer_ids(tokenizer)
    scorer = GuardScorer(GuardBackbone(model, tokenizer, base), settings.batch_size,
                         settings.max_length - max(map(len, targets.values())))
    prompts = scorer.prompt_ids(samples)
    answers = [targets[bool(s.is_harmful)] for s in samples]
    total = math.ceil(len(samples) / settings.batch_size) * settings.epochs
    total = min(total, settings.max_steps or total)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=0.0)
    model.train()
    losses: list[float] = []
    order: list[int] = []
    started = time.perf_counter()
    bar = tqdm(range(total), desc="guard training", unit="step")
    for step in bar:
        if len(order) < settings.batch_size:
            order += rng.permutation(len(samples)).tolist()
        idx, order = order[: settings.batch_size], order[settings.batch_size :]
        loss = answer_loss(model, scorer, [prompts[i] for i in idx], [answers[i] for i in idx])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        log.info("guard step %d/%d loss %.4f", step + 1, total, losses[-1])
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    window = max(1, min(10, total // 4))
    result = {"train/steps": float(total), "train/samples": float(len(samples)),
              "train/first_loss": float(np.mean(losses[:window])), "train/last_loss": float(np.mean(losses[-window:])),
              "train/seconds": time.perf_counter() - started}
    card = {"filter": "lg3", "base": base, "settings": settings.__dict__, "metrics": result}
    (out / GUARD_CARD).write_text(json.dumps(card, indent=2))
    return result
