"""Atomic per-round checkpoints of a run, verified by a manifest of sizes and SHA-256 digests.

Layout under ``<run_dir>/checkpoints``::

    round_0003/                     # the state *after* round 3 (round_0000: before round 1)
        global.safetensors          # the global adapter
        rng.safetensors             # torch CPU (and CUDA) RNG states
        state.json                  # next round, sampler/numpy/python RNG, data cursors, pending round log
        plugins/                    # what the checkpoint_state hooks wrote (one sub-folder per plugin)
        MANIFEST.json               # written last: size and sha256 of every file above
    .partial-round_0004/            # a checkpoint being written (ignored, removed on the next save)

A checkpoint is written under a ``.partial-`` name and renamed into place only once complete, so a
kill at any moment leaves either the previous or the new checkpoint, never a half-written one. The
newest ``keep`` checkpoints stay on disk; when the newest fails verification (truncated or edited
file) the next older one is used, with a warning that names the problem.

Durability (``fsync``) and pruning run on a background thread while the next round trains: a killed
process loses nothing (the files are in the page cache), and after a power loss or kernel crash the
newest checkpoint may be incomplete, in which case the previous one, already on disk, is used. A checkpoint
is pruned only after a newer one is on disk; ``save`` waits for the previous flush, so at most one runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from harness.types import AdapterState

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "MANIFEST.json"
PARTIAL = ".partial-"


class CheckpointError(RuntimeError):
    """No usable checkpoint: missing, truncated or corrupt; the message names the file and the problem."""


class RunDirError(CheckpointError):
    """A run directory that cannot be used: it exists for a fresh run, is missing on resume, or is locked."""


LOCK_FILE = ".lock"


class RunDirLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock``, held while a run (fresh or resumed) runs.

    ``fresh``: the directory is created here and must not exist yet (``mkdir`` is atomic, so of two fresh
    runs with one name the second is refused and the first is untouched); otherwise it must exist. A second
    process (or a second open of the lock file in this one) on a locked run gets :class:`RunDirError`.
    ``reuse``: a fresh run may take an existing directory (``harness suite`` redoing a row under its fixed name).
    The kernel drops the lock when the process dies, so a killed run can be resumed at once.
    """

    def __init__(self, run_dir: Path, fresh: bool, reuse: bool = False):
        self.path = Path(run_dir) / LOCK_FILE
        if fresh:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                run_dir.mkdir(exist_ok=reuse)
            except FileExistsError:
                raise RunDirError(
                    f"run directory {run_dir} already exists; a new run never reuses one: continue that run with "
                    f"--resume {run_dir.name!r} or choose another --run-name") from None
        elif not run_dir.is_dir():
            raise RunDirError(f"run directory {run_dir} does not exist; nothing to resume")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            action = ("wait for that run to end, or give this one another --run-name" if fresh else
                      "the run is still running there: wait for it to end (or stop it) before resuming it")
            raise RunDirError(f"run directory {run_dir} is in use by another process (it holds {self.path}); "
                              f"{action}") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


@dataclass
class Checkpoint:
    """What a checkpoint restores: the round state plus where the plugins' files are."""

    directory: Path
    next_round: int
    global_state: AdapterState
    sampler_state: dict[str, Any]
    cursors: dict[int, int]
    pending_log: dict[str, Any] | None = None  # the round's metrics/artifacts if they were not yet logged
    rng: dict[str, Any] = field(default_factory=dict)

    @property
    def plugin_dir(self) -> Path:
        return self.directory / "plugins"

    @property
    def logged(self) -> bool:
        """Whether the round's metrics reached the trackers (``mark_logged`` ran)."""
        return (self.directory / "LOGGED").exists()


def round_dir_name(next_round: int) -> str:
    return f"round_{next_round - 1:04d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(source: Path, target: Path) -> None:
    """Put ``source`` into a checkpoint as ``target``: a hard link where possible (an unchanged file then costs
    no copy, and the checkpoint neither re-hashes nor re-syncs it), else a copy. Replace ``source`` by renaming
    a new file over it, never by writing into it, or the checkpoints linked to it change too."""
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not supported
        shutil.copy2(source, target)


def _remove(directory: Path) -> None:
    """Delete a checkpoint directory; a symbolic link in its place is removed itself, never what it points to
    (which need not belong to this run), with a warning naming both."""
    if directory.is_symlink():
        log.warning("checkpoint %s is a symbolic link to %s: removed the link, not its target (delete that yourself "
                    "if it is no longer needed)", directory, os.readlink(directory))
        directory.unlink()
    else:
        shutil.rmtree(directory)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_states() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    json_states = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, json_states


