"""Issue #19 items 8 and 10 (data files): non-UTF-8 data and config files, rows nested too deeply, .jsonl.gz data
files, and oversized rows or fields each give a clear error naming the file and the row; the CLI exits 2."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.config import ConfigError, read_yaml
from harness.data.samples import MAX_FIELD_CHARS, DataError
from harness.data.sources import load_labelled, load_rows_file, load_square
from harness.jsonl import MAX_ROW_BYTES, read_jsonl

GOOD = {"prompt": "q", "response": "a", "is_harmful": False}
BAD = {"prompt": "how to hurt", "response": "like this", "is_harmful": True}


def run_cli(out, *extra: str):
    args = ["run", "--preset", "smoke", "--rounds", "1", "--set", "plugins.evals=[]", "--output-dir", str(out),
            "--no-progress", *extra]
    return CliRunner().invoke(main, args)


def jsonl_bytes(rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def test_non_utf8_jsonl_names_file_and_row(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(jsonl_bytes([GOOD, GOOD, '{"prompt": "caf\xe9", "response": "a", "is_harmful": false}'
                                  .encode("latin-1")]))
    with pytest.raises(DataError, match=r"latin1.jsonl row 3: not UTF-8 text \(byte 15: invalid continuation byte\)"):
        load_rows_file(path)
    result = run_cli(tmp_path / "out", "--data", str(path))
    assert result.exit_code == 2 and "latin1.jsonl row 3: not UTF-8 text" in result.output
    assert not (tmp_path / "out").exists()


def test_non_utf8_json_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'[\n{"prompt": "q", "response": "a", "is_harmful": false},\n{"prompt": "caf\xe9"}]')
    with pytest.raises(DataError, match=r"latin1.json: not UTF-8 text \(line 3, byte \d+"):
        load_rows_file(path)
    square = tmp_path / "response_test_ood.json"
    square.write_bytes(b'[{"acceptable?": 1, "question_en": "\xff"}]')
    with pytest.raises(DataError, match=r"response_test_ood.json: not UTF-8 text \(line 1"):
        load_square(str(tmp_path))


def test_non_utf8_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"federation:\n  rounds: 2\nrun_name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"config file .*run.yaml is not UTF-8 text"):
        read_yaml(path)
    result = run_cli(tmp_path / "out", "--config", str(path))
    assert result.exit_code == 2 and "is not UTF-8 text" in result.output


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_row_nested_100k_deep_is_a_clear_error(tmp_path, suffix):
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / f"deep{suffix}"
    if suffix == ".jsonl":
        path.write_text(json.dumps(GOOD) + "\n" + '{"prompt": ' + deep + "}\n")
        expected = r"deep.jsonl row 2: JSON nested too deeply to read"
    else:
        path.write_text("[" + json.dumps(GOOD) + ", " + deep + "]")
        expected = r"deep.json: JSON nested too deeply to read"
    with pytest.raises(DataError, match=expected):
        load_rows_file(path)
    result = run_cli(tmp_path / "out", "--data", str(path))
    assert result.exit_code == 2 and "nested too deeply" in result.output, result.output


def test_a_jsonl_gz_data_file_is_read_as_gzipped_json_lines(tmp_path):
    path = tmp_path / "clients.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(jsonl_bytes([GOOD, BAD, GOOD]))
    good, bad = load_rows_file(path)
    assert (len(good), len(bad)) == (2, 1)
    assert load_labelled(str(path), None, 0, 0) == (good, bad)
    upper = tmp_path / "CLIENTS.JSONL.GZ"
    upper.write_bytes(path.read_bytes())
    assert len(load_rows_file(upper)[0]) == 2
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(path.read_bytes()[:-12])  # truncated
    with pytest.raises(DataError, match=r"broken.jsonl.gz row \d+: not a readable gzip file"):
        load_rows_file(broken)
    missing = tmp_path / "missing.jsonl.gz"
    with pytest.raises(DataError, match=r"data file .*missing.jsonl.gz does not exist"):
        load_labelled(str(missing), None, 0, 0)


def test_a_jsonl_gz_data_file_trains(tmp_path):
    path = tmp_path / "clients.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(jsonl_bytes([GOOD] * 70 + [BAD] * 30))
    result = run_cli(tmp_path / "out", "--data", str(path))
    assert result.exit_code == 0, result.output


def test_an_oversized_field_or_row_is_refused_naming_file_and_row(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD | {"response": "x" * (MAX_FIELD_CHARS + 1)}) + "\n")
    with pytest.raises(DataError, match=r"big.jsonl row 2: field 'response' has 1,000,001 characters; the limit is "
                                        r"1,000,000"):
        load_rows_file(path)
    at_limit = tmp_path / "ok.jsonl"
    at_limit.write_text(json.dumps(GOOD | {"prompt": "x" * MAX_FIELD_CHARS}) + "\n")
    assert len(load_rows_file(at_limit)[0]) == 1
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD | {"category": "c" * MAX_ROW_BYTES}) + "\n")
    with pytest.raises(DataError, match=r"huge.jsonl row 2: longer than 4 MiB \(the row limit\)"):
        read_jsonl(huge, DataError)
    result = run_cli(tmp_path / "out", "--data", str(path))
    assert result.exit_code == 2 and "big.jsonl row 2: field 'response'" in result.output
