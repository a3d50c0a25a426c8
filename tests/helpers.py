"""Small builders shared by tests."""

from __future__ import annotations

from harness.config import RunConfig, load_config


def smoke_config(tmp_path, **overrides) -> RunConfig:
    """The smoke preset with its MLflow store and runs under ``tmp_path`` and no progress bars needed."""
    base = {"output_dir": str(tmp_path / "out"), "tracking.run_name": "test-run"}
    base.update(overrides)
    return load_config("smoke", overrides=base)
