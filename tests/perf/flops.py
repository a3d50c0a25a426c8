"""FLOPs of one LoRA training step of a Llama-style causal LM (forward + backward), counted by hand.

A matrix product of (m x k) by (k x n) is 2*m*k*n FLOPs (a multiply and an add). Only matrix
products are counted; norms, rotary embeddings, SiLU, softmax, dropout and the cross-entropy's
exp/log are O(tokens * width) elementwise work and are left out (under 1% of the products here).

What LoRA changes in the backward pass
--------------------------------------
For a linear layer ``y = x W^T`` the backward pass of full fine-tuning does two products, each as
large as the forward one: the input gradient ``dx = dy W`` and the weight gradient ``dW = dy^T x``.
With LoRA the base weight ``W`` is frozen: ``dW`` is never formed, so every frozen base product costs
**one** forward's worth in the backward pass (its input gradient, needed to reach the adapters of
earlier layers), not two. Training therefore costs about 2x the forward FLOPs, not the 3x of full
fine-tuning (the usual "6 N per token" becomes "4 N per token"). Exceptions counted here:

* the first layer's q/k/v projections read the (frozen) embeddings: their input gradient is not
  needed, and its attention needs dQ, dK, dV only where q/k/v_proj carry an adapter (the default
  q_proj + v_proj: no dK there);
* the embedding lookup is a gather (no FLOPs, no gradient);
* the adapter's own products (``x A^T`` then ``(x A^T) B^T``) need both their input and weight
  gradients: 2x their forward in the backward pass (the first layer's adapters skip dx).
* attention's two products (``Q K^T`` and ``P V``) need four in the backward pass (dP, dV, dS->dQ, dK);
  causal attention over a sequence of length L touches L(L+1)/2 query-key pairs, which is what is
  counted (kernels that compute the full L x L square do extra, uncounted work);
* the LM head (``hidden @ E^T``, frozen) is counted only at positions that carry a label (the loss
  needs no logits elsewhere), forward plus its input gradient.

Counted tokens are real tokens: padding is waste, not work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Arch:
    """The shapes that matter for FLOPs of a Llama-style decoder."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int | None = None

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @classmethod
    def from_config(cls, config) -> Arch:
        """From a transformers ``LlamaConfig``-like config (also Mistral, Qwen2, ...)."""
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            heads=config.num_attention_heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            vocab=config.vocab_size,
            head_dim=getattr(config, "head_dim", None),
        )

    def projection_shape(self, name: str) -> tuple[int, int]:
        """(in_features, out_features) of a decoder layer's projection."""
        h, q, kv, i = self.hidden, self.heads * self.hd, self.kv_heads * self.hd, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}[name]


SMOLLM2_135M = Arch(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, head_dim=64)


@dataclass
class StepFlops:
    """FLOPs of one step, split as the profile is (attention, MLP, LM head) and by pass."""

    forward: dict[str, float] = field(default_factory=dict)
    backward: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.forward.values()) + sum(self.backward.values())

    def by_part(self) -> dict[str, float]:
        parts = {}
        for d in (self.forward, self.backward):
            for k, v in d.items():
                parts[k] = parts.get(k, 0.0) + v
        return parts


def lora_step_flops(
    arch: Arch,
    seq_lens: Sequence[int],
    supervised_tokens: int,
    lora_r: int,
    lora_targets: Sequence[str] = ("q_proj", "v_proj"),
) -> StepFlops:
    """FLOPs of forward + backward for one batch of sequences of ``seq_lens`` real tokens.

    ``supervised_tokens``: positions whose next token carries a label (the LM head runs there).
    """
    tokens = sum(seq_lens)
    pairs = sum(n * (n + 1) // 2 for n in seq_lens)  # causal query-key pairs
    fwd = {"attention": 0.0, "mlp": 0.0, "lm_head": 0.0, "lora": 0.0}
    bwd = {"attention": 0.0, "mlp": 0.0, "lm_head": 0.0, "lora": 0.0}
    qk = arch.heads * arch.hd  # the width of the score and value products, summed over heads
    for layer in range(arch.layers):
        first = layer == 0
        for name in PROJECTIONS:
            fan_in, fan_out = arch.projection_shape(name)
            part = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "attention"
            base = 2.0 * tokens * fan_in * fan_out
            fwd[part] += base
            adapted = name in lora_targets
            reads_embeddings = first and name in ("q_proj", "k_proj", "v_proj")
            if not reads_embeddings:
                bwd[part] += base  # input gradient only: the base weight is frozen
            if adapted:
                a, b = 2.0 * tokens * fan_in * lora_r, 2.0 * tokens * lora_r * fan_out
                fwd["lora"] += a + b
                bwd["lora"] += (a if reads_embeddings else 2 * a) + 2 * b  # dA (+dx), dB + dz
        scores = 2.0 * pairs * qk  # Q K^T over causal pairs; P V is the same size
        fwd["attention"] += 2 * scores
        # dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q. In the first layer Q, K and V come from
        # the frozen embeddings: each needs a gradient only where its projection is adapted.
        if first:
            dq, dk, dv = (name in lora_targets for name in ("q_proj", "k_proj", "v_proj"))
            bwd["attention"] += ((dq or dk) + dv + dq + dk) * scores
        else:
            bwd["attention"] += 4 * scores
    head = 2.0 * supervised_tokens * arch.hidden * arch.vocab
    fwd["lm_head"] += head
    bwd["lm_head"] += head  # input gradient; the tied/frozen embedding gets none
    return StepFlops(fwd, bwd)


def forward_flops(arch: Arch, seq_lens: Sequence[int], logit_tokens: int) -> float:
    """Forward-only FLOPs (evaluation, filtering), LM head over ``logit_tokens`` positions."""
    tokens = sum(seq_lens)
    pairs = sum(n * (n + 1) // 2 for n in seq_lens)
    linear = sum(2.0 * tokens * a * b for a, b in map(arch.projection_shape, PROJECTIONS)) * arch.layers
    return linear + 4.0 * pairs * arch.heads * arch.hd * arch.layers + 2.0 * logit_tokens * arch.hidden * arch.vocab


def batch_flops(arch: Arch, input_ids, labels, indices: Sequence[int], lora_r: int,
                lora_targets: Sequence[str] = ("q_proj", "v_proj")) -> StepFlops:
    """:func:`lora_step_flops` for a batch of a tokenized client (``input_ids``/``labels`` lists, -100 = no label)."""
    lens = [len(input_ids[i]) for i in indices]
    supervised = sum(int((labels[i][1:] != -100).sum()) for i in indices)
    return lora_step_flops(arch, lens, supervised, lora_r, lora_targets)
