"""Self-distillation for the benign part of a safety-tuning mix.

Cross-entropy on the base model's own *greedy* answers pulls the tuned model towards those argmax tokens: its
next-token distribution sharpens, and the likelihood of everyone else's text falls (held-out NLL 2.57 -> 3.00
with the shipped recipe v6, spread over every reply position, docs/safe-base.md). Matching the frozen base's
whole distribution on those answers instead, KL(p_base || p_tuned) as in knowledge distillation (Hinton et al.,
2015, arXiv:1503.02531), still teaches "answer this, don't refuse it" without teaching a sharper way to answer.
"""

from __future__ import annotations

import torch

from harness.training import IGNORE, labelled_logits


def distill_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over labelled tokens of cross-entropy (rows not marked ``distill``) and KL(p_base || p_model) (rows
    marked ``distill``); p_base is ``model`` with its LoRA adapter disabled (peft), so it stays frozen."""
    logits, targets = labelled_logits(model, batch)
    keep = batch["labels"][:, 1:] != IGNORE
    soft = batch["distill"][:, None].expand_as(keep)[keep]
    token_loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    if soft.any():
        rows = {k: v[batch["distill"]] for k, v in batch.items() if k != "distill"}
        with torch.no_grad(), model.disable_adapter():
            base_logp = torch.log_softmax(labelled_logits(model, rows)[0], dim=-1)
        logp = torch.log_softmax(logits[soft], dim=-1)
        kl = (base_logp.exp() * (base_logp - logp)).sum(-1)
        token_loss = token_loss.masked_scatter(soft, kl)
    return token_loss.mean()
