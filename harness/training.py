"""Tokenisation (once per client) and the lean local LoRA training loop (no HF Trainer)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.profiler import record_function

from harness.types import ChatSample, LocalTrainInfo

IGNORE = -100
BUCKET_WINDOW = 8
"""Length bucketing: a round's samples are sorted by length within windows of this many batches."""
FUSED_LOSS_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3"})
"""Causal LMs whose logits are a plain ``lm_head(hidden)``: their loss can skip unlabelled positions."""


@dataclass
class TokenizedSamples:
    """Token ids and labels (prompt tokens masked with -100) of one client's samples."""

    input_ids: list[torch.Tensor]
    labels: list[torch.Tensor]
    distill: list[bool] | None = None
    """Per sample: train it towards the frozen base's next-token distribution over its reply instead of the
    reply's tokens (:func:`harness.safe_base.distill.distill_loss`); None: no sample is."""

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
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if data.distill is not None:
        batch["distill"] = torch.tensor([data.distill[i] for i in indices])
    return batch, 1.0 - float(mask.sum()) / mask.numel()


def cosine_lr(server_round: int, rounds: int, lr: float, lr_min: float) -> float:
    """OpenFedLLM's per-round cosine schedule: lr at round 1, lr_min after the last."""
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * (server_round - 1) / rounds))


def seed_torch(seed: int) -> None:
    """Seed torch's CPU generator (and CUDA's, where present) like ``torch.manual_seed``, without its cost
    per call: that formats a stack trace for lazy CUDA seeding each time (~0.5 ms, paid per client)."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_optimizer(name: str, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def batch_plan(
    data: TokenizedSamples, order: Sequence[int], cursor: int, steps: int, batch_size: int,
    bucket_window: int = BUCKET_WINDOW,
) -> list[list[int]]:
    """The round's ``steps`` batches: the ``steps * batch_size`` indices of ``order`` cycled from ``cursor``.

    Exactly the samples (with multiplicity) that consecutive batches would take, so the data cursor, and
    with it resume, is unchanged. With ``bucket_window > 1`` they are regrouped by length: the stream is
    cut into windows of ``bucket_window`` batches (at most one pass over ``order``, so a window never
    holds a sample twice), each window is sorted by token length into batches, and the window's batches
    are shuffled by a generator seeded from the cursor and the window itself (deterministic: the same
    seed, order and cursor give the same batches; no global RNG is touched).
    """
    stream = [order[(cursor + j) % len(order)] for j in range(steps * batch_size)]
    per_window = max(1, min(bucket_window, len(order) // batch_size)) * batch_size
    if per_window <= batch_size:
        return [stream[k : k + batch_size] for k in range(0, len(stream), batch_size)]
    batches: list[list[int]] = []
    for start in range(0, len(stream), per_window):
        window = stream[start : start + per_window]
        ranked = sorted(window, key=lambda i: len(data.input_ids[i]))  # stable: ties keep stream order
        chunks = [ranked[k : k + batch_size] for k in range(0, len(ranked), batch_size)]
        perm = np.random.default_rng([cursor, start, *window]).permutation(len(chunks))
        batches += [chunks[p] for p in perm]
    return batches


def _causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    get = getattr(model, "get_base_model", None)  # peft -> the transformers model (LoRA layers in place)
    return get() if get is not None else model


def _decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """The decoder stack and LM head of a plain-head decoder (:data:`FUSED_LOSS_MODELS`), else None."""
    lm = _causal_lm(model)
    decoder, head = getattr(lm, "model", None), getattr(lm, "lm_head", None)
    if getattr(lm.config, "model_type", None) not in FUSED_LOSS_MODELS or decoder is None or head is None:
        return None
    return decoder, head


def labelled_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits, targets) at every position that predicts a label, in row-major order. Plain-head
    decoders (:data:`FUSED_LOSS_MODELS`) run the LM head only there: prompt and padding positions need no logits."""
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    parts = _decoder_and_head(model)
    if parts is None:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][keep]
    else:
        decoder, head = parts
        hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = head(hidden[:, :-1][keep])
    return logits.float(), labels[keep]


