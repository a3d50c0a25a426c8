"""Shared fixtures: the real data beside the checkout, a tiny random model, an isolated MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness  # noqa: F401  (first, so its OMP_WAIT_POLICY default is set before torch loads OpenMP)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; a test that needs it fails (never skips) when it is missing."""
    if not (SHARED_DATA / "SOURCES.md").is_file():
        pytest.fail(f"the benchmark data is missing: expected {SHARED_DATA}/SOURCES.md (clone with ../shared beside it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model():
    """A GlobalModel over a fresh tiny-random Llama with LoRA (r=4) attached."""
    from harness.config import ModelConfig
    from harness.model_handle import GlobalModel
    from harness.models import attach_lora, load_base

    cfg = ModelConfig(name="tiny-random", lora_r=4, lora_alpha=8, lora_dropout=0.0, max_length=256)
    base, tok = load_base(cfg)
    return GlobalModel(attach_lora(base, cfg, seed=0), tok, cfg.max_length)


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    """A temporary working directory (the default MLflow store lands here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
