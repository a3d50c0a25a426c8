"""The plugin contract: one documented spec per hook.

Call order in a run::

    on_run_start
    declare_prompts(run)                         # the overlap check (harness.data.overlap)
    restore_state(directory)                     # only when resuming (harness run --resume)
    evaluate(0, model); on_round_end(0, metrics) # fresh runs only: the pretrained evals (plugins.eval_pretrained)
                                                 # and the overlap counts, logged at step 0
    for each round r = 1..R:
        for each sampled client i:               # client side
            pre_local_train(i)                   # filter the client's samples
            configure_fit(r, i)                  # server -> client extras (server side)
            local training; per optimizer step:
                local_grad_correction(i)         #   after backward, before the step
                local_post_step(i)               #   after the step
            client_fit_end(i)                    # client -> server extras; an attack rewrites the update
        aggregate(r, updates)                    # server side
        post_aggregate(r, model)                 # server side: align the global adapter
        evaluate(r, model)                       # every E rounds and at the end
        checkpoint_state(directory)              # also once before round 1
        on_round_end(r, metrics)
    on_run_end

Privacy boundary: server-side hooks (``configure_fit``, ``aggregate``, ``post_aggregate``,
``evaluate``) never receive client datasets, only adapter tensors, sample counts and metrics.

Metric names: the engine logs an aggregator's metrics under ``agg/`` and an aligner's under ``align/`` (a name that
already carries the prefix keeps it once), an eval's as it names them (prefix them with the benchmark). Every round's
metrics are logged at step = the round (the pretrained evals at step 0), artifacts as ``round_NNN/<file name>``.
An eval plugin class may declare its ``headline`` metrics (:class:`harness.types.Headline`) for the run summary and
the default board; bad input (a missing data file, an option that cannot work) is :class:`harness.InputError`
(exit 2). The author's guide: docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from harness.types import (
    AdapterState,
    AggregateResult,
    AlignResult,
    ChatSample,
    ClientUpdate,
    EvalResult,
    FilterVerdict,
    FitIns,
    LocalTrainInfo,
    PromptSet,
    RunInfo,
    RunSummary,
)

if TYPE_CHECKING:  # annotations only: a plugin's `import hookimpl` and the CLI's validation load no torch
    import torch

    from harness.model_handle import GlobalModel

PROJECT = "fedllm_harness"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def on_run_start(run: RunInfo) -> None:
    """Called once before the first round, after the model and the client data are ready.

    Receives the run's identity, resolved config and flat params. Returns nothing.
    """


# -- data disjointness ----------------------------------------------------------------------------


@hookspec
def declare_prompts(run: RunInfo) -> PromptSet | list[PromptSet] | None:
    """Called once at run start, right after ``on_run_start``: the prompts this plugin trains on or scores.

    Receives the run (config, ``heldout``). Returns :class:`PromptSet` objects (or None): eval plugins their
    scored items with role ``"eval"`` (honouring ``run.config.plugins.eval_limit``), a guard filter its
    training prompts with role ``"guard"`` (``harness.data.overlap.digest_file_set`` reads a guard's
    ``train_prompts.sha256``), the CAI aligner its prompts with role ``"cai"``. The engine compares them with
    the client data and refuses overlaps (``data.allow_overlap`` forces the run); counts are logged as
    ``data/overlap_<a>_<b>``. Must be cheap (texts or digests, no model) and must not read client data. An eval
    plugin that does not implement it is named in a warning at run start (its items go unchecked); one whose items
    need no check implements it and returns None.
    """


@hookspec(firstresult=True)
def pre_local_train(client_id: int, samples: Sequence[ChatSample], server_round: int) -> FilterVerdict | None:
    """Client side, before a sampled client trains: decide which of its samples to keep.

    Receives the client's full private sample list (the same list every time the client is
    sampled) and the round number. Returns a :class:`FilterVerdict` with one keep flag per
    sample, or None to keep everything. Called once per sampled client per round (malicious clients with
    ``data.malicious_skip_filter`` skip it and keep everything: docs/data.md).
    """


@hookspec(firstresult=True)
def configure_fit(server_round: int, client_id: int, global_state: AdapterState) -> FitIns | None:
    """Server side, before a sampled client trains: extra tensors/config to send it.

    Receives the round, the client id and the global adapter (read-only). Returns a
    :class:`FitIns` (its tensors are counted in the bytes sent down) or None.
    """


@hookspec
def local_grad_correction(
    client_id: int,
    server_round: int,
    params: dict[str, torch.nn.Parameter],
    global_state: AdapterState,
    fit_ins: FitIns,
) -> None:
    """Client side, after each backward pass and before the optimizer step.

    Receives the trainable LoRA parameters (with ``.grad`` filled), the global adapter the
    client started from, and what ``configure_fit`` sent. May change ``param.grad`` in place
    (SCAFFOLD's ``gradient`` mode adds c - c_i; FedProx adds mu * (w - w_global)). Returns nothing.
    """


@hookspec
def local_post_step(
    client_id: int,
    server_round: int,
    params: dict[str, torch.nn.Parameter],
    global_state: AdapterState,
    fit_ins: FitIns,
    learning_rate: float,
) -> None:
    """Client side, after each optimizer step (gradients already cleared).

    Receives what ``local_grad_correction`` receives and the step's learning rate. May change the
    parameters in place under ``torch.no_grad()`` (SCAFFOLD's ``post-step`` mode subtracts
    learning_rate * (c - c_i), outside the optimizer's normalisation). Returns nothing.
    """


@hookspec(firstresult=True)
def client_fit_end(
    client_id: int,
    server_round: int,
    local_state: AdapterState,
    global_state: AdapterState,
    fit_ins: FitIns,
    train_info: LocalTrainInfo,
) -> dict[str, torch.Tensor] | None:
    """Client side, after local training: extra tensors to send to the server.

    Receives the client's trained adapter, the global adapter it started from, what
    ``configure_fit`` sent and the training summary (steps, learning rate). Returns tensors
    to attach to the :class:`ClientUpdate` (counted in the bytes sent up) or None. The client sends
    ``local_state`` as it is after these hooks: an attack plugin rewrites a malicious client's in place, with
    ``tryfirst`` so that it runs even when another plugin answers, and before it (docs/plugins.md, "Attacks").
    """


@hookspec(firstresult=True)
def aggregate(
    server_round: int,
    global_state: AdapterState,
    updates: list[ClientUpdate],
    num_clients_total: int,
) -> AggregateResult:
    """Server side: combine the round's client updates into the new global adapter.

    Receives the current global adapter (read-only), the updates of the clients that trained
    this round (never their data; non-finite ones already dropped, and norms clipped when
    ``federation.clip_update_norm`` is set; under DP-FedAvg, ``privacy.clip_norm``, clipped to it with
    ``num_examples = 1``, and the result is then noised: docs/privacy.md) and the total client count. Returns an
    :class:`AggregateResult` whose state has the global adapter's names, shapes and dtypes;
    the engine rejects anything else. Its metrics are logged as ``agg/<name>`` (a name already starting
    with ``agg/`` is not prefixed again). Exactly one aggregator is active.
    """


@hookspec(firstresult=True)
def post_aggregate(server_round: int, model: GlobalModel) -> AlignResult | None:
    """Server side, after aggregation: align the global adapter (e.g. Constitutional AI).

    Receives the round and the resident model with the new global adapter loaded. Returns
    an :class:`AlignResult` (its state replaces the global adapter) or None to leave it. Its metrics
    are logged as ``align/<name>`` (a name already starting with ``align/`` is not prefixed again).
    """


@hookspec
def evaluate(server_round: int, model: GlobalModel, limit: int | None) -> EvalResult | None:
    """Server side, every E rounds and after the last round: score the global model.

    Receives the round, the model with the global adapter loaded and an optional cap on
    items per benchmark. Returns an :class:`EvalResult`; metric names are logged as returned, so
    prefix them with the benchmark name (``advbench/harmless_rate``); artifacts are stored as
    ``round_NNN/<file name>``. Must leave the model's weights as it found them. Every selected eval
    is called. The plugin class's ``headline`` (:class:`harness.types.Headline`) names the metrics the run summary
    and the default board show.
    """


@hookspec
def checkpoint_state(directory: Path) -> None:
    """After each round (and once before round 1): save what this plugin needs to resume.

    Receives an empty folder inside the run's new checkpoint, shared by all plugins: write into a
    sub-folder named after the plugin (e.g. ``directory / "scaffold"``). Files must not change after
    the hook returns (hard links to immutable files are fine). The checkpoint becomes visible
    atomically, with every file's size and digest verified on resume. Returns nothing.
    """


@hookspec
def restore_state(directory: Path) -> None:
    """When a run resumes, after ``on_run_start``: load what ``checkpoint_state`` wrote.

    Receives the same folder (of the newest verified checkpoint); the plugin must return to
    exactly the state it had when it wrote it, discarding anything written since. Returns nothing.
    """


@hookspec
def on_round_end(server_round: int, metrics: dict[str, float], artifacts: dict[str, str]) -> None:
    """Called after each round with all of the round's metrics and eval artifacts. Returns nothing."""


@hookspec
def on_run_end(run: RunInfo, summary: RunSummary) -> None:
    """Called once when the run finishes or fails, with what it produced. Returns nothing."""
