"""The reference FL loop the engine is compared with: local training the way common FedLLM code does it
(OpenFedLLM's ``main_sft.py``), on the same model, data and steps as the engine.

Per round: deep-copy the global LoRA state dict; per sampled client, load it into the model with
``set_peft_model_state_dict``, build ``TrainingArguments`` and a new ``transformers.Trainer``, train
``max_steps`` steps, and keep ``copy.deepcopy(get_peft_model_state_dict(model))``; then a sample-weighted
FedAvg of those dicts. No bf16/fp16, no gradient checkpointing, no reporting, no saving.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np
import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from transformers import Trainer, TrainerCallback, TrainingArguments

from harness.training import TokenizedSamples, collate


class _Rows(torch.utils.data.Dataset):
    def __init__(self, data: TokenizedSamples, indices: Sequence[int]):
        self.rows = [{"input_ids": data.input_ids[i], "labels": data.labels[i]} for i in indices]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]


class _StepClock(TrainerCallback):
    """Seconds between each step's begin and end (forward, backward, optimizer), as the engine counts them."""

    def __init__(self) -> None:
        self.seconds, self._start = 0.0, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._start


class ReferenceLoop:
    """OpenFedLLM-style rounds over ``clients`` (each a TokenizedSamples) on ``model`` (a peft model)."""

    def __init__(self, model, pad_id: int, clients: Sequence[TokenizedSamples], out_dir: str, seed: int = 0):
        self.model, self.pad_id, self.clients, self.out_dir, self.seed = model, pad_id, clients, out_dir, seed
        self.global_dict = copy.deepcopy(get_peft_model_state_dict(model))
        self.local_dicts = [copy.deepcopy(self.global_dict) for _ in clients]  # as OpenFedLLM keeps them
        self.cursors = [0] * len(clients)
        # each client's visiting order, as the engine derives it (seeded by the run seed and the client id)
        self.orders = [np.random.default_rng([seed, cid]).permutation(len(d)).tolist() for cid, d in enumerate(clients)]

    def _collator(self, features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        data = TokenizedSamples([f["input_ids"] for f in features], [f["labels"] for f in features])
        batch, _ = collate(data, range(len(features)), self.pad_id)
        return batch

    def run_round(self, sampled: Sequence[int], steps: int, batch_size: int, lr: float) -> dict[str, float]:
        """One round; returns its wall seconds and the seconds inside the Trainer's steps."""
        start, step_seconds = time.perf_counter(), 0.0
        sizes = {}
        for cid in sampled:
            set_peft_model_state_dict(self.model, self.global_dict)
            data = self.clients[cid]
            # the round's samples: the next steps * batch_size of the client's data (as the engine visits them)
            order = self.orders[cid]
            indices = [order[(self.cursors[cid] + j) % len(data)] for j in range(steps * batch_size)]
            self.cursors[cid] = (self.cursors[cid] + steps * batch_size) % len(data)
            args = TrainingArguments(
                output_dir=self.out_dir, per_device_train_batch_size=batch_size, max_steps=steps,
                learning_rate=lr, lr_scheduler_type="constant", weight_decay=0.0, optim="adamw_torch",
                bf16=False, fp16=False, gradient_checkpointing=False, report_to=[], save_strategy="no",
                logging_strategy="no", eval_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
                remove_unused_columns=False, seed=self.seed, use_cpu=not torch.cuda.is_available(),
            )
            clock = _StepClock()
            trainer = Trainer(model=self.model, args=args, train_dataset=_Rows(data, indices),
                              data_collator=self._collator, callbacks=[clock])
            trainer.train()
            step_seconds += clock.seconds
            self.local_dicts[cid] = copy.deepcopy(get_peft_model_state_dict(self.model))
            sizes[cid] = len(data)
        total = sum(sizes.values())
        self.global_dict = {
            name: sum(self.local_dicts[cid][name] * (n / total) for cid, n in sizes.items())
            for name in self.global_dict
        }
        set_peft_model_state_dict(self.model, self.global_dict)
        self.model.eval()
        return {"round_seconds": time.perf_counter() - start, "step_seconds": step_seconds}
