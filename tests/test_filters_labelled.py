"""Balanced labelled sets with a prompt-hash held-out split, and the Table-2 detection metrics."""

import pytest

from harness.guard.labelled import DataSpec, in_test_split, labelled_set
from harness.guard.metrics import detection_report


def test_detection_report_by_hand():
    harmful = [True, True, True, False, False, False, False, True]
    flagged = [True, True, False, True, False, False, False, False]
    r = detection_report(harmful, flagged)
    assert (r.n, r.accuracy, r.precision, r.recall) == (8, 5 / 8, 2 / 3, 2 / 4)
    assert r.hmean == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert detection_report([True, False], [False, False]).hmean == 0.0
    with pytest.raises(ValueError):
        detection_report([True], [True, False])


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
