"""The Flower message contents: exact tensor round trips, the counted bytes, clear errors on bad content."""

from __future__ import annotations

import pytest
import torch
from flwr.app import RecordDict

from harness.adapters import num_bytes
from harness.flower.records import FlowerMessageError, TrainIns, TrainRes, config_from_yaml
from harness.types import ClientUpdate, FitIns
from helpers import smoke_config


def test_train_instruction_round_trips_exactly(tmp_path):
    cfg = smoke_config(tmp_path)
    state = {"b.lora_A": torch.randn(4, 8), "a.lora_B": torch.randn(8, 4)}
    control = {name: torch.randn_like(t) for name, t in state.items()}
    ins = TrainIns(cfg.to_yaml(), 2, 3.5e-4, state, FitIns(tensors=control, config={"mu": 0.01}), cursor=12)
    content = ins.to_content()
    back = TrainIns.from_content(content)
    assert list(back.global_state) == list(state)  # name order is kept
    assert all(torch.equal(back.global_state[n], state[n]) for n in state)
    assert all(torch.equal(back.fit_ins.tensors[n], control[n]) for n in control)
    assert (back.server_round, back.lr, back.fit_ins.config, back.cursor) == (2, 3.5e-4, {"mu": 0.01}, 12)
    assert config_from_yaml(back.config_yaml) == cfg
    payload = sum(len(a.data) for a in content["global"].values())
    assert num_bytes(state) <= payload < num_bytes(state) + 200 * len(state)  # counted bytes + .npy headers


def test_train_reply_round_trips_and_a_skipped_client_has_no_update():
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    update = ClientUpdate(3, 7, state, {"w": torch.ones(2, 3)}, {"loss": 1.25, "steps": 4})
    res = TrainRes(update, {"comm/bytes_up": 48.0, "filter/kept": 7.0}, {"client_id": 3, "kept": 7, "dropped": 0}, 20)
    back = TrainRes.from_content(res.to_content(), client_id=3)
    assert back.update.client_id == 3 and back.update.num_examples == 7
    assert back.update.metrics == {"loss": 1.25, "steps": 4}
    assert torch.equal(back.update.state["w"], state["w"]) and torch.equal(back.update.extra["w"], torch.ones(2, 3))
    assert back.metrics == res.metrics and back.filter_record == res.filter_record and back.cursor == 20
    skipped = TrainRes.from_content(TrainRes(None, {"clients/skipped_empty": 1.0}, {"client_id": 1}, 0).to_content(), 1)
    assert skipped.update is None and skipped.metrics == {"clients/skipped_empty": 1.0}


def test_bad_content_is_named():
    with pytest.raises(FlowerMessageError, match="client 5's train reply has no round_metrics, client"):
        TrainRes.from_content(RecordDict(), client_id=5)
    with pytest.raises(FlowerMessageError, match="JSON-serialisable"):
        TrainIns("x", 1, 0.1, {}, FitIns(config={"bad": object()})).to_content()
