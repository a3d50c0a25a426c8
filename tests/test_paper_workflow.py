"""docs/paper.md's workflow, run verbatim from the page at the paper's counts (#38 item 1): SQuARe-shaped files of
the real schema and size, the tiny random model as policy and guard, only the counts that set its length cut."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.cai.dataset import RECORDS_FILE
from harness.data.normalize import prompt_digest
from tests.square_shaped import write_square_files

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "paper.md"
TABLE1_ROWS = ("pretrained", "fl-fedavg", "fl+oracle-fedavg", "fl+filter-fedavg", "fl+cai-fedavg",
               "fl+filter+cai-fedavg", "fl-scaffold", "fl+filter+cai-scaffold")
PAPER_COUNTS = {"federation.num_clients": "20", "federation.clients_per_round": "5", "federation.local_steps": "25",
                "federation.batch_size": "16", "model.max_length": "512", "data.num_samples": "20000",
                "data.harmful_ratio": "0.3"}


def workflow_script() -> str:
    """The fenced bash block under the page's "The workflow" heading, as a reader copies it."""
    section = PAGE.read_text(encoding="utf-8").split("\n## The workflow\n", 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```", 1)[0] + "\n"


def ci_settings(work: Path, square: Path) -> dict[str, str]:
    """The page's "CI test" table: the variables the CI run exports."""
    return {"SQUARE": str(square), "MODEL": "tiny-random", "GUARD_BASE": "tiny-random", "WORK": str(work),
            "SEEDS": "1", "ROUNDS": "2", "GUARD_EPOCHS": "1", "GUARD_STEPS": "5", "CAI_PROMPTS": "64",
            "CAI_OPTS": f"pairs={work}/splits/cai.jsonl", "ROWS": " ".join(f"--row {r}" for r in TABLE1_ROWS),
            "EXTRA": "--set plugins.eval_limit=8 --set plugins.filter_options.force=true"}


def test_the_page_lists_every_step_and_the_ci_table_names_every_variable_it_sets():
    script = workflow_script()
    for step in ("harness data split", "harness filter train", "harness cai build", "harness suite paper-table1",
                 "harness suite paper-table2"):
        assert step in script
    table = PAGE.read_text(encoding="utf-8").split("## The CI test", 1)[1]
    for name in ci_settings(Path("w"), Path("s")):
        assert f"`{name}`" in table and f"{name}=${{{name}:-" in script  # documented, and overridable


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("paper")
    report = write_square_files(root / "square")
    work = root / "work"
    harness_bin = shutil.which("harness") or str(Path(sys.executable).parent / "harness")
    env = {**os.environ, **ci_settings(work, root / "square"), "HARNESS_DATA": str(shared_data),
           "PATH": f"{Path(harness_bin).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    done = subprocess.run(["bash", "-eu", "-c", workflow_script()], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    return work, report, done.stdout


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_splits_are_the_papers_sizes_disjoint_and_the_clients_at_30_percent_red(paper_run):
    work, report, _ = paper_run
    assert sum(r["responses"] for r in report.values()) == 88_177  # SQuARe's train + valid + test, all read
    splits = {name: _rows(work / "splits" / f"{name}.jsonl") for name in ("clients", "guard", "cai")}
    assert {name: len(rows) for name, rows in splits.items()} == {"clients": 20_000, "guard": 20_000, "cai": 20_000}
    assert sum(r["is_harmful"] for r in splits["clients"]) == 6_000
    prompts = {name: {prompt_digest(r["prompt"]) for r in rows} for name, rows in splits.items()}
    assert not prompts["clients"] & prompts["guard"] and not prompts["clients"] & prompts["cai"]
    assert not prompts["guard"] & prompts["cai"]


def test_the_guard_and_the_cai_build_ran_on_their_own_splits(paper_run):
    work, _, out = paper_run
    card = json.loads((work / "guard" / "guard.json").read_text())
    assert card["base"] == "tiny-random" and card["held_out"]["n"] == 100  # measured on its held-out split
    records = list((work / "cai").glob(f"*/{RECORDS_FILE}"))
    assert len(records) == 1 and len(records[0].read_text().splitlines()) == 64  # 64 distinct S-CAI20K prompts


def _board(path: Path) -> dict[str, dict]:
    with (path / "leaderboard.csv").open(newline="") as fh:
        return {(row["method"], row["setting"]): row for row in csv.DictReader(fh)}


def test_both_boards_hold_their_rows_from_runs_at_the_papers_counts(paper_run):
    work, _, _ = paper_run
    table1, table2 = _board(work / "boards" / "table1"), _board(work / "boards" / "table2")
    assert len(table1) == len(TABLE1_ROWS) and len(table2) == 2
    assert all(row["Refusal discrimination mean"] for row in table1.values())  # the headline is filled on every row
    (pretrained,) = [setting for method, setting in table1 if "pretrained" in method]
    assert "_options" not in pretrained  # it runs no filter or aligner: their --set options are not its setting
    assert (work / "boards" / "table1" / "claims.md").is_file()
    client = MlflowClient(f"sqlite:///{work / 'runs' / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.info.run_name.startswith("paper-table")]
    trained = [r for r in runs if "pretrained" not in r.info.run_name]
    assert len(trained) == len(TABLE1_ROWS) - 1 + 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in trained:
        params = run.data.params
        assert {k: params[k] for k in PAPER_COUNTS} == PAPER_COUNTS, run.info.run_name
        assert params["federation.rounds"] == "2" and params["model.name"] == "tiny-random"
        overlaps = {k: v for k, v in run.data.metrics.items() if k.startswith("data/overlap_")}
        assert "data/overlap_client_eval" in overlaps and set(overlaps.values()) == {0.0}, (run.info.run_name, overlaps)
