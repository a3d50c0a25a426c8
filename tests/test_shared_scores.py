"""Filter scores shared between runs: keyed by the scorer's files and arithmetic, merged, never torn."""

import json

from harness.guard.shared_scores import SharedScores, files_digest


def test_a_changed_byte_in_the_scorers_files_changes_its_digest(tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "adapter_model.safetensors").write_bytes(b"weights")
    before = files_digest(str(guard))
    assert files_digest(str(guard)) == before
    (guard / "adapter_model.safetensors").write_bytes(b"weightz")
    assert files_digest(str(guard)) != before
    assert files_digest("meta-llama/Llama-Guard-3-1B") != files_digest("meta-llama/Llama-Guard-3-8B")


def test_runs_add_their_scores_and_another_identity_sees_none(tmp_path):
    first, second = SharedScores(tmp_path, "guard a"), SharedScores(tmp_path, "guard a")
    assert first.add({"s1": 0.1, "s2": 0.9}) == 2
    assert second.add({"s2": 0.5, "s3": 0.3}) == 1  # s2 is kept as first scored it
    assert first.load() == {"s1": 0.1, "s2": 0.9, "s3": 0.3}
    assert SharedScores(tmp_path, "guard b").load() == {}
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary file left behind


def test_an_unreadable_scores_file_counts_as_empty_and_is_replaced(tmp_path):
    scores = SharedScores(tmp_path, "guard a")
    scores.path.write_text('{"identity": "guard a", "scores": {"s1": 0.')
    assert scores.load() == {}
    scores.add({"s1": 0.2})
    assert json.loads(scores.path.read_text())["scores"] == {"s1": 0.2}


def test_a_checkpoint_with_nothing_new_scored_leaves_the_file_alone(tmp_path):
    scores = SharedScores(tmp_path, "guard a")
    scores.add({"s1": 0.1})
    scores.path.unlink()
    assert scores.add({"s1": 0.1}) == 0 and not scores.path.exists()  # nothing read or written
    assert scores.add({"s1": 0.1, "s2": 0.2}) == 2  # something new: the file is read, merged and written
