"""Balanced labelled sets with a prompt-hash held-out split, and the Table-2 detection metrics."""

import re

import pytest

from harness.guard.labelled import DataSpec, in_test_split, labelled_set
from harness.cli.filter import detection_metrics, format_table
from harness.guard.metrics import detection_auc, detection_intervals, detection_report
from harness.leaderboard.stats import wilson


def test_detection_report_by_hand():
    harmful = [True, True, True, False, False, False, False, True]
    flagged = [True, True, False, True, False, False, False, False]
    r = detection_report(harmful, flagged)
    assert (r.n, r.accuracy, r.precision, r.recall) == (8, 5 / 8, 2 / 3, 2 / 4)
    assert r.hmean == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert detection_report([True, False], [False, False]).hmean == 0.0
    with pytest.raises(ValueError):
        detection_report([True], [True, False])


def test_table2_intervals_and_auc_by_hand():
    harmful = [True, True, True, False, False, False, False, True]
    flagged = [True, True, False, True, False, False, False, False]
    scores = [0.9, 0.8, 0.3, 0.7, 0.1, 0.2, 0.3, 0.4]
    # unsafe above safe in 13 of 16 pairs, one tie (0.3 vs 0.3) counts half: 13.5 / 16
    assert detection_auc(harmful, scores) == pytest.approx(13.5 / 16)
    assert detection_auc([True, True], [0.1, 0.2]) is None
    found = detection_intervals(harmful, flagged, scores)
    assert found["accuracy"] == wilson(5, 8) and found["precision"] == wilson(2, 3) and found["recall"] == wilson(2, 4)
    hmean = detection_report(harmful, flagged).hmean
    assert found["hmean"].low <= hmean <= found["hmean"].high and found["hmean"].method == "bootstrap"
    assert found["roc_auc"].low <= 13.5 / 16 <= found["roc_auc"].high
    assert "precision" not in detection_intervals([True, False], [False, False])  # nothing flagged: no denominator
    metrics = detection_metrics(harmful, flagged, scores)
    assert metrics["roc_auc"] == pytest.approx(13.5 / 16) and metrics["recall_low"] == wilson(2, 4).low
    table = format_table([("guard", metrics), ("rule", detection_metrics(harmful, flagged, None))])
    assert "84.4" in table.splitlines()[1] and table.splitlines()[2].split()[-2] == "n/a"
    assert "roc_auc [" in table and re.search(r"^rule +accuracy \[", table, re.M)


def test_splits_are_balanced_and_share_no_prompt(shared_data):
    specs = [DataSpec.parse(f"square={shared_data / 'square'}"),
             DataSpec.parse(f"hh-rlhf={shared_data / 'hh_rlhf' / 'harmless-base'}")]
    train = labelled_set(specs, "train", held_out=0.2)
    test = labelled_set(specs, "test", held_out=0.2)
    for split in (train, test):
        assert sum(s.is_harmful for s in split) * 2 == len(split)
    assert {s.prompt for s in train}.isdisjoint({s.prompt for s in test})
    assert all(in_test_split(s, 0.2) for s in test) and not any(in_test_split(s, 0.2) for s in train)
    assert 0.1 < len(test) / (len(train) + len(test)) < 0.3
    capped = labelled_set(specs, "test", held_out=0.2, max_per_class=25, seed=1)
    assert len(capped) == 50 and capped == labelled_set(specs, "test", held_out=0.2, max_per_class=25, seed=1)


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="not SOURCE or SOURCE=PATH"):
        DataSpec.parse("square=")
    with pytest.raises(ValueError, match="split must be"):
        labelled_set([DataSpec("demo")], "valid")