def _restore_rng(tensors: dict[str, torch.Tensor], json_states: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = json_states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = json_states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


class CheckpointStore:
    """Writes, verifies and reads the checkpoints of one run directory."""

    def __init__(self, run_dir: Path, keep: int = 2):
        if keep < 2:
            raise ValueError("keep must be >= 2 so that a corrupt newest checkpoint has a fallback")
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep
        self._digests: dict[tuple[int, int, int, int], str] = {}  # (dev, inode, size, mtime) -> sha256, synced
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-flush")
        self._pending: Future | None = None

    def _digest(self, path: Path, unsynced: list[str], rel: str) -> str:
        """sha256 of a file; a file already seen unchanged (e.g. a hard link to an earlier checkpoint's
        c_i) is neither re-read nor synced again, so a round's cost does not grow with the clients."""
        st = path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = _sha256(path)
            unsynced.append(rel)
        return self._digests[key]

    def flush(self) -> None:
        """Wait until the last saved checkpoint is on disk and older ones are pruned; re-raises an error there."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _sync_and_prune(self, directory: Path, unsynced: list[str]) -> None:
        try:
            for rel in unsynced:
                with (directory / rel).open("rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(directory)
            _fsync_dir(self.root)
        except OSError as exc:
            raise CheckpointError(f"checkpoint {directory} could not be synced to disk: {exc}") from exc
        for old in self._complete()[self.keep:]:
            _remove(old)

    def set_aside(self) -> Path | None:
        """Move an earlier attempt's checkpoints out of a fresh run's way (to ``checkpoints.superseded-N``, kept
        as evidence) so that its rounds neither mix with nor get pruned for them; returns where they went. Without
        a complete checkpoint there is nothing to keep (``save`` removes partial ones)."""
        if not self._complete():
            return None
        n = 1
        while (target := self.root.with_name(f"{self.root.name}.superseded-{n}")).exists():
            n += 1
        self.root.rename(target)
        return target

    def complete(self) -> list[Path]:
        """Finished checkpoint directories, newest first."""
        self.flush()
        return self._complete()

    def _complete(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.glob("round_*") if p.is_dir()), reverse=True)

    # -- writing ------------------------------------------------------------------------
    def save(
        self,
        next_round: int,
        global_state: AdapterState,
        sampler_state: dict[str, Any],
        cursors: dict[int, int],
        write_plugins: Callable[[Path], None],
        pending_log: dict[str, Any] | None = None,
    ) -> Path:
        """Write the checkpoint for ``next_round`` atomically (synced and pruned in the background); returns
        its directory."""
        self.flush()
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(PARTIAL + "*"):
            shutil.rmtree(stale)
        name = round_dir_name(next_round)
        tmp = self.root / (PARTIAL + name)
        (tmp / "plugins").mkdir(parents=True)
        save_file({n: t.contiguous() for n, t in global_state.items()}, str(tmp / "global.safetensors"))
        rng_tensors, rng_json = _rng_states()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        state = {
            "format": FORMAT,
            "next_round": next_round,
            "sampler": sampler_state,
            "cursors": {str(k): v for k, v in cursors.items()},
            "rng": rng_json,
            "pending_log": pending_log,
        }
        (tmp / "state.json").write_text(json.dumps(state))
        write_plugins(tmp / "plugins")
        unsynced: list[str] = [MANIFEST]
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = str(path.relative_to(tmp))
            files[rel] = {"size": path.stat().st_size, "sha256": self._digest(path, unsynced, rel)}
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "next_round": next_round, "files": files}, indent=1))
        final = self.root / name
        if final.exists() or final.is_symlink():  # a resumed run redoing a round: replace the old copy
            _remove(final)
        os.replace(tmp, final)
        self._pending = self._flusher.submit(self._sync_and_prune, final, unsynced)
        return final

    @staticmethod
    def mark_logged(directory: Path) -> None:
        """Record that the checkpointed round's metrics were handed to the trackers."""
        (directory / "LOGGED").touch()

    # -- reading ------------------------------------------------------------------------
    def verify(self, directory: Path) -> dict[str, Any]:
        """The manifest of ``directory`` after checking every file's size and digest; else CheckpointError."""
        self.flush()
        manifest_path = directory / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {directory} has no {MANIFEST} (incomplete write)") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {directory}: {MANIFEST} is unreadable ({exc})") from None
        try:
            entries = [(str(rel), int(meta["size"]), str(meta["sha256"])) for rel, meta in files.items()]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {directory}: {MANIFEST} is unreadable ({exc!r})") from None
        for rel, expected_size, expected_sha in entries:
            path = directory / rel
            if not path.is_file():
                raise CheckpointError(f"checkpoint {directory}: {rel} is missing")
            size = path.stat().st_size
            if size != expected_size:
                raise CheckpointError(
                    f"checkpoint {directory}: {rel} is truncated or altered ({size} bytes, manifest says {expected_size})"
                )
            if _sha256(path) != expected_sha:
                raise CheckpointError(f"checkpoint {directory}: {rel} is corrupt (sha256 differs from the manifest)")
        return manifest

    def load(self, directory: Path) -> Checkpoint:
        """Verify and read one checkpoint directory."""
        self.verify(directory)
        try:
            state = json.loads((directory / "state.json").read_text())
            global_state = load_file(str(directory / "global.safetensors"))
            rng_tensors = load_file(str(directory / "rng.safetensors"))
        except (OSError, ValueError, SafetensorError) as exc:
            raise CheckpointError(f"checkpoint {directory} cannot be read: {exc}") from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"checkpoint {directory} has format {found}, expected {FORMAT}")
        if nonfinite := [name for name, t in global_state.items() if not torch.isfinite(t).all()]:
            raise CheckpointError(f"checkpoint {directory}: global.safetensors has non-finite values (NaN/Inf) in "
                                  f"{', '.join(nonfinite[:3])}{', ...' if len(nonfinite) > 3 else ''}")
        try:
            checkpoint = Checkpoint(
                directory=directory,
                next_round=state["next_round"],
                global_state=global_state,
                sampler_state=state["sampler"],
                cursors={int(k): v for k, v in state["cursors"].items()},
                pending_log=state["pending_log"],
                rng={"tensors": rng_tensors, "json": state["rng"]},
            )
            check_state(checkpoint)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            # a hand-edited (or otherwise wrong) state.json is a corrupt checkpoint: load_latest falls back
            raise CheckpointError(f"checkpoint {directory}: state.json is invalid ({type(exc).__name__}: {exc})") from None
        return checkpoint

    def load_latest(self) -> Checkpoint:
        """The newest checkpoint that verifies; older ones are tried (with a warning) if it does not."""
        candidates = self.complete()
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.root}: nothing to resume")
        problems = []
        for directory in candidates:
            try:
                checkpoint = self.load(directory)
            except CheckpointError as exc:
                problems.append(str(exc))
                log.warning("%s; falling back to an older checkpoint", exc)
                continue
            for bad in candidates[: candidates.index(directory)]:  # keep as evidence, out of the way
                target = bad.with_name(f"corrupt-{bad.name}")
                shutil.rmtree(target, ignore_errors=True)
                bad.rename(target)
            return checkpoint
        raise CheckpointError("no usable checkpoint:\n  " + "\n  ".join(problems))


