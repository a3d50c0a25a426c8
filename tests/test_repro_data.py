"""The reproduction's data: the oracle filter bound, and client data drawn outside every declared set."""

import json

import pytest

from harness.data.normalize import prompt_digest
from harness.data.overlap import DataOverlapError, read_digest_file
from harness.data.shipped import shipped_prompt_sets
from harness.guard.defaults import SMOLLM2_GUARD
from harness.types import ChatSample
from harness.default_plugins.filters.oracle import OracleFilter
from tests.helpers import run_tracked, smoke_config, untracked_engine


def test_oracle_keeps_exactly_the_acceptable_samples():
    samples = [ChatSample("a", "x", True), ChatSample("b", "y", False), ChatSample("c", "z", True)]
    assert OracleFilter().pre_local_train(client_id=0, samples=samples, server_round=1).keep == [False, True, False]
    with pytest.raises(ValueError, match="needs is_harmful labels; client 4's sample 1"):
        OracleFilter().pre_local_train(client_id=4, samples=[samples[0], ChatSample("d", "w")], server_round=1)


@pytest.mark.slow
def test_an_oracle_run_trains_on_no_red_sample(tmp_path):
    summary = run_tracked(smoke_config(tmp_path, **{"plugins.filter": "oracle", "federation.rounds": 1}))
    clients = json.loads(next((tmp_path / "out").rglob("round_001/clients.json")).read_text())
    assert sum(c["dropped"] for c in clients) > 0
    assert summary.final_metrics["filter/precision"] == 1.0 and summary.final_metrics["filter/recall"] == 1.0


def _engine(tmp_path, **overrides):
    cfg = smoke_config(tmp_path, **{"data.source": "hh-rlhf", "data.num_samples": 200, "plugins.filter": "lg3",
                                    "plugins.evals": ["heldout-nll"], **overrides})
    engine = untracked_engine(cfg)
    engine.setup()
    return engine


def test_exclude_shipped_draws_the_same_clients_for_every_row_outside_shipped_sets(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(shared_data))  # data.source hh-rlhf reads the local copy
    guard = read_digest_file(SMOLLM2_GUARD / "train_prompts.sha256")
    plain = _engine(tmp_path / "plain")
    with pytest.raises(DataOverlapError, match="guard set 'lg3 guard smollm2-135m-lg3'"):
        plain.check_data(plain.run_info())
    kept = _engine(tmp_path / "kept", **{"data.exclude_shipped": True})
    shipped = frozenset().union(*(s.digests for s in shipped_prompt_sets()))
    drawn = {prompt_digest(s.prompt) for s in kept.samples + kept.heldout}
    assert guard <= shipped and not drawn & shipped
    assert len(kept.samples) == 200 and sum(bool(s.is_harmful) for s in kept.samples) == 60  # 30 % red still
    assert kept.check_data(kept.run_info())["data/overlap_guard_client"] == 0
    unfiltered = _engine(tmp_path / "none", **{"data.exclude_shipped": True, "plugins.filter": "none"})
    assert unfiltered.samples == kept.samples and unfiltered.heldout == kept.heldout  # rows compare on one data set
