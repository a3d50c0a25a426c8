"""Settings of `harness filter train`, shared by every trainable filter plugin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FilterTrainSettings:
    epochs: int = 5  # the paper's S-LG20K fine-tune: 5 epochs
    lr: float = 2e-4
    batch_size: int = 8
    max_steps: int | None = None  # cap on optimizer steps over all epochs
    lora_r: int = 8
    max_length: int = 1024
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.lora_r < 1:
            raise ValueError("epochs, batch_size and lora_r must be >= 1 and lr > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be >= 1 when given")
