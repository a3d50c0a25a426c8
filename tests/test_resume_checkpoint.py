"""CheckpointStore: atomic layout, pruning, verification and clear errors (no model needed)."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
import torch

from harness.checkpoint import CheckpointError, CheckpointStore, restore_rng


def save(store: CheckpointStore, next_round: int, value: float = 0.0, plugin_bytes: bytes = b"plugin"):
    def write_plugins(directory):
        (directory / "demo").mkdir()
        (directory / "demo" / "state.bin").write_bytes(plugin_bytes)

    state = {"w": torch.full((3,), value)}
    sampler = np.random.default_rng(7).bit_generator.state
    return store.save(next_round, state, sampler, {4: 12}, write_plugins, pending(next_round - 1))


def pending(server_round: int) -> dict:
    return {"server_round": server_round, "metrics": {"train/loss": 1.0}, "artifacts": {}}


def test_round_trip_restores_state_rng_and_plugin_files(tmp_path):
    store = CheckpointStore(tmp_path)
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    directory = save(store, 2, value=1.5)
    expected = (torch.rand(2), random.random(), np.random.rand())
    torch.rand(5), random.random(), np.random.rand()  # move every RNG on
    checkpoint = store.load_latest()
    restore_rng(checkpoint)
    assert (torch.rand(2).tolist(), random.random(), np.random.rand()) == (expected[0].tolist(), *expected[1:])
    assert checkpoint.directory == directory and directory.name == "round_0001"
    assert checkpoint.next_round == 2 and checkpoint.cursors == {4: 12}
    assert torch.equal(checkpoint.global_state["w"], torch.full((3,), 1.5))
    assert (checkpoint.plugin_dir / "demo" / "state.bin").read_bytes() == b"plugin"
    assert checkpoint.pending_log == pending(1) and not checkpoint.logged
    store.mark_logged(directory)
    assert store.load_latest().logged


def test_only_the_newest_checkpoints_are_kept_and_partials_are_ignored(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for r in range(1, 5):
        save(store, r, value=r)
    partial = store.root / ".partial-round_0004"
    (partial / "plugins").mkdir(parents=True)  # a save killed half-way
    assert [p.name for p in store.complete()] == ["round_0003", "round_0002"]
    assert store.load_latest().next_round == 4
    save(store, 5)
    assert not partial.exists()


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "global.safetensors").write_bytes((d / "global.safetensors").read_bytes()[:-3]), "is truncated"),
    (lambda d: (d / "plugins" / "demo" / "state.bin").write_bytes(b"PLUGIN"), "is corrupt (sha256"),
    (lambda d: (d / "MANIFEST.json").unlink(), "has no MANIFEST.json"),
    (lambda d: (d / "state.json").unlink(), "state.json is missing"),
    (lambda d: (d / "MANIFEST.json").write_text("{not json"), "MANIFEST.json is unreadable"),
])
def test_damaged_newest_checkpoint_warns_and_falls_back(tmp_path, caplog, damage, message):
    store = CheckpointStore(tmp_path)
    save(store, 1, value=1.0)
    newest = save(store, 2, value=2.0, plugin_bytes=b"plugin")
    store.flush()  # damage found on disk later (the background sync is done)
    damage(newest)
    checkpoint = store.load_latest()
    assert checkpoint.next_round == 1 and torch.equal(checkpoint.global_state["w"], torch.ones(3))
    assert message in caplog.text and "round_0001" in caplog.text
    assert [p.name for p in store.complete()] == ["round_0000"]  # the bad one is moved aside


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    store = CheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint in .*nothing to resume"):
        store.load_latest()
    directory = save(store, 1)
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    manifest["files"]["global.safetensors"]["size"] += 1
    (directory / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="no usable checkpoint:\n.*global.safetensors is truncated"):
        store.load_latest()


def test_keep_below_two_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="keep must be >= 2"):
        CheckpointStore(tmp_path, keep=1)


def test_files_linked_unchanged_from_an_earlier_checkpoint_are_not_synced_again(tmp_path, monkeypatch):
    """Per-client state hard-linked into every checkpoint must not make a round's cost grow with the clients."""
    import os

    import harness.checkpoint as checkpoint_module

    live = tmp_path / "live"
    live.mkdir()
    for i in range(50):
        (live / f"client_{i}.bin").write_bytes(b"c" * 64)
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(checkpoint_module.os, "fsync",
                        lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))

    def write_plugins(directory):
        for path in live.iterdir():
            os.link(path, directory / path.name)

    store = CheckpointStore(tmp_path / "run")
    state = {"w": torch.zeros(3)}
    sampler = np.random.default_rng(0).bit_generator.state
    store.save(2, state, sampler, {}, write_plugins)
    store.flush()
    assert sum("client_" in p for p in synced) == 50
    synced.clear()
    (live / "client_7.bin").unlink()
    (live / "client_7.bin").write_bytes(b"new")  # one client trained this round
    store.save(3, state, sampler, {}, write_plugins)
    store.flush()
    assert [p.rsplit("/", 1)[1] for p in synced if "client_" in p] == ["client_7.bin"]
    assert store.verify(store.complete()[0])["files"]["plugins/client_7.bin"]["size"] == 3


