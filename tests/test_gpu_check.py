"""The GPU check (``python -m tests.perf.gpu_check``) runs to completion on a CPU with the tiny configs, so the first
lent GPU runs it without edits; its rows report failures and skips instead of numbers they did not measure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.perf import gpu_check
from tests.perf.model_configs import (LLAMA_31_8B, LLAMA_GUARD_3_8B, TINY_BASE, byte_tokenizer, llama_config,
                                      same_weights_layout)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_check_runs_every_row_on_cpu(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.perf.gpu_check", "--tiny", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == list(gpu_check.ROWS)
    assert report["machine"]["mode"] == "tiny" and report["machine"]["device"] == "cpu"
    for row in rows.values():
        assert row["status"] in ("ok", "skipped"), row
        if row["status"] == "skipped":
            assert row["reason"] and not row["metrics"], row  # a skip says why and carries no numbers
    # no CUDA here: the rows that need it say so instead of measuring
    assert rows["train-4bit"]["status"] == "skipped" and "CUDA" in rows["train-4bit"]["reason"]
    assert rows["generate-vllm"]["status"] == "skipped" and rows["generate-vllm"]["reason"]
    for name in ("save-weights", "train-bf16", "guard-scoring", "generate-hf", "fed-round"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["metrics"]["peak_memory_gb"] > 0
    train = rows["train-bf16"]["metrics"]
    assert train["tokens_per_s"] > 0 and train["seconds_per_step"] > 0 and math.isfinite(train["loss"])
    assert 0 < train["mfu_vs_measured_bf16_matmul"] < 5  # against the CPU's measured bf16 matmul rate
    guard = rows["guard-scoring"]["metrics"]
    assert guard["samples_per_min"] > 0 and guard["prompt_tokens_per_s"] > 0 and guard["samples"] > 0
    assert rows["generate-hf"]["metrics"]["tokens_per_s"] > 0
    fed = rows["fed-round"]["metrics"]
    assert fed["status"] == "FINISHED" and math.isfinite(fed["loss"]) and fed["loss"] > 0
    assert fed["clients_trained"] == 2 and fed["filter_scored"] > 0 and fed["train_tokens"] > 0
    assert "fed-round" in proc.stdout and "train-4bit" in proc.stdout  # the table is printed


def test_a_failing_row_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    """One row raising is ``failed`` with its error, the next rows run, and the exit status is 1; skips alone are 0."""
    ran = []

    def boom(ctx):
        raise ValueError("out of bananas")

    def fine(ctx, *args):
        ran.append("fine")
        return {"seconds": 1.0}

    def skip(ctx, *args):
        raise gpu_check.Skip("not here")

    monkeypatch.setattr(gpu_check, "row_save_weights", fine)
    for name in ("row_train", "row_generate_hf", "row_fed_round", "row_generate_vllm"):
        monkeypatch.setattr(gpu_check, name, skip)
    monkeypatch.setattr(gpu_check, "row_guard", boom)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"):
        monkeypatch.setenv(key, os.environ.get(key, "1"))  # main() sets them: undone after the test
    out = tmp_path / "r.json"
    assert gpu_check.main(["--tiny", "--out", str(out), "--workdir", str(tmp_path / "w")]) == 1
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    failed = rows["guard-scoring"]
    assert failed["status"] == "failed" and "ValueError: out of bananas" in failed["reason"]
    assert "out of bananas" in rows["guard-scoring"]["traceback"]
    assert rows["save-weights"]["status"] == "ok" and ran == ["fine"]
    assert [rows[n]["status"] for n in ("generate-hf", "fed-round", "generate-vllm")] == ["skipped"] * 3
    assert "guard-scoring  failed" in capsys.readouterr().out

    monkeypatch.setattr(gpu_check, "row_guard", skip)
    assert gpu_check.main(["--tiny", "--out", str(out), "--workdir", str(tmp_path / "w2")]) == 0


def test_rows_after_missing_weights_skip_with_the_reason():
    ctx = gpu_check.Context(tiny=True, cuda=False, sizes=gpu_check.TINY_SIZES, workdir=Path("."),
                            base_config=TINY_BASE, guard_config=TINY_BASE)
    row = gpu_check.run_row("train-bf16", lambda: gpu_check.row_train(ctx, "none"))
    assert row["status"] == "skipped" and "save-weights" in row["reason"]
    assert gpu_check.run_row("train-4bit", lambda: gpu_check.row_train(ctx, "4bit"))["reason"].startswith(
        "needs CUDA + bitsandbytes")


def test_paper_configs_are_the_8b_shapes():
    """Llama-3.1-8B's published shapes: 8.03e9 parameters; the guard shares the layout (it is a fine-tune)."""
    from tests.perf.flops import Arch

    arch = Arch.from_config(llama_config(LLAMA_31_8B))
    per_layer = sum(a * b for a, b in map(arch.projection_shape, ("q_proj", "k_proj", "v_proj", "o_proj",
                                                                  "gate_proj", "up_proj", "down_proj")))
    params = arch.layers * (per_layer + 2 * arch.hidden) + 2 * arch.vocab * arch.hidden + arch.hidden
    assert params == 8_030_261_248
    assert same_weights_layout(LLAMA_31_8B, LLAMA_GUARD_3_8B)
    assert LLAMA_GUARD_3_8B["eos_token_id"] == 128009
    assert gpu_check.spec_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_check.spec_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_check.spec_peak_flops("Some Future GPU") is None


def test_padded_tokenizer_decodes_every_id_and_encodes_bytes():
    tok = byte_tokenizer(1000)
    assert len(tok) == 1000 and (tok.pad_token_id, tok.eos_token_id) == (256, 257)
    assert all(tok.decode([i]) for i in (259, 600, 999))  # filler ids decode to text
    assert len(tok("hello", add_special_tokens=False)["input_ids"]) == 5  # encoding stays byte-level
    assert len(byte_tokenizer(259)) == 259


def test_bf16_out_of_memory_is_said_and_measured_again_with_checkpointing(monkeypatch):
    import torch

    calls = []

    def steps(ctx, quantization, checkpointing):
        calls.append(checkpointing)
        if not checkpointing:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return {"gradient_checkpointing": True, "seconds_per_step": 1.0}

    monkeypatch.setattr(gpu_check, "_train_steps", steps)
    ctx = gpu_check.Context(tiny=True, cuda=False, sizes=gpu_check.TINY_SIZES, workdir=Path("."),
                            base_config=TINY_BASE, guard_config=TINY_BASE, base_dir="b", guard_dir="g")
    row = gpu_check.run_row("train-bf16", lambda: gpu_check.row_train(ctx, "none"))
    assert row["status"] == "ok" and calls == [False, True]
    assert "OutOfMemoryError" in row["metrics"]["oom_without_checkpointing"]

    def always_oom(ctx, quantization, checkpointing):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(gpu_check, "_train_steps", always_oom)
    row = gpu_check.run_row("train-bf16", lambda: gpu_check.row_train(ctx, "none"))
    assert row["status"] == "failed" and "OutOfMemoryError" in row["reason"]
