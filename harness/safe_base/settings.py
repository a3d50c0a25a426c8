"""The shipped safety-tuning recipe's training settings (docs/safe-base.md), light so `harness safety-tune` can
show them as its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field


BENIGN_LOSSES = ("ce", "kl")
REFUSAL_STYLES = ("apology", "statement")
"""How the red prompts' refusals open (:data:`harness.safe_base.recipe.STYLE_REFUSALS`)."""


@dataclass
class SafetyTuneSettings:
    """LoRA SFT settings of one safety-tuning; the defaults are the shipped adapter's (recipe v6)."""

    steps: int = 140
    batch_size: int = 8
    lr: float = 3e-4
    lr_min: float = 3e-5
    lora_r: int = 8
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    max_length: int = 256
    answer_tokens: int = 96
    seed: int = 0
    benign_loss: str = "ce"
    """How the benign answers train: ``ce`` (cross-entropy on their tokens) or ``kl`` (the frozen base's
    distribution over them, :mod:`harness.safe_base.distill`)."""

    dtype: str = "float32"  # the same adapter (and cached answers) on every CPU, bf16-capable or not

    def __post_init__(self):
        if self.benign_loss not in BENIGN_LOSSES:
            raise ValueError(f"benign_loss must be one of {', '.join(BENIGN_LOSSES)}, not {self.benign_loss!r}")
