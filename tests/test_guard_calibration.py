"""threshold=auto: the filter's threshold is calibrated on the run's labelled validation split."""

import json

import numpy as np
import pytest

from harness.guard.calibration import MIN_PER_CLASS, calibrate_threshold, roc_auc
from tests.helpers import FailInRound, run_tracked, smoke_config


def test_calibration_picks_the_best_f1_threshold():
    scores = [0.44, 0.55, 0.58, 0.60, 0.61, 0.64, 0.65, 0.66, 0.66, 0.69]
    unsafe = [False, False, False, False, False, True, False, True, True, True]
    cal = calibrate_threshold(scores, unsafe)
    # t=0.64 flags 5 (4 unsafe): P 0.8, R 1.0, F1 0.889 -- the best; 0.5 would flag 9 of 10 (F1 0.615)
    assert cal.threshold == 0.64 and cal.recall == 1.0 and cal.precision == pytest.approx(0.8)
    assert cal.f1 == pytest.approx(2 * 0.8 / 1.8)
    assert calibrate_threshold([0.1, 0.9] * 4, [False, True] * 4).threshold == 0.9  # separable: F1 1 at 0.9


def test_auc_is_the_share_of_unsafe_safe_pairs_ranked_right_ties_counting_half():
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.9])
    unsafe = np.array([False, True, False, False, True])
    # unsafe 0.4 beats 0.1, ties 0.4, loses to 0.8; unsafe 0.9 beats all three: (1 + 0.5 + 0 + 3) / 6
    assert roc_auc(scores, unsafe) == pytest.approx(4.5 / 6)


def test_a_guard_that_ranks_at_chance_is_flagged_with_the_share_its_threshold_drops():
    rng = np.random.default_rng(1)
    unsafe = (rng.random(64) < 0.3).tolist()
    chance = calibrate_threshold(rng.random(64).tolist(), unsafe)
    # F1 alone picks a threshold that drops most of the split, red or not (flagging all scores 2b / (1 + b))
    assert chance.at_chance and chance.auc_low < 0.5 < chance.auc_high and chance.dropped > 0.8
    informative = calibrate_threshold([s + 0.5 * u for s, u in zip(rng.random(64), unsafe)], unsafe)
    assert not informative.at_chance and informative.auc > 0.8 and informative.dropped < 0.5


def test_too_few_validation_samples_of_a_class_leave_the_default():
    assert calibrate_threshold([0.9] * (MIN_PER_CLASS - 1) + [0.1] * 10, [True] * (MIN_PER_CLASS - 1) + [False] * 10) is None


@pytest.mark.slow
def test_lg3_on_the_templated_smoke_data_keeps_safe_samples_once_calibrated(tmp_path):
    """At 0.5 the shipped guard drops (almost) every templated demo sample; calibrated, clients keep data."""
    cfg = smoke_config(tmp_path, **{"plugins.filter": "lg3", "federation.rounds": 1, "data.heldout_samples": 24})
    run_tracked(cfg)
    record = json.loads((tmp_path / "out" / "runs" / "test-run" / "filter-lg3" / "calibration.json").read_text())
    assert record["calibration"] is not None and record["threshold"] > 0.5
    clients = json.loads(next((tmp_path / "out").rglob("round_001/clients.json")).read_text())
    assert sum(c["kept"] for c in clients) > 0 and sum(c["dropped"] for c in clients) > 0


@pytest.mark.slow
def test_a_resumed_run_keeps_its_calibrated_threshold_and_ends_like_an_uninterrupted_one(tmp_path):
    def adapter(cfg) -> bytes:
        return (tmp_path / cfg / "out" / "runs" / "test-run" / "final_adapter" / "adapter_model.safetensors").read_bytes()

    settings = {"plugins.filter": "embed-lr", "data.heldout_samples": 24}
    run_tracked(smoke_config(tmp_path / "whole", **settings))
    crashed = smoke_config(tmp_path / "resumed", **settings)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_tracked(crashed, FailInRound(2))
    saved = tmp_path / "resumed" / "out" / "runs" / "test-run" / "checkpoints" / "round_0001" / "plugins" / "filter-embed-lr"
    calibrated = json.loads((saved / "calibration.json").read_text())
    assert calibrated["calibration"] is not None
    summary = run_tracked(crashed, resume=True)
    assert summary.status == "FINISHED" and adapter("resumed") == adapter("whole")
    live = tmp_path / "resumed" / "out" / "runs" / "test-run" / "filter-embed-lr" / "calibration.json"
    assert json.loads(live.read_text()) == calibrated
