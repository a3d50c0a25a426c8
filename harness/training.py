"""Tokenisation (once per client) and the lean local LoRA training loop (no HF Trainer)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from harness.types import ChatSample, LocalTrainInfo

IGNORE = -100


@dataclass
class TokenizedSamples:
    """Token ids and labels (prompt tokens masked with -100) of one client's samples."""

    input_ids: list[torch.Tensor]
    labels: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_samples(tokenizer, samples: Sequence[ChatSample], max_length: int) -> TokenizedSamples:
    """Chat-template each sample; the loss covers only the assistant reply (and its end token)."""
    prompts, fulls = [], []
    for s in samples:
        user = [{"role": "user", "content": s.prompt}]
        prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": s.response}], tokenize=False)
        if not full.startswith(prompt):  # templates that rewrite earlier turns: append the reply ourselves
            full = prompt + s.response + (tokenizer.eos_token or "")
        prompts.append(prompt)
        fulls.append(full)
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    input_ids, labels = [], []
    for p, f in zip(prompt_ids, full_ids):
        f = f[:max_length]
        n_prompt = min(len(p), len(f) - 1)  # keep at least one supervised token
        input_ids.append(torch.tensor(f, dtype=torch.long))
        labels.append(torch.tensor([IGNORE] * n_prompt + f[n_prompt:], dtype=torch.long))
    return TokenizedSamples(input_ids, labels)


def collate(data: TokenizedSamples, indices: Sequence[int], pad_id: int) -> tuple[dict[str, torch.Tensor], float]:
    """Right-padded batch and its padding fraction (padded positions / all positions)."""
    width = max(len(data.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(data.input_ids[i])
        ids[row, :n] = data.input_ids[i]
        labels[row, :n] = data.labels[i]
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}, 1.0 - float(mask.sum()) / mask.numel()


def cosine_lr(server_round: int, rounds: int, lr: float, lr_min: float) -> float:
    """OpenFedLLM's per-round cosine schedule: lr at round 1, lr_min after the last."""
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * (server_round - 1) / rounds))


def make_optimizer(name: str, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def local_train(
    model: torch.nn.Module,
    params: dict[str, torch.nn.Parameter],
    data: TokenizedSamples,
    order: Sequence[int],
    cursor: int,
    steps: int,
    batch_size: int,
    lr: float,
    optimizer: str,
    pad_id: int,
    correct_grads: Callable[[], None] | None = None,
    on_step: Callable[[float], None] | None = None,
) -> tuple[LocalTrainInfo, int]:
    """``steps`` optimizer steps over ``order`` (cycled from ``cursor``); returns the info and the new cursor."""
    opt = make_optimizer(optimizer, list(params.values()), lr)
    model.train()
    losses, tokens, padding, step_seconds = [], 0, 0.0, 0.0
    device = next(iter(params.values())).device
    for _ in range(steps):
        indices = [order[(cursor + j) % len(order)] for j in range(batch_size)]
        cursor = (cursor + batch_size) % len(order)
        batch, pad_fraction = collate(data, indices, pad_id)
        start = time.perf_counter()
        out = model(**{k: v.to(device) for k, v in batch.items()})
        out.loss.backward()
        if correct_grads is not None:
            correct_grads()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_seconds += time.perf_counter() - start
        loss = float(out.loss.detach())
        losses.append(loss)
        tokens += int(batch["attention_mask"].sum())
        padding += pad_fraction
        if on_step is not None:
            on_step(loss)
    model.eval()
    info = LocalTrainInfo(
        steps=steps,
        learning_rate=lr,
        mean_loss=sum(losses) / len(losses),
        num_tokens=tokens,
        step_seconds=step_seconds,
        padding_fraction=padding / steps,
    )
    return info, cursor
