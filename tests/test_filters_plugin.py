"""The lg3 plugin through the hook: caching across rounds, threshold, malformed input, a real run."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data.demo import demo_samples
from harness.guard.samples import FilterInputError
from harness.types import ChatSample
from harness.default_plugins.filters.lg3 import LlamaGuardFilter


@pytest.fixture(scope="module")
def samples():
    benign, harmful = demo_samples(6, 4, seed=3)
    return benign + harmful


@pytest.fixture(scope="module")
def lg3(samples):
    plugin = LlamaGuardFilter(model="tiny-random", max_length=4096, batch_size=4)
    calls = []
    score = plugin.scorer.score
    plugin.scorer.score = lambda batch: calls.append(len(batch)) or score(batch)
    plugin.calls = calls
    return plugin


def test_each_sample_is_scored_once_per_run_however_often_its_client_is_sampled(lg3, samples):
    clients = {0: samples[:6], 1: samples[6:]}
    first = {cid: lg3.pre_local_train(client_id=cid, samples=s, server_round=1) for cid, s in clients.items()}
    for server_round in range(2, 13):
        for cid, s in clients.items():
            again = lg3.pre_local_train(client_id=cid, samples=s, server_round=server_round)
            assert again.scores == first[cid].scores and again.keep == first[cid].keep
    assert sum(lg3.calls) == len(samples) and len(lg3.calls) == 2
    assert len(lg3.cache) == len(samples)


def test_the_score_cache_survives_a_checkpoint_and_is_discarded_for_another_guard(lg3, samples, tmp_path):
    lg3.pre_local_train(client_id=0, samples=samples, server_round=1)
    lg3.checkpoint_state(directory=tmp_path)
    assert samples[0].prompt not in (tmp_path / "filter-lg3" / "scores.json").read_text()  # digests, no text
    resumed = LlamaGuardFilter(model="tiny-random", max_length=4096, batch_size=4)
    resumed.scorer.score = lambda batch: pytest.fail("a restored sample was scored again")
    resumed.restore_state(directory=tmp_path)
    again = resumed.pre_local_train(client_id=0, samples=samples, server_round=2)
    assert again.scores == lg3.cache.scores(samples)
    other = LlamaGuardFilter(model="tiny-random", max_length=2048)
    other.restore_state(directory=tmp_path)
    assert len(other.cache) == 0  # scores of another configuration are not reused


def test_runs_sharing_a_scores_directory_score_each_sample_once(samples, tmp_path):
    shared = str(tmp_path / "shared")
    first = LlamaGuardFilter(model="tiny-random", max_length=4096, batch_size=4, shared_scores=shared)
    verdict = first.pre_local_train(client_id=0, samples=samples, server_round=1)
    first.checkpoint_state(directory=tmp_path / "first")
    second = LlamaGuardFilter(model="tiny-random", max_length=4096, batch_size=4, shared_scores=shared)
    second.cache.score_fn = lambda batch: pytest.fail("a sample another run scored was scored again")
    assert second.pre_local_train(client_id=0, samples=samples, server_round=1) == verdict
    assert second._scorer is None  # everything was scored already: the guard never loaded
    other = LlamaGuardFilter(model="tiny-random", max_length=2048, batch_size=4, shared_scores=shared)
    calls = []
    other.cache.score_fn = lambda batch: calls.append(len(batch)) or [0.5] * len(batch)
    other.pre_local_train(client_id=0, samples=samples, server_round=1)
    assert sum(calls) == len(samples)  # another configuration's scores are not reused


def test_an_unchanged_score_cache_is_linked_into_the_next_checkpoint_not_rewritten(samples, tmp_path):
    plugin = LlamaGuardFilter(model="tiny-random", max_length=4096, batch_size=4, force=True)
    config = SimpleNamespace(model=SimpleNamespace(name="tiny-random"))
    plugin.on_run_start(run=SimpleNamespace(run_dir=tmp_path / "run", config=config, heldout=[]))
    plugin.pre_local_train(client_id=0, samples=samples[:6], server_round=1)
    first, second, third = (tmp_path / f"ckpt{i}" for i in range(3))
    plugin.checkpoint_state(directory=first)
    plugin.pre_local_train(client_id=0, samples=samples[:6], server_round=2)  # nothing new to score
    plugin.checkpoint_state(directory=second)
    inode = lambda d: (d / "filter-lg3" / "scores.json").stat().st_ino  # noqa: E731
    assert inode(first) == inode(second)
    plugin.pre_local_train(client_id=1, samples=samples[6:], server_round=2)  # new scores
    plugin.checkpoint_state(directory=third)
    assert inode(third) != inode(first)
    restored = LlamaGuardFilter(model="tiny-random", max_length=4096, batch_size=4)
    restored.restore_state(directory=first)
    assert len(restored.cache) == 6  # the older checkpoint still holds its own scores
    restored.restore_state(directory=third)
    assert len(restored.cache) == len(samples)


def test_a_filter_that_ranks_its_validation_split_at_chance_says_so(tmp_path, caplog):
    benign, harmful = demo_samples(45, 19, seed=5)
    plugin = LlamaGuardFilter(model="tiny-random", force=True)
    config = SimpleNamespace(model=SimpleNamespace(name="tiny-random"))
    plugin.on_run_start(run=SimpleNamespace(run_dir=tmp_path / "run", config=config, heldout=benign + harmful))
    rng = np.random.default_rng(0)
    plugin.cache.score_fn = lambda batch: rng.random(len(batch)).tolist()  # a guard that knows nothing
    with caplog.at_level("WARNING"):
        plugin.pre_local_train(client_id=0, samples=benign[:4], server_round=1)
    assert "no better than chance" in caplog.text and plugin.calibration.at_chance
    record = json.loads((tmp_path / "run" / "filter-lg3" / "calibration.json").read_text())
    assert record["calibration"]["auc"] == plugin.calibration.auc and record["calibration"]["dropped"] > 0


def test_threshold_decides_on_the_unsafe_score(lg3, samples):
    scores = lg3.pre_local_train(client_id=0, samples=samples, server_round=1).scores
    middle = sorted(scores)[len(scores) // 2]
    for threshold, expected in [(0.0, [False] * len(scores)), (1.0, [True] * len(scores)),
                                (middle, [s < middle for s in scores])]:
        lg3.threshold = threshold
        assert lg3.pre_local_train(client_id=0, samples=samples, server_round=2).keep == expected
    assert 0 < sum(s < middle for s in scores) < len(scores)
    lg3.threshold = 0.5
    with pytest.raises(ValueError, match="threshold"):
        LlamaGuardFilter(model="tiny-random", threshold=1.5)


@pytest.mark.parametrize("bad,message", [
    (SimpleNamespace(prompt="q"), "client 7 sample 1: missing response"),
    (ChatSample("q", "   "), "client 7 sample 1: response is empty"),
    (ChatSample("q", 42), "client 7 sample 1: response must be a string, got int"),
    (ChatSample(None, "a"), "client 7 sample 1: prompt must be a string, got NoneType"),
])
def test_malformed_samples_name_the_row(bad, message):
    plugin = LlamaGuardFilter(model="tiny-random")
    with pytest.raises(FilterInputError, match=message):
        plugin.pre_local_train(client_id=7, samples=[ChatSample("q", "fine"), bad], server_round=1)


def test_malformed_training_file_names_the_row(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "q", "response": "a", "is_harmful": true}\n{"prompt": "q", "is_harmful": false}\n')
    result = CliRunner().invoke(main, ["filter", "train", "--filter", "embed-lr", "--data", str(data),
                                       "--out", str(tmp_path / "f")])
    assert result.exit_code == 2
    assert "bad.jsonl row 2: missing field 'response'" in result.output


def test_lg3_filters_a_real_run_with_another_aggregator(tmp_path):
    """A bare base model as guard is refused with the reason (exit 2); force=true runs it and records that."""
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--filter", "lg3", "--filter-model", "tiny-random",
            "--filter-opt", "max_length=4096", "--filter-opt", "threshold=0.45", "--agg", "median",
            "--rounds", "2", "--num-samples", "16", "--set", "plugins.evals=[]", "--output-dir", str(out), "--no-progress"]
    refused = CliRunner().invoke(main, args, catch_exceptions=False)
    assert refused.exit_code == 2
    assert "lg3 refuses guard 'tiny-random': it is a base model, not a guard" in refused.output
    assert "--filter-opt force=true" in refused.output and "nothing was trained" in refused.output
    result = CliRunner().invoke(main, args + ["--filter-opt", "force=true"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "FINISHED" in result.output and "filter=lg3 agg=median" in result.output
    run_dir = next(d for d in (out / "runs").iterdir() if (d / "filter-lg3" / "guard.json").is_file())
    params = (run_dir / "config.yaml").read_text()
    assert "model: tiny-random" in params and "threshold: 0.45" in params and "force: true" in params
    record = json.loads((run_dir / "filter-lg3" / "guard.json").read_text())
    assert record["model"] == "tiny-random" and record["forced"] and not record["default"]
