"""One client's round, on the local engine and on a Flower node alike: filter its samples, then train LoRA locally.

:meth:`ClientTrainer.fit` runs ``pre_local_train``, takes the round's :class:`~harness.types.FitIns`, trains
``local_steps`` from the global adapter with the ``local_grad_correction`` and ``local_post_step`` hooks, and ends
with ``client_fit_end``. It returns the update, the client's share of the round metrics, its filter record and
its new data cursor; the caller (the round engine or the Flower ``ClientApp``) keeps the cursor.

A malicious client (ids below ``data.malicious_clients``) with ``data.malicious_skip_filter`` skips
``pre_local_train`` and trains on every sample; the centralized baseline's one client trains
``local_steps * clients_per_round`` steps (docs/data.md).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from harness.adapters import load_into, num_bytes, read_only_copy, snapshot
from harness.config import RunConfig
from harness.hook_checks import check_read_only
from harness.model_handle import GlobalModel
from harness.privacy import clip_on_client
from harness.training import TokenizedSamples, local_train, seed_torch, tokenize_samples
from harness.types import AdapterState, ChatSample, ClientUpdate, FitIns

log = logging.getLogger(__name__)


@dataclass
class ClientResult:
    """A client's round: its update (None when the filter kept nothing), its share of the round metrics (summed
    over clients by the engine), its filter record (for ``clients.json``) and where its data order continues."""

    update: ClientUpdate | None
    metrics: dict[str, float]
    filter_record: dict
    cursor: int


class ClientTrainer:
    """Trains clients one at a time on the resident ``model``, with the hooks of ``pm``."""

    def __init__(self, cfg: RunConfig, pm, model: GlobalModel, client_samples: list[list[ChatSample]],
                 progress: bool = False):
        self.cfg = cfg
        self.pm = pm
        self.hook = pm.hook
        self.model = model
        self.client_samples = client_samples
        self.progress = progress
        self._tokenized: dict[int, TokenizedSamples] = {}

    def client_data(self, cid: int) -> TokenizedSamples:
        """Client ``cid``'s samples, tokenised once per run."""
        if cid not in self._tokenized:
            self._tokenized[cid] = tokenize_samples(self.model.tokenizer, self.client_samples[cid],
                                                    self.cfg.model.max_length)
        return self._tokenized[cid]

    def fit(self, cid: int, server_round: int, lr: float, global_state: AdapterState,
            fit_ins: Callable[[], FitIns], cursor: int) -> ClientResult:
        """Train client ``cid`` from ``global_state``; ``fit_ins`` is asked once the filter left samples (the
        local engine calls ``configure_fit`` there; a Flower node answers with what the server sent)."""
        fed, data = self.cfg.federation, self.cfg.data
        metrics: dict[str, float] = defaultdict(float)
        samples = self.client_samples[cid]
        malicious = data.is_malicious(cid)
        skip_filter = malicious and data.malicious_skip_filter
        verdict = None if skip_filter else self.hook.pre_local_train(client_id=cid, samples=samples,
                                                                      server_round=server_round)
        keep = verdict.keep if verdict is not None else [True] * len(samples)
        if len(keep) != len(samples):
            raise ValueError(f"filter returned {len(keep)} verdicts for client {cid}'s {len(samples)} samples")
        count_filter(metrics, samples, keep)
        kept = [i for i, k in enumerate(keep) if k]
        record = client_filter_record(cid, samples, keep)
        if malicious:
            record["malicious"] = True
        if skip_filter:
            record["filter_skipped"] = True
            metrics["filter/skipped_by_malicious"] += 1
        if not kept:
            log.info("round %d: client %d has no samples left after filtering; skipped this round", server_round, cid)
            metrics["clients/skipped_empty"] += 1
            return ClientResult(None, dict(metrics), record, cursor)
        instructions = fit_ins()
        metrics["comm/bytes_down"] += num_bytes(global_state) + num_bytes(instructions.tensors)

        params = self.model.params
        load_into(params, global_state)
        order_rng = np.random.default_rng([fed.seed, cid])
        order = [kept[i] for i in order_rng.permutation(len(kept))]
        seed_torch(fed.seed * 1_000_003 + server_round * 10_007 + cid)

        step_hooks = [h for h in ("local_grad_correction", "local_post_step") if getattr(self.hook, h).get_hookimpls()]
        step_view = read_only_copy(global_state) if step_hooks else global_state
        step_args = dict(client_id=cid, server_round=server_round, params=params,
                         global_state=step_view, fit_ins=instructions)  # one read-only copy for all the steps

        def correct_grads() -> None:
            self.hook.local_grad_correction(**step_args)

        def post_step() -> None:
            self.hook.local_post_step(**step_args, learning_rate=lr)

        steps = fed.local_steps * (fed.clients_per_round if fed.centralized else 1)  # the FL round's sample visits
        bar = tqdm(total=steps, desc=f"client {cid}", leave=False, disable=not self.progress, unit="step")
        info, cursor = local_train(
            self.model.model, params, self.client_data(cid), order, cursor,
            steps, fed.batch_size, lr, fed.local_optimizer, self.model.tokenizer.pad_token_id,
            correct_grads=correct_grads if self.hook.local_grad_correction.get_hookimpls() else None,
            post_step=post_step if self.hook.local_post_step.get_hookimpls() else None,
            on_step=(lambda loss: (bar.update(), bar.set_postfix(loss=f"{loss:.3f}"))) if self.progress else None,
            max_grad_norm=fed.max_grad_norm, grad_accum_steps=fed.grad_accum_steps,
        )
        bar.close()
        if step_hooks:
            check_read_only(self.pm, step_view, global_state, *step_hooks)
        local_state = snapshot(params)
        view = read_only_copy(global_state)
        extra = self.hook.client_fit_end(
            client_id=cid, server_round=server_round, local_state=local_state,
            global_state=view, fit_ins=instructions, train_info=info,
        ) or {}
        check_read_only(self.pm, view, global_state, "client_fit_end")
        if self.cfg.plugins.attack != "none":  # its client_fit_end rewrote a malicious client's update in place
            metrics["attack/malicious_updates"] += malicious
        metrics["comm/bytes_up"] += num_bytes(local_state) + num_bytes(extra)
        metrics["time/train_step_seconds"] += info.step_seconds
        metrics["train/tokens"] += info.num_tokens
        metrics["train/sample_visits"] += info.steps * fed.batch_size
        metrics["train/padding_fraction"] += info.padding_fraction  # summed over clients, averaged by the engine
        update = ClientUpdate(cid, len(kept), local_state, extra, {"loss": info.mean_loss, "steps": info.steps})
        if not (malicious and self.cfg.plugins.attack != "none"):  # an attacker sends its update unclipped
            update = clip_on_client(update, global_state, self.cfg.privacy, metrics)  # DP-FedAvg, docs/privacy.md
        return ClientResult(update, dict(metrics), record, cursor)


