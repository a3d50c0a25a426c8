"""SCAFFOLD's per-client control variates c_i: one flat float32 vector per client, one file each.

Only the sampled clients' c_i are read (through safetensors' memory-mapped reader) during a round, so
memory does not grow with the client count. A client that never trained has c_i = 0 and no file. Files
are replaced, never modified in place (write a temporary file, then rename), so a checkpoint can hold
hard links to them instead of copies. A flat vector (names and shapes come from the adapter, laid out in
sorted name order) keeps the per-client file I/O and arithmetic to a few large operations.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.adapters import save_adapter
from harness.checkpoint import link_or_copy
from harness.types import AdapterState

KEY = "c_i"


def flatten(state: AdapterState) -> torch.Tensor:
    """All tensors of ``state`` as one float32 vector, in sorted name order: the layout does not depend on the
    order a dict lists its names in (a checkpoint read back lists them sorted, the live adapter in model order)."""
    return torch.cat([state[n].detach().reshape(-1).float() for n in sorted(state)])


def unflatten(vector: torch.Tensor, like: AdapterState) -> AdapterState:
    """The inverse of :func:`flatten`: views of ``vector`` shaped like ``like``'s tensors, in ``like``'s order."""
    names = sorted(like)
    parts = dict(zip(names, torch.split(vector, [like[n].numel() for n in names])))
    return {n: parts[n].view(t.shape) for n, t in like.items()}


class ControlVariateStore:
    """c_i by client id under ``directory`` (flat float32 vectors, CPU)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, client_id: int) -> Path:
        return self.directory / f"client_{client_id:06d}.safetensors"

    def files(self) -> list[Path]:
        return sorted(self.directory.glob("client_*.safetensors"))

    def load(self, client_id: int, numel: int) -> torch.Tensor:
        """c_i, or zeros if the client has none yet."""
        path = self.path(client_id)
        if not path.is_file():
            return torch.zeros(numel, dtype=torch.float32)
        vector = load_file(str(path))[KEY]
        if vector.numel() != numel:
            raise ValueError(f"{path} holds {vector.numel()} values, the adapter has {numel}")
        return vector

    def save(self, client_id: int, vector: torch.Tensor) -> None:
        save_adapter({KEY: vector.float()}, self.path(client_id))

    def link_into(self, target: Path) -> None:
        """Put every c_i file into ``target`` (hard links where possible)."""
        target.mkdir(parents=True, exist_ok=True)
        for path in self.files():
            link_or_copy(path, target / path.name)

    def replace_from(self, source: Path) -> None:
        """Make the store hold exactly the c_i files in ``source``."""
        for path in self.files():
            path.unlink()
        for path in sorted(source.glob("client_*.safetensors")):
            link_or_copy(path, self.path(int(path.stem.removeprefix("client_"))))