def check_state(checkpoint: Checkpoint) -> None:
    """Raise (KeyError, TypeError, ValueError, ...) unless ``checkpoint``'s state.json values are what a save
    writes: each is tried on a throwaway RNG/generator, so a restore can no longer fail half-way through."""
    next_round = checkpoint.next_round
    if type(next_round) is not int or round_dir_name(next_round) != checkpoint.directory.name:
        raise ValueError(f"next_round {next_round!r} does not match the directory {checkpoint.directory.name}")
    if any(type(v) is not int or v < 0 for v in checkpoint.cursors.values()):
        raise ValueError(f"cursors must be client id -> count >= 0, got {checkpoint.cursors!r:.200}")
    np.random.default_rng().bit_generator.state = checkpoint.sampler_state
    version, internal, gauss = checkpoint.rng["json"]["python"]
    random.Random().setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = checkpoint.rng["json"]["numpy"]
    np.random.RandomState().set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch_cpu" not in checkpoint.rng["tensors"]:
        raise KeyError("torch_cpu")
    torch.Generator().set_state(checkpoint.rng["tensors"]["torch_cpu"])
    pending = checkpoint.pending_log
    if pending is not None:
        if set(pending) != {"server_round", "metrics", "artifacts"} or pending["server_round"] != next_round - 1:
            raise ValueError(f"pending_log must hold server_round {next_round - 1}, metrics and artifacts")
        for key, value in pending["metrics"].items():
            if not isinstance(value, (bool, int, float)) or isinstance(value, float) and math.isinf(value):
                raise TypeError(f"pending_log metric {key!r} = {value!r:.80} is not a finite (or NaN) number")
        if not all(isinstance(v, str) for v in pending["artifacts"].values()):
            raise TypeError("pending_log artifacts must be text")


def restore_rng(checkpoint: Checkpoint) -> None:
    """Put the torch, numpy and python global RNGs back where the checkpoint recorded them."""
    _restore_rng(checkpoint.rng["tensors"], checkpoint.rng["json"])