def test_a_failed_background_sync_stops_the_next_save_and_prunes_nothing(tmp_path, monkeypatch):
    import harness.checkpoint as checkpoint_module

    store = CheckpointStore(tmp_path, keep=2)
    for r in range(1, 3):
        save(store, r, value=r)
    store.flush()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "fsync", failing_fsync)
    save(store, 3, value=3.0)  # written and renamed; its sync fails in the background
    with pytest.raises(CheckpointError, match=r"round_0002 could not be synced to disk: .*No space left"):
        save(store, 4, value=4.0)
    monkeypatch.undo()
    assert [p.name for p in store.complete()] == ["round_0002", "round_0001", "round_0000"]  # none pruned
    assert store.load_latest().next_round == 3


def test_background_sync_finishes_before_anything_is_read_or_pruned(tmp_path, monkeypatch):
    """Old checkpoints are removed only after the newer one is synced; readers wait for the sync."""
    import threading

    import harness.checkpoint as checkpoint_module

    release = threading.Event()
    release.set()
    real_fsync = checkpoint_module.os.fsync
    monkeypatch.setattr(checkpoint_module.os, "fsync", lambda fd: release.wait(10) and real_fsync(fd))
    store = CheckpointStore(tmp_path, keep=2)
    for r in range(1, 3):
        save(store, r)
    store.flush()
    release.clear()
    save(store, 3)  # its sync is held back
    on_disk = sorted(p.name for p in store.root.iterdir())
    assert on_disk == ["round_0000", "round_0001", "round_0002"]  # round_0000 waits for round_0002's sync
    threading.Timer(0.2, release.set).start()
    assert [p.name for p in store.complete()] == ["round_0002", "round_0001"]


def rewrite_state(directory, edit) -> None:
    """Hand-edit ``directory``'s state.json and re-hash it in the manifest, so only the content is wrong."""
    path = directory / "state.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    manifest["files"]["state.json"] = {"size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (directory / "MANIFEST.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit", [
    lambda s: s.pop("next_round"),                                  # KeyError before the fix
    lambda s: s.update(next_round=7),                               # does not match round_0002
    lambda s: s.update(cursors=[1, 2]),                             # not a mapping
    lambda s: s.update(cursors={"4": "twelve"}),
    lambda s: s.update(sampler={"bit_generator": "MT19937"}),
    lambda s: s["rng"].update(python=[3, [1, 2], None]),
    lambda s: s["rng"].pop("numpy"),
    lambda s: s["pending_log"]["metrics"].update({"eval/x": "oops"}),  # a string metric would be replayed
    lambda s: s.update(pending_log={"server_round": 2}),
], ids=["no-next_round", "wrong-next_round", "cursors-list", "cursor-str", "sampler", "python-rng", "numpy-rng",
        "str-metric", "pending-log-shape"])
def test_a_hand_edited_state_json_is_corrupt_and_falls_back(tmp_path, caplog, edit):
    store = CheckpointStore(tmp_path, keep=2)
    save(store, 2, value=1.0)
    newest = save(store, 3, value=2.0)
    rewrite_state(newest, edit)
    checkpoint = store.load_latest()
    assert checkpoint.next_round == 2 and torch.equal(checkpoint.global_state["w"], torch.full((3,), 1.0))
    assert "round_0002: state.json is invalid" in caplog.text
    assert (store.root / "corrupt-round_0002").is_dir()  # kept as evidence


def test_a_state_json_that_is_not_an_object_or_a_manifest_with_bad_entries_is_corrupt(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    save(store, 2)
    newest = save(store, 3)
    (newest / "state.json").write_text("[]")
    rewrite_state_manifest_only = json.loads((newest / "MANIFEST.json").read_text())
    rewrite_state_manifest_only["files"]["state.json"] = {"size": "two"}
    (newest / "MANIFEST.json").write_text(json.dumps(rewrite_state_manifest_only))
    with pytest.raises(CheckpointError, match="MANIFEST.json is unreadable"):
        store.load(newest)
    assert store.load_latest().next_round == 2


# -- issue #35 ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_global_adapter_with_a_valid_manifest_is_corrupt_and_falls_back(tmp_path, caplog, value):
    store = CheckpointStore(tmp_path, keep=2)
    save(store, 2, value=1.0)
    save(store, 3, value=value)  # saved as is: its manifest matches the NaN/Inf bytes
    checkpoint = store.load_latest()  # was: returned it, and the engine's AdapterStateError was a raw traceback
    assert checkpoint.next_round == 2 and torch.equal(checkpoint.global_state["w"], torch.full((3,), 1.0))
    assert "round_0002: global.safetensors has non-finite values (NaN/Inf) in w; falling back" in caplog.text
    assert (store.root / "corrupt-round_0002").is_dir()  # kept as evidence, as a truncated one is


def test_a_checkpoint_replaced_by_a_symlink_is_pruned_as_a_link_and_its_target_kept(tmp_path, caplog):
    store = CheckpointStore(tmp_path / "run", keep=2)
    save(store, 1)
    save(store, 2)
    store.flush()
    moved = tmp_path / "elsewhere" / "round_0000"
    moved.parent.mkdir()
    (store.root / "round_0000").rename(moved)
    (store.root / "round_0000").symlink_to(moved)
    assert store.load_latest().next_round == 2
    save(store, 3)  # prunes round_0000: was OSError "Cannot call rmtree on a symbolic link", naming no path
    store.flush()
    assert [p.name for p in store.complete()] == ["round_0002", "round_0001"]
    assert not (store.root / "round_0000").is_symlink() and (moved / "MANIFEST.json").is_file()
    assert f"checkpoint {store.root / 'round_0000'} is a symbolic link to {moved}: removed the link" in caplog.text
