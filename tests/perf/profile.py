"""Where a training step's time goes: a torch.profiler trace grouped into attention, MLP, LM head + loss,
optimizer, data and other.

Forward ops are grouped by the module they run in (a ``record_function`` range opened by module hooks);
backward ops by the forward op that created their autograd node (the profiler's ``sequence_nr`` links
the two). Self CPU time is summed, so the groups add up to the profiled time of the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.profiler import ProfilerActivity, profile, record_function

PREFIX = "cat::"
GROUPS = ("attention", "mlp", "lm_head+loss", "optimizer", "data", "other")


def _group_of(name: str) -> str | None:
    """A module's group from its qualified name (Llama-style names; LoRA sub-modules follow their parent)."""
    parts = name.split(".")
    if "self_attn" in parts:
        return "attention"
    if "mlp" in parts:
        return "mlp"
    if "lm_head" in parts:
        return "lm_head+loss"
    return None


@contextmanager
def grouped_modules(model: torch.nn.Module) -> Iterator[None]:
    """Open a ``cat::<group>`` range around attention, MLP and LM-head modules (outermost match only);
    the causal LM's own forward is ``lm_head+loss`` outside its decoder, so HF's in-forward loss lands there."""
    handles, stack = [], []

    def enter(group: str) -> Callable:
        def hook(module, args, kwargs=None):
            rf = record_function(PREFIX + group)
            rf.__enter__()
            stack.append(rf)
        return hook

    def leave(module, args, output, kwargs=None):
        stack.pop().__exit__(None, None, None)

    marked: list[str] = []
    for name, module in model.named_modules():
        group = _group_of(name)
        if group is None or any(name.startswith(m + ".") for m in marked):
            continue
        marked.append(name)
        handles += [module.register_forward_pre_hook(enter(group)), module.register_forward_hook(leave)]
    decoder = _decoder(model)
    if decoder is not None:  # everything of the causal LM outside the decoder is the head and the loss
        outer = _causal_lm(model)
        handles += [outer.register_forward_pre_hook(enter("lm_head+loss")), outer.register_forward_hook(leave),
                    decoder.register_forward_pre_hook(enter("other")), decoder.register_forward_hook(leave)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    get = getattr(model, "get_base_model", None)
    return get() if get is not None else model


def _decoder(model: torch.nn.Module) -> torch.nn.Module | None:
    inner = getattr(_causal_lm(model), "model", None)
    return inner if isinstance(inner, torch.nn.Module) else None


def group_times(prof, device_time: bool = False) -> dict[str, float]:
    """Seconds of self CPU time (``device_time``: of GPU kernel time) per group, from a finished profile."""
    events = prof.events()
    category: dict[int, str] = {}  # forward sequence_nr -> group

    def ancestor_group(ev) -> str | None:
        node = ev
        while node is not None:
            if node.name.startswith(PREFIX):
                return node.name[len(PREFIX):]
            if node.name.startswith("Optimizer."):
                return "optimizer"
            node = node.cpu_parent
        return None

    def backward_root(ev):
        node = ev
        while node is not None:
            if node.name.startswith("autograd::engine::evaluate_function"):
                return node
            node = node.cpu_parent
        return None

    for ev in events:  # forward ops that recorded an autograd node
        if ev.sequence_nr >= 0 and backward_root(ev) is None:
            category.setdefault(ev.sequence_nr, ancestor_group(ev) or "other")
    times = dict.fromkeys(GROUPS, 0.0)
    for ev in events:
        root = backward_root(ev)
        if root is not None:
            group = category.get(root.sequence_nr) or ancestor_group(ev) or "other"
        else:
            group = ancestor_group(ev) or "other"
        if group not in times:
            group = "other"
        times[group] += (ev.self_device_time_total if device_time else ev.self_cpu_time_total) / 1e6
    return times


@contextmanager
def profiled(model: torch.nn.Module) -> Iterator[dict[str, float]]:
    """Profile the block; on exit the yielded dict holds seconds per group (GPU kernel seconds when the
    model is on a GPU: CPU time there is mostly kernel launches)."""
    result: dict[str, float] = {}
    on_gpu = any(p.is_cuda for p in model.parameters())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with grouped_modules(model), profile(activities=activities) as prof:
        yield result
    result.update(group_times(prof, device_time=on_gpu))