def count_filter(metrics: dict[str, float], samples: list[ChatSample], keep: list[bool]) -> None:
    for sample, k in zip(samples, keep):
        metrics["filter/kept" if k else "filter/dropped"] += 1
        if sample.is_harmful is None:
            continue
        flagged = not k
        metrics["filter/true_pos"] += flagged and sample.is_harmful
        metrics["filter/false_pos"] += flagged and not sample.is_harmful
        metrics["filter/false_neg"] += (not flagged) and sample.is_harmful


def client_filter_record(cid: int, samples: list[ChatSample], keep: list[bool]) -> dict:
    """Per-client kept/dropped and, where labels exist, its red samples (``red``), those left to train on
    (``red_kept``) and precision/recall of the filter on that client."""
    record: dict = {"client_id": cid, "kept": sum(keep), "dropped": len(keep) - sum(keep)}
    labelled = [(s.is_harmful, not k) for s, k in zip(samples, keep) if s.is_harmful is not None]
    tp = sum(h and f for h, f in labelled)
    flagged, harmful = sum(f for _, f in labelled), sum(h for h, _ in labelled)
    if labelled:
        record["red"], record["red_kept"] = harmful, harmful - tp
    if flagged:
        record["precision"] = tp / flagged
    if harmful:
        record["recall"] = tp / harmful
    return record