def causal_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions, as ``model(**batch).loss`` (:func:`labelled_logits`)."""
    return torch.nn.functional.cross_entropy(*labelled_logits(model, batch))


def next_token_logprobs(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """log p(input_ids[r, t + 1] | input_ids[r, :t + 1]) for every (r, t) where ``positions`` is True, in
    row-major order (the LM head runs only there, as in :func:`labelled_logits`)."""
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, 1:] = torch.where(positions[:, :-1], input_ids[:, 1:], IGNORE)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    logits, targets = labelled_logits(model, batch)
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


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
    post_step: Callable[[], None] | None = None,
    on_step: Callable[[float], None] | None = None,
    bucket_window: int = BUCKET_WINDOW,
    max_grad_norm: float | None = None,
    grad_accum_steps: int = 1,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] = causal_lm_loss,
) -> tuple[LocalTrainInfo, int]:
    """``steps`` optimizer steps over ``order`` (cycled from ``cursor``); returns the info and the new cursor.

    Batches follow :func:`batch_plan` (length-bucketed unless ``bucket_window`` is 1). Each batch is split into
    ``grad_accum_steps`` micro-batches whose losses (``loss_fn``: a mean over labelled tokens) are weighted by
    their share of the batch's labelled tokens, so the accumulated gradient is the whole batch's (same samples,
    same mean loss). The loss's gradient norm is clipped to ``max_grad_norm`` (0 or None: no clipping); then
    ``correct_grads`` runs (its correction is not clipped, as a post-step correction is not) and, after each
    optimizer step, ``post_step`` (the engine's ``local_grad_correction`` and ``local_post_step`` hooks). A float16
    model's loss is scaled dynamically (``torch.amp.GradScaler``); a step it skips for overflow still runs
    ``post_step``. The model trains in training mode and is left in the mode it came in (a caller training many
    clients in a row sets training mode once around them: switching walks every module).
    """
    opt = make_optimizer(optimizer, list(params.values()), lr)
    was_training = model.training
    if not was_training:
        model.train()
    losses, tokens, padding, step_seconds = [], 0, 0.0, 0.0
    device = next(iter(params.values())).device
    scaler = torch.amp.GradScaler(device.type, enabled=_base_dtype(model) == torch.float16)
    plan = batch_plan(data, order, cursor, steps, batch_size, bucket_window)
    cursor = (cursor + steps * batch_size) % len(order)
    micro = math.ceil(batch_size / grad_accum_steps)
    with record_function("cat::data"):  # all batches up front: one pass, not one between every two steps
        batches = [[collate(data, ids[k : k + micro], pad_id)[0] for k in range(0, len(ids), micro)] for ids in plan]
        labelled = [[int((part["labels"][:, 1:] != IGNORE).sum()) for part in parts] for parts in batches]
    for parts, counts in zip(batches, labelled):
        parts = [{k: v.to(device, non_blocking=True) for k, v in part.items()} for part in parts]
        start = time.perf_counter()
        loss_sum = None
        for part, n in zip(parts, counts):
            loss_t = loss_fn(model, part) * (n / sum(counts))
            scaler.scale(loss_t).backward()
            loss_sum = loss_t.detach() if loss_sum is None else loss_sum + loss_t.detach()
        with record_function("cat::optimizer"):
            scaler.unscale_(opt)
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(list(params.values()), max_grad_norm)
            if correct_grads is not None:
                correct_grads()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            if post_step is not None:
                post_step()
        loss = float(loss_sum)
        step_seconds += time.perf_counter() - start
        losses.append(loss)
        mask = [part["attention_mask"] for part in parts]
        tokens += int(sum(m.sum() for m in mask))
        padding += 1.0 - float(sum(m.sum() for m in mask)) / sum(m.numel() for m in mask)
        if on_step is not None:
            on_step(loss)
    if not was_training:
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


def _base_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the base's input embeddings (the adapter's may differ)."""
    return _causal_lm(model).get_input_embeddings().weight.dtype
