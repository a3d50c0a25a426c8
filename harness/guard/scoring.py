"""Llama Guard scoring: P("unsafe") from the logits of the first generated token, one forward per sample."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from peft import PeftModel

from harness.config import ModelConfig
from harness.guard.card import GUARD_CARD
from harness.guard.placement import GuardPlacement, HeldGuard
from harness.guard.template import SAFE, UNSAFE, parse_guard_output, render_guard_prompt
from harness.models import ModelLoadError, load_base
from harness.types import ChatSample

SCORE_MODES = ("pair", "vocab")
STAY = GuardPlacement(between_uses="stay")


class GuardBackbone:
    """A causal LM (optionally with a fine-tuned guard adapter), its tokenizer, and where it waits between uses
    (:mod:`harness.guard.placement`; by default it stays where it is)."""

    def __init__(self, model: torch.nn.Module, tokenizer, source: str, placement: GuardPlacement = STAY,
                 load: Callable[[], torch.nn.Module] | None = None):
        self.tokenizer, self.source = tokenizer, source
        self.held = HeldGuard(load or (lambda: model), placement, model)
        if load is None and self.held.idle == "unload":
            raise ValueError("a guard that is unloaded between uses needs a way to load it again")

    @property
    def model(self) -> torch.nn.Module | None:
        """The guard's model (None while unloaded between uses)."""
        return self.held.model

    def use(self) -> AbstractContextManager[torch.nn.Module]:
        """The model on its scoring device for the block, released after it as the placement says."""
        return self.held.use()


def load_guard(model: str, placement: GuardPlacement = STAY) -> GuardBackbone:
    """A guard from a fine-tuned guard directory (``guard.json`` + adapter) or any base model name/path, on the
    placement's device, dtype and quantisation."""
    path = Path(model).expanduser()
    card_path = path / GUARD_CARD
    adapter = card_path.is_file()  # a fine-tuned guard: its base model + the adapter in ``path``
    base = model
    if adapter:
        card = json.loads(card_path.read_text())
        if "base" not in card:
            raise ModelLoadError(f"{card_path} has no 'base' entry naming the guard's base model")
        base = card["base"]
    cfg = ModelConfig(name=base, device=placement.device, dtype=placement.dtype, quantization=placement.quantization)

    def load_parts() -> tuple[torch.nn.Module, object]:
        backbone, tokenizer = load_base(cfg)
        if adapter:
            backbone = PeftModel.from_pretrained(backbone, str(path))
            backbone.eval()
        return backbone, tokenizer

    first, tokenizer = load_parts()
    return GuardBackbone(first, tokenizer, str(path) if adapter else model, placement, lambda: load_parts()[0])


def label_token_ids(tokenizer) -> tuple[int, int]:
    """Ids of the first token of 'safe' and of 'unsafe' as the guard's answer starts with them."""
    safe = tokenizer(SAFE, add_special_tokens=False)["input_ids"]
    unsafe = tokenizer(UNSAFE, add_special_tokens=False)["input_ids"]
    if not safe or not unsafe or safe[0] == unsafe[0]:
        raise ModelLoadError("the guard tokenizer does not give 'safe' and 'unsafe' distinct first tokens")
    return safe[0], unsafe[0]


def unsafe_probability(last_logits: torch.Tensor, safe_id: int, unsafe_id: int, mode: str = "pair") -> torch.Tensor:
    """P('unsafe') per row of next-token logits: over the whole vocabulary ('vocab') or
    renormalised over the two answer tokens ('pair', i.e. sigmoid(l_unsafe - l_safe))."""
    logits = last_logits.float()
    if mode == "vocab":
        return torch.softmax(logits, dim=-1)[:, unsafe_id]
    if mode == "pair":
        return torch.sigmoid(logits[:, unsafe_id] - logits[:, safe_id])
    raise ValueError(f"score mode must be one of {', '.join(SCORE_MODES)}, got {mode!r}")


SCORING = "label-logits-fp32"
"""How :meth:`GuardScorer.score` computes its scores; part of a filter's identity, so scores computed another way
(before 2026-12-02: from the guard's own bf16 logits) are not reused from a checkpoint or a shared scores file."""


