"""The resident model handle given to server-side hooks: base + the current global adapter."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from harness.adapters import load_into, snapshot, trainable_params
from harness.generation_memory import generation_batch
from harness.models import model_location, resolve_dtype
from harness.training import next_token_logprobs
from harness.types import AdapterState

if TYPE_CHECKING:
    from harness.vllm_backend import VllmGenerator


def vllm_generator(model: torch.nn.Module) -> VllmGenerator | None:
    """The model's vLLM engine where its config (set by ``attach_lora``) asks for one; made on first use and
    shared by every handle on the same model."""
    cfg = getattr(model, "harness_model_config", None)
    if cfg is None or cfg.generation_backend != "vllm":
        return None
    if getattr(model, "harness_vllm", None) is None:
        from harness.vllm_backend import VllmGenerator

        model.harness_vllm = VllmGenerator(cfg, model_location(cfg), resolve_dtype(cfg.dtype, torch.device("cuda")))
    return model.harness_vllm


class GlobalModel:
    """One resident causal LM with LoRA; hooks read, generate with and train its adapter in place.

    ``model`` is the peft model, ``tokenizer`` its tokenizer (with a chat template).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.params = trainable_params(model)
        self.adapter_enabled = True

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def adapter_state(self) -> AdapterState:
        """A CPU copy of the current adapter."""
        return snapshot(self.params)

    def load_adapter_state(self, state: AdapterState) -> None:
        load_into(self.params, state)

    @contextmanager
    def base_only(self):
        """Run the pretrained base without the adapter (e.g. the paper's row 1)."""
        self.adapter_enabled = False
        try:
            with self.model.disable_adapter():
                yield
        finally:
            self.adapter_enabled = True

    def chat_prompt(self, user_text: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """The model's chat-template text for a user turn (after earlier (user, assistant) turns)."""
        messages = []
        for user, assistant in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": user_text})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 128, batch_size: int = 8, max_prompt_length: int | None = None
    ) -> list[str]:
        """Greedy completions of already-templated ``prompts``, batched by length (left padding).

        Prompts longer than ``max_prompt_length`` tokens (default: ``max_length``) lose their start,
        so the generation prompt at the end is kept. On a GPU ``batch_size`` is lowered to what fits in memory
        (:func:`harness.generation_memory.generation_batch`). With ``model.generation_backend: vllm`` vLLM
        generates instead (``batch_size`` is then vLLM's to choose).
        """
        vllm = vllm_generator(self.model)
        if vllm is not None:
            return vllm.generate(self.model, self.tokenizer, prompts, max_new_tokens, max_prompt_length or self.max_length,
                                 with_adapter=self.adapter_enabled)
        tok = self.tokenizer
        batch_size = generation_batch(self.model, batch_size, max_prompt_length or self.max_length, max_new_tokens)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[str] = [""] * len(prompts)
        was_training, side, cut = self.model.training, tok.padding_side, tok.truncation_side
        self.model.eval()
        tok.padding_side, tok.truncation_side = "left", "left"
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = tok(
                    [prompts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=max_prompt_length or self.max_length,
                    add_special_tokens=False,
                ).to(self.device)
                gen = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                    use_cache=True,
                )
                for row, i in enumerate(idx):
                    out[i] = tok.decode(gen[row, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        finally:
            tok.padding_side, tok.truncation_side = side, cut
            self.model.train(was_training)
        return out

    @torch.no_grad()
    def completion_logprobs(self, contexts: Sequence[str], completions: Sequence[str], batch_size: int = 8) -> list[float]:
        """Sum of log p(completion tokens | context) for each pair (no generation)."""
        tok = self.tokenizer
        scores: list[float] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(contexts), batch_size):
                rows = []
                for ctx, comp in zip(contexts[start : start + batch_size], completions[start : start + batch_size]):
                    c = tok(ctx, add_special_tokens=False)["input_ids"]
                    x = tok(comp, add_special_tokens=False)["input_ids"]
                    rows.append((c + x, len(c)))
                width = max(len(ids) for ids, _ in rows)
                ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for r, (seq, _) in enumerate(rows):
                    ids[r, : len(seq)] = torch.tensor(seq)
                    mask[r, : len(seq)] = 1
                scored = torch.zeros_like(mask, dtype=torch.bool)  # positions whose next token is a completion token
                for r, (seq, n_ctx) in enumerate(rows):
                    scored[r, n_ctx - 1 : len(seq) - 1] = True
                token_lp = next_token_logprobs(self.model, ids.to(self.device), mask.to(self.device), scored.to(self.device))
                row_of = scored.nonzero()[:, 0]
                scores += torch.zeros(len(rows)).index_add_(0, row_of, token_lp.cpu()).tolist()
        finally:
            self.model.train(was_training)
        return scores
