"""Log-probabilities of a few short answers that share all but one token, with one pass over each context.

``log p(" (A)" | ctx)`` and ``log p(" (B)" | ctx)`` differ only in the letter: both start with the same token
(" (") and end with the same token (")"). Scoring them as two separate sequences runs the (long) context
twice; here the context and the shared first token run once, the letter's log-prob is read off the same
logits for every answer, and only the last token runs again, one step per answer on the cached keys and
values. The result equals :meth:`GlobalModel.completion_logprobs` on the same pairs up to float rounding
(tested); HHH costs half the forward passes.

Contexts that start with the same ``prefix`` (HHH-438 asks 876 prompts about 188 conversations) can share it
too: the prefix runs once, and each batch of contexts continues from a copy of its keys and values.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch


def _split(tokenizer, answers: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
    """(shared head tokens, one differing token per answer, shared tail tokens) of ``answers``."""
    ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    lengths = {len(i) for i in ids}
    if len(lengths) != 1:
        raise ValueError(f"answers {list(answers)} tokenize to different lengths")
    diff = [k for k in range(len(ids[0])) if len({i[k] for i in ids}) > 1]
    if len(diff) != 1:
        raise ValueError(f"answers {list(answers)} must differ in exactly one token, they differ in {len(diff)}")
    k = diff[0]
    return ids[0][:k], [i[k] for i in ids], ids[0][k + 1 :]


@torch.no_grad()
def answer_logprobs(model, contexts: Sequence[str], answers: Sequence[str], batch_size: int = 8,
                    prefix: str = "") -> list[list[float]]:
    """For each context, ``log p(answer | prefix + context)`` of every answer (summed over its tokens); the
    ``prefix`` runs once for all contexts (its tokens must be those of ``prefix + context``'s start)."""
    tok = model.tokenizer
    head, letters, tail = _split(tok, answers)
    if not head:
        raise ValueError("the answers must share their first token")
    lm, device = model.model, model.device
    was_training = lm.training
    lm.eval()
    out: list[list[float]] = []
    try:
        shared = _prefix_cache(lm, tok(prefix, add_special_tokens=False)["input_ids"], device) if prefix else None
        for start in range(0, len(contexts), batch_size):
            rows = [tok(c, add_special_tokens=False)["input_ids"] + head for c in contexts[start : start + batch_size]]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, seq in enumerate(rows):  # left padding: every row's last token sits in the last column
                ids[r, width - len(seq) :] = torch.tensor(seq)
                mask[r, width - len(seq) :] = 1
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
            cache = None
            if shared is not None:  # the prefix's keys and values, once per row, before the padded contexts
                cache, length = copy.deepcopy(shared[0]), shared[1]
                cache.batch_repeat_interleave(len(rows))
                mask = torch.cat([torch.ones(len(rows), length, dtype=mask.dtype, device=device), mask], dim=1)
                positions = torch.cat([torch.arange(length, device=device).expand(len(rows), -1), positions + length],
                                      dim=1)
            first = lm(input_ids=ids, attention_mask=mask, position_ids=positions[:, -width:], cache=cache,
                       use_cache=True, logits_to_keep=len(head) + 1)
            # kept positions: the context's last token, then each head token; they predict head[0], ..., the letter
            lp = torch.log_softmax(first.logits.float(), dim=-1)
            head_lp = sum(lp[:, j, head[j]] for j in range(len(head)))
            letter_lp = lp[:, -1, letters]  # (rows, answers)
            total = head_lp[:, None] + letter_lp
            if tail:
                total = total + _tail_logprobs(lm, first.cache, mask, positions, letters, tail)
            out += total.cpu().tolist()
    finally:
        lm.train(was_training)
    return out


def _prefix_cache(lm, ids: list[int], device) -> tuple[object, int]:
    """The keys and values of one unpadded ``ids`` row, and its length."""
    return lm(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1).cache, len(ids)


def _tail_logprobs(lm, cache, mask, positions, letters: list[int], tail: list[int]) -> torch.Tensor:
    """log p(tail | context, head, letter) for every row and letter, continuing from the cached context."""
    n_rows, n = mask.shape[0], len(letters)
    cache.batch_repeat_interleave(n)
    steps = torch.tensor([[letter] + tail[:-1] for _ in range(n_rows) for letter in letters], device=mask.device)
    step_mask = torch.cat([mask.repeat_interleave(n, 0), torch.ones_like(steps)], dim=1)
    step_pos = positions[:, -1:].repeat_interleave(n, 0) + torch.arange(1, steps.shape[1] + 1, device=mask.device)
    logits = lm(input_ids=steps, attention_mask=step_mask, position_ids=step_pos, cache=cache,
                use_cache=True).logits.float()
    lp = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(tail, device=mask.device).expand(len(steps), -1)
                                                  .unsqueeze(-1)).squeeze(-1).sum(-1)
    return lp.view(n_rows, n)