class GuardScorer:
    """Renders guard prompts and scores them in length-sorted, left-padded batches."""

    def __init__(self, guard: GuardBackbone, batch_size: int = 8, max_length: int = 1024, mode: str = "pair"):
        if mode not in SCORE_MODES:
            raise ValueError(f"score mode must be one of {', '.join(SCORE_MODES)}, got {mode!r}")
        self.guard, self.batch_size, self.max_length, self.mode = guard, batch_size, max_length, mode
        self.safe_id, self.unsafe_id = label_token_ids(guard.tokenizer)

    def prompt_ids(self, samples: Sequence[ChatSample]) -> list[list[int]]:
        """Token ids of each sample's guard prompt; over-long conversations are cut, the template never."""
        tok = self.guard.tokenizer
        texts = [render_guard_prompt(tok, s.prompt, s.response) for s in samples]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        return [row if len(row) <= self.max_length else self._shortened(s) for row, s in zip(ids, samples)]

    def _shortened(self, sample: ChatSample) -> list[int]:
        tok = self.guard.tokenizer
        overhead = len(tok(render_guard_prompt(tok, "", ""), add_special_tokens=False)["input_ids"])
        budget = self.max_length - overhead - 8  # slack for tokens merging across the cut
        if budget < 16:
            raise ValueError(f"guard max_length {self.max_length} leaves no room for the conversation (the guard "
                             f"template alone is {overhead} tokens; raise max_length)")
        p = tok(sample.prompt, add_special_tokens=False)["input_ids"]
        r = tok(sample.response, add_special_tokens=False)["input_ids"]
        keep_r = min(len(r), max(budget // 2, budget - len(p)))
        keep_p = budget - keep_r
        prompt = tok.decode(p[len(p) - keep_p :]) if keep_p > 0 else ""
        text = render_guard_prompt(tok, prompt, tok.decode(r[:keep_r]))
        return tok(text, add_special_tokens=False)["input_ids"][: self.max_length]

    def batches(self, ids: list[list[int]], sort: bool = True):
        """(row indices, input_ids, attention_mask, position_ids): length-sorted (unless ``sort`` is
        False), left-padded, in batches of ``batch_size``."""
        pad = self.guard.tokenizer.pad_token_id
        order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if sort else list(range(len(ids)))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            yield idx, input_ids, mask, positions

    @torch.no_grad()
    def score(self, samples: Sequence[ChatSample]) -> list[float]:
        """P('unsafe') for each sample's agent turn.

        In 'pair' mode the two label logits are computed in float32 from the head's input. From bfloat16 logits
        (rounded in steps of 0.25 at this guard's logit sizes, 32-64) their difference, and so P(unsafe), took a
        dozen values: 12 distinct scores over 364 samples of the repro preset, against 363 this way (same AUC), so
        a threshold could only move in coarse steps.
        """
        with self.guard.use() as model:
            return self._scores_on(model, samples)

    def _scores_on(self, model: torch.nn.Module, samples: Sequence[ChatSample]) -> list[float]:
        device = next(model.parameters()).device
        head = model.get_output_embeddings()
        labels = [self.safe_id, self.unsafe_id]
        rows = head.weight[labels].float()
        bias = head.bias[labels].float() if getattr(head, "bias", None) is not None else None
        head_input: list[torch.Tensor] = []
        hook = head.register_forward_pre_hook(lambda _, args: head_input.append(args[0][:, -1]))
        out = [0.0] * len(samples)
        try:
            for idx, input_ids, mask, positions in self.batches(self.prompt_ids(samples)):
                head_input.clear()
                logits = model(
                    input_ids=input_ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), logits_to_keep=1,
                ).logits[:, -1]
                if self.mode == "pair":
                    logits = torch.nn.functional.linear(head_input[-1].float(), rows, bias)  # (rows, [safe, unsafe])
                    probs = unsafe_probability(logits, 0, 1, "pair")
                else:
                    probs = unsafe_probability(logits, self.safe_id, self.unsafe_id, self.mode)
                for i, p in zip(idx, probs.tolist()):
                    out[i] = p
        finally:
            hook.remove()
        return out

    @torch.no_grad()
    def categories(self, samples: Sequence[ChatSample], max_new_tokens: int = 10) -> list[tuple[bool, list[str]]]:
        """Generate the guard's answer and parse it: (unsafe?, violated S-codes) per sample."""
        tok = self.guard.tokenizer
        out: list[tuple[bool, list[str]]] = [(False, [])] * len(samples)
        with self.guard.use() as model:
            device = next(model.parameters()).device
            for idx, input_ids, mask, _ in self.batches(self.prompt_ids(samples)):
                gen = model.generate(
                    input_ids=input_ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                    do_sample=False, pad_token_id=tok.pad_token_id,
                )
                for row, i in enumerate(idx):
                    out[i] = parse_guard_output(tok.decode(gen[row, input_ids.shape[1] :], skip_special_tokens=True))
        return out
