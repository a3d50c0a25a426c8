"""Where the base model lives: ``model.device`` (auto picks a GPU when torch sees one)."""

import pytest
import torch

from harness.config import ModelConfig
from harness.models import ModelLoadError, load_base, resolve_device


def test_auto_picks_the_gpu_only_when_there_is_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    model, _ = load_base(ModelConfig(name="tiny-random"))
    assert next(model.parameters()).device.type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_asking_for_a_missing_gpu_names_the_setting():
    with pytest.raises(ModelLoadError, match="model.device 'cuda' asks for a GPU"):
        resolve_device("cuda")


def test_a_device_that_does_not_exist_names_the_setting():
    with pytest.raises(ModelLoadError, match="model.device 'gpu0' is not a device"):
        resolve_device("gpu0")
