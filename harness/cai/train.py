"""SFT and DPO steps on the resident model's LoRA adapter (lean loops, fp32, no HF Trainer).

The DPO loss is TRL's ``DPOTrainer`` default (``loss_type="sigmoid"``, reverse KL):
``-logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` over summed completion log-probs,
with TRL's implicit rewards ``beta * (pi - ref)``. Reference log-probs are precomputed once per
round, before the first DPO step, from whatever adapter is loaded then (the CAI aligner calls it
after the round's SFT steps, so the reference is the post-SFT model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.cai.dataset import PreferencePair
from harness.model_handle import GlobalModel
from harness.training import (IGNORE, TokenizedSamples, collate, local_train, make_optimizer, next_token_logprobs,
                              tokenize_samples)
from harness.types import ChatSample, LocalTrainInfo


@dataclass
class PreferenceData:
    """Tokenized pairs: row ``i`` of ``rows`` is pair i's chosen answer, row ``n + i`` its rejected one."""

    rows: TokenizedSamples
    n: int

    def pair_rows(self, indices: Sequence[int]) -> list[int]:
        return list(indices) + [self.n + i for i in indices]


@dataclass
class DpoInfo:
    steps: int
    mean_loss: float
    reward_margin: float  # mean of beta * (chosen log-ratio - rejected log-ratio)
    reward_accuracy: float  # share of pairs whose chosen reward beats the rejected one


def tokenize_pairs(tokenizer, pairs: Sequence[PreferencePair], max_length: int) -> PreferenceData:
    chosen = [ChatSample(p.prompt, p.chosen) for p in pairs]
    rejected = [ChatSample(p.prompt, p.rejected) for p in pairs]
    rows = tokenize_samples(tokenizer, chosen + rejected, max_length)
    return PreferenceData(rows, len(pairs))


def sequence_logps(model: GlobalModel, data: TokenizedSamples, rows: Sequence[int]) -> torch.Tensor:
    """Summed log-probs of each row's supervised (label) tokens; differentiable. The LM head and log-softmax run
    only at the positions that predict a label (:func:`harness.training.next_token_logprobs`), not over the
    whole padded batch."""
    batch, _ = collate(data, rows, model.tokenizer.pad_token_id)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    positions = torch.zeros_like(batch["labels"], dtype=torch.bool)
    positions[:, :-1] = batch["labels"][:, 1:] != IGNORE  # position t predicts the label at t + 1
    token_lp = next_token_logprobs(model.model, batch["input_ids"], batch["attention_mask"], positions)
    row_of = positions.nonzero()[:, 0]
    return torch.zeros(len(rows), device=token_lp.device, dtype=token_lp.dtype).index_add(0, row_of, token_lp)


def dpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TRL's sigmoid DPO loss (mean over pairs) and the per-pair chosen and rejected rewards."""
    chosen_logratios, rejected_logratios = chosen - ref_chosen, rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    return loss, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


@torch.no_grad()
def reference_logps(model: GlobalModel, data: PreferenceData, pairs: Sequence[int], batch_size: int) -> dict[int, tuple[float, float]]:
    """pair index -> (chosen, rejected) log-probs under the adapter loaded now."""
    was_training = model.model.training
    model.model.eval()
    out = {}
    try:
        for start in range(0, len(pairs), batch_size):
            idx = list(pairs[start : start + batch_size])
            logps = sequence_logps(model, data.rows, data.pair_rows(idx))
            for k, i in enumerate(idx):
                out[i] = (float(logps[k]), float(logps[len(idx) + k]))
    finally:
        model.model.train(was_training)
    return out


def cycle(order: Sequence[int], cursor: int, count: int) -> list[int]:
    """``count`` indices of ``order`` from ``cursor``, wrapping around."""
    return [order[(cursor + j) % len(order)] for j in range(count)]


def sft_train(model: GlobalModel, data: TokenizedSamples, order: Sequence[int], cursor: int, steps: int, batch_size: int, lr: float) -> tuple[LocalTrainInfo, int]:
    """``steps`` AdamW steps of next-token loss on the revisions (prompt tokens masked)."""
    return local_train(
        model.model, model.params, data, order, cursor, steps, batch_size, lr, "adamw", model.tokenizer.pad_token_id
    )


def dpo_train(
    model: GlobalModel,
    data: PreferenceData,
    order: Sequence[int],
    cursor: int,
    steps: int,
    batch_size: int,
    lr: float,
    beta: float,
    reference: dict[int, tuple[float, float]],
) -> tuple[DpoInfo, int]:
    """``steps`` AdamW steps of DPO (dropout off, as TRL does) against the precomputed ``reference``."""
    opt = make_optimizer("adamw", list(model.params.values()), lr)
    model.model.eval()
    losses, margins, accuracies = [], [], []
    for _ in range(steps):
        idx = cycle(order, cursor, batch_size)
        cursor = (cursor + batch_size) % len(order)
        logps = sequence_logps(model, data.rows, data.pair_rows(idx))
        ref = torch.tensor([reference[i] for i in idx], device=logps.device)
        loss, r_chosen, r_rejected = dpo_loss(logps[: len(idx)], logps[len(idx) :], ref[:, 0], ref[:, 1], beta)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        margins.append(float((r_chosen - r_rejected).mean()))
        accuracies.append(float((r_chosen > r_rejected).float().mean()))
    n = max(steps, 1)
    return DpoInfo(steps, sum(losses) / n, sum(margins) / n, sum(accuracies) / n), cursor
