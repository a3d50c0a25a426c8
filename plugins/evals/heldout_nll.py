"""`heldout-nll`: mean per-token negative log-likelihood of the run's held-out replies.

A quick, generation-free signal on a held-out split of the run's OWN data: ``data.heldout_samples``
samples drawn from the same sources at the same harmful ratio as the client mixture, never given to any
client (:func:`harness.data.mixture.split_heldout`). The engine hands them over in ``RunInfo.heldout``;
they are server-held validation data, not client data. ``heldout/nll`` scores the acceptable replies
(lower: the model fits the data it should learn), ``heldout/nll_harmful`` the red ones where there are
any (lower: the model has become more likely to give harmful replies). ``num_items`` caps how many held-out
samples are scored (the first ones; the run's ``eval_limit`` caps it too).
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from harness.types import ChatSample, EvalResult, Headline


class HeldOutNLL:
    headline = (Headline("heldout/nll", "held-out nll, acceptable replies", "lower"),
                Headline("heldout/nll_harmful", "held-out nll, red replies", "lower", board=False))

    def __init__(self, num_items: int = 32):
        if num_items < 1:
            raise ValueError("num_items must be >= 1")
        self.num_items = num_items
        self.heldout: list[ChatSample] = []

    @hookimpl
    def on_run_start(self, run) -> None:
        self.heldout = list(run.heldout)
        if not any(not s.is_harmful for s in self.heldout):
            raise ValueError(
                f"heldout-nll scores the held-out split of a run's own data (RunInfo.heldout), and it has no "
                f"acceptable sample (data.heldout_samples={run.config.data.heldout_samples}): set "
                f"data.heldout_samples, e.g. --set data.heldout_samples=32 (standalone `harness eval` has no run data)"
            )

    @hookimpl
    def declare_prompts(self, run) -> None:
        """Nothing to check: its items are the run's held-out split, drawn apart from the clients' samples."""
        return None

    @hookimpl
    def evaluate(self, server_round, model, limit):
        items = self.heldout[: min(self.num_items, limit or self.num_items)]
        metrics = {"heldout/items": float(len(items))}
        for key, group in (("heldout/nll", [s for s in items if not s.is_harmful]),
                           ("heldout/nll_harmful", [s for s in items if s.is_harmful])):
            if group:
                metrics[key] = _nll(model, group)
        return EvalResult(metrics=metrics)


def _nll(model, samples: list[ChatSample]) -> float:
    contexts = [model.chat_prompt(s.prompt) for s in samples]
    replies = [s.response for s in samples]
    logps = model.completion_logprobs(contexts, replies)
    tokens = [len(model.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies]
    return -sum(logps) / sum(tokens)
