"""`lm-eval:<task>`: any lm-evaluation-harness task on the resident model (base + current adapter).

Select it as ``--eval lm-eval:hellaswag`` (the suffix becomes the ``task`` option). Tasks
defined in local YAML files run offline: point ``include_path`` at their directory. The
model is handed to lm-eval's ``HFLM`` in memory, so the current global adapter is what is
scored. Metrics are logged as ``lm-eval/<task>/<metric>`` (``acc``, ``acc_norm``, ...; a
non-default filter is appended: ``exact_match/strict-match``); the full results are stored
as ``lm_eval_<task>.json``.
"""

from __future__ import annotations

import json
import re

from harness.hookspecs import hookimpl
from harness.types import EvalResult

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_name(task: str, key: str) -> str:
    """'acc,none' -> 'lm-eval/<task>/acc'; 'exact_match,strict-match' -> '.../exact_match/strict-match'."""
    metric, _, filter_name = key.partition(",")
    name = metric if filter_name in ("", "none") else f"{metric}/{filter_name}"
    return _UNSAFE.sub("_", f"lm-eval/{task}/{name}")


def flatten_results(results: dict[str, dict]) -> dict[str, float]:
    """lm-eval's per-task result dicts as MLflow metrics (numbers only; 'N/A' stderrs are left out)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            if "," in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[metric_name(task, key)] = float(value)
    return out


class LmEvalBridge:
    def __init__(self, task: str | None = None, include_path: str | None = None, num_fewshot: int | None = None,
                 batch_size: int = 8, bootstrap_iters: int = 1000, apply_chat_template: bool = False):
        if not task:
            raise ValueError("name the lm-eval task: --eval lm-eval:<task> (or the option task=<task>)")
        self.task, self.include_path, self.num_fewshot = task, include_path, num_fewshot
        self.batch_size, self.bootstrap_iters, self.apply_chat_template = batch_size, bootstrap_iters, apply_chat_template

    @hookimpl
    def evaluate(self, server_round, model, limit):
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        manager = TaskManager(include_path=self.include_path)
        if not manager.match_tasks([self.task]):
            where = f" (local tasks from {self.include_path})" if self.include_path else ""
            raise ValueError(f"lm-eval has no task {self.task!r}{where}; pass include_path=DIR for local YAML tasks")
        was_training = model.model.training
        try:
            lm = HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=self.batch_size)
            out = simple_evaluate(
                model=lm, tasks=[self.task], num_fewshot=self.num_fewshot, limit=limit, task_manager=manager,
                log_samples=False, bootstrap_iters=self.bootstrap_iters, apply_chat_template=self.apply_chat_template,
            )
        finally:
            model.model.train(was_training)
        report = {"results": out["results"], "n-samples": out.get("n-samples"), "versions": out.get("versions")}
        return EvalResult(
            metrics=flatten_results(out["results"]),
            artifacts={f"lm_eval_{self.task}.json": json.dumps(report, indent=1, default=str)},
        )
