"""The SQuARe-shaped test files (tests/square_shaped.py): the real schema and sizes, and the harness reads them."""

import json
from collections import Counter

from harness.data.normalize import prompt_digest
from harness.data.sources import load_square
from tests.square_shaped import KEYS, SPLITS, SQUARE_SIZES, write_square_files


def _rows(report, split):
    return json.loads(open(report[split]["path"], encoding="utf-8").read())


def test_schema_is_the_real_files(shared_data, tmp_path):
    real = json.loads((shared_data / "square" / "response_test_ood.json").read_text(encoding="utf-8"))
    report = write_square_files(tmp_path, seed=0, scale=0.01)
    for split in SPLITS:
        for row in _rows(report, split):
            assert tuple(row) == tuple(real[0]) == KEYS
            assert all(isinstance(row[k], str) and row[k].strip() for k in ("question", "question_en", "response",
                                                                             "response_en", "question_category"))
            assert type(row["acceptable?"]) is int and row["acceptable?"] in (0, 1)
            assert row["category"] and all(isinstance(c, str) for c in row["category"])
            assert not row["question"].isascii() and not row["response"].isascii()  # the Korean fields


def test_full_size_counts_and_question_layout(tmp_path):
    report = write_square_files(tmp_path)
    seen: dict[str, str] = {}
    for split in SPLITS:
        rows = _rows(report, split)
        n_resp, n_acc, n_q = SQUARE_SIZES[split]
        per_question = Counter(r["question_en"] for r in rows)
        assert len(rows) == report[split]["responses"] == n_resp
        assert sum(r["acceptable?"] for r in rows) == n_acc
        assert len(per_question) == len({r["question"] for r in rows}) == n_q
        assert max(per_question.values()) > 1 and 1.7 < n_resp / n_q < 1.9  # questions repeat across responses
        for q in per_question:  # ...but never across files, also after the harness's normalisation
            assert seen.setdefault(prompt_digest(q), split) == split
    assert sum(r["responses"] for r in report.values()) == 88_177


def test_seeded_and_scaled(tmp_path):
    a = write_square_files(tmp_path / "a", seed=1, scale=0.002)
    b = write_square_files(tmp_path / "b", seed=1, scale=0.002)
    c = write_square_files(tmp_path / "c", seed=2, scale=0.002)
    assert [_rows(a, s) for s in SPLITS] == [_rows(b, s) for s in SPLITS] != [_rows(c, s) for s in SPLITS]
    assert a["train"]["responses"] == round(64_225 * 0.002) and a["train"]["questions"] == round(35_754 * 0.002)


def test_load_square_reads_the_three_response_files(shared_data, tmp_path):
    report = write_square_files(tmp_path, scale=0.01)
    good, bad = load_square(str(tmp_path))
    assert len(good) == sum(r["acceptable"] for r in report.values())
    assert len(bad) == sum(r["unacceptable"] for r in report.values())
    assert {s.source for s in good + bad} == {str(tmp_path / f"response_{s}.json") for s in SPLITS}
    # a directory with only the OOD file (what shared/data/square holds) still reads it alone
    good, bad = load_square(str(shared_data / "square"))
    assert (len(good), len(bad)) == (215, 265)
