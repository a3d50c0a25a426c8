import pytest

from harness.data.demo import demo_samples
from harness.data.mixture import build_mixture
from harness.data.partition import partition
from harness.data.samples import DataError


def mixture(n=100, ratio=0.3, seed=0):
    ok, red = demo_samples(200, 200, seed=1)
    return build_mixture(ok, red, n, ratio, seed)


def test_mixture_has_the_requested_harmful_share():
    samples = mixture(100, 0.3)
    assert len(samples) == 100
    assert sum(s.is_harmful for s in samples) == 30


def test_mixture_too_small_source_is_a_clear_error():
    ok, red = demo_samples(10, 2)
    with pytest.raises(DataError, match="needs 30 red"):
        build_mixture(ok, red, 100, 0.3, 0)


def test_iid_sizes_and_stratified_harmful_share():
    samples = mixture(100, 0.3)
    parts = partition(samples, 7, "iid", 0.5, seed=0)
    assert sorted(i for p in parts for i in p) == list(range(100))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    for p in parts:
        red = sum(samples[i].is_harmful for i in p)
        assert abs(red - 0.3 * len(p)) <= 1.0


def test_partition_is_deterministic_per_seed():
    samples = mixture()
    for method in ("iid", "dirichlet"):
        assert partition(samples, 5, method, 0.5, seed=3) == partition(samples, 5, method, 0.5, seed=3)
        assert partition(samples, 5, method, 0.5, seed=3) != partition(samples, 5, method, 0.5, seed=4)


def test_dirichlet_covers_everything_no_empty_client_and_is_skewed():
    samples = mixture(100, 0.3)
    parts = partition(samples, 10, "dirichlet", 0.1, seed=0)
    assert sorted(i for p in parts for i in p) == list(range(100))
    assert all(parts)
    # small alpha: most clients see few categories
    cats_per_client = [len({samples[i].category for i in p}) for p in parts]
    assert min(cats_per_client) < len({s.category for s in samples})


def test_more_clients_than_samples_is_an_error():
    with pytest.raises(ValueError, match="cannot split"):
        partition(mixture(10, 0.3), 11, "iid", 0.5, 0)
