"""OpenMP wait policies on this machine: AdvBench generation, HHH scoring and training steps of the safe base.

``python -m tests.perf.wait_policy`` runs each policy in a child process of its own (libgomp reads the policy
once, when torch loads it) and prints seconds per workload; docs/performance.md ("The repro board's evals")
has the numbers. Needs ``HARNESS_DATA`` (AdvBench) and the shipped safe base.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

POLICIES = {"PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}, "unset": {}, "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"}}


def workloads() -> dict[str, float]:
    """Seconds for AdvBench 64 goals x 48 new tokens, HHH letters on 32 long prompts, 4 training steps of 8."""
    import torch  # noqa: F401  (first, so that the policy libgomp sees is the caller's, not harness's default)

    from harness.adapters import trainable_params
    from harness.config import ModelConfig
    from harness.data.demo import demo_samples
    from harness.default_plugins.evals.advbench import ADVBENCH_FILE
    from harness.default_plugins.evals.hhh import LETTERS
    from harness.evals.choice import answer_logprobs
    from harness.evals.files import data_file
    from harness.evals.loaders import load_advbench
    from harness.model_handle import GlobalModel
    from harness.models import attach_lora, load_base
    from harness.training import local_train, tokenize_samples

    cfg = ModelConfig(name="smollm2-135m-safe", max_length=256, dtype="auto")
    base, tok = load_base(cfg)
    model = GlobalModel(attach_lora(base, cfg, 0), tok, cfg.max_length)
    prompts = [model.chat_prompt(g) for g in load_advbench(data_file(ADVBENCH_FILE, None))[:64]]
    model.generate(prompts[:8], max_new_tokens=8, batch_size=8)  # warm-up
    seconds = {}
    start = time.perf_counter()
    model.generate(prompts, max_new_tokens=48, batch_size=32)
    seconds["advbench 64 x 48 tokens"] = time.perf_counter() - start
    start = time.perf_counter()
    answer_logprobs(model, [p * 4 for p in prompts[:32]], LETTERS, batch_size=8)
    seconds["hhh 32 prompts"] = time.perf_counter() - start
    benign, harmful = demo_samples(24, 8)
    data = tokenize_samples(tok, benign + harmful, cfg.max_length)
    start = time.perf_counter()
    local_train(model.model, trainable_params(model.model), data, list(range(32)), 0, 4, 8, 3e-4, "adamw",
                tok.pad_token_id)
    seconds["4 training steps"] = time.perf_counter() - start
    return seconds


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(workloads()))
        return
    for name, env in POLICIES.items():
        child_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
        done = subprocess.run([sys.executable, "-m", "tests.perf.wait_policy", "--child"], env=child_env,
                              capture_output=True, text=True, check=True)
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:8s}", "  ".join(f"{k}: {v:.2f} s" for k, v in seconds.items()), flush=True)


if __name__ == "__main__":
    main()
