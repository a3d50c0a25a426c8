"""`harness data split`: the paper's client / guard / CAI splits share no prompt, have their sizes, and repeat."""

import json

from click.testing import CliRunner

from harness.cli import main
from harness.data.normalize import prompt_digest
from harness.data.overlap import read_digest_file
from harness.data.sources import load_square
from harness.data.splits import split_source


def test_splits_are_disjoint_sized_and_seeded(shared_data):
    good, bad = load_square(str(shared_data / "square"))
    sizes = {"clients": 200, "guard": 100, "cai": 100}
    splits = split_source(good + bad, sizes, seed=0)
    prompts = {name: {prompt_digest(s.prompt) for s in rows} for name, rows in splits.items()}
    assert {name: len(rows) for name, rows in splits.items()} == sizes
    assert not prompts["clients"] & prompts["guard"] and not prompts["clients"] & prompts["cai"]
    assert not prompts["guard"] & prompts["cai"]
    assert split_source(good + bad, sizes, seed=0) == splits and split_source(good + bad, sizes, seed=1) != splits
    short = split_source(good + bad, {"clients": 10_000, "guard": 10, "cai": 0}, seed=0)
    guard = {prompt_digest(s.prompt) for s in short["guard"]}
    assert len(short["guard"]) == 10 and short["cai"] == []  # a source that runs out: clients get every other prompt
    assert len(short["clients"]) == sum(prompt_digest(s.prompt) not in guard for s in good + bad)

def test_cli_writes_files_runs_and_guards_can_use(shared_data, tmp_path):
    out = tmp_path / "splits"
    result = CliRunner().invoke(main, ["data", "split", "--data", f"square={shared_data / 'square'}", "--size", "clients=60",
                                       "--size", "guard=30", "--size", "cai=30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "clients.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and {"prompt", "response", "is_harmful", "category"} <= set(rows[0])
    assert read_digest_file(out / "guard.sha256") == {prompt_digest(json.loads(x)["prompt"])
                                                      for x in (out / "guard.jsonl").read_text().splitlines()}
    assert [s["samples"] for s in json.loads((out / "manifest.json").read_text())["splits"]] == [60, 30, 30]
    bad = CliRunner().invoke(main, ["data", "split", "--data", "demo", "--size", "judge=3", "--out", str(out)])
    assert bad.exit_code == 2 and "expected ROLE=N with ROLE one of clients, guard, cai" in bad.output


def test_a_red_share_makes_that_split_exactly_that_mix_and_keeps_the_others_disjoint(tmp_path):
    from tests.square_shaped import write_square_files

    write_square_files(tmp_path / "square", scale=0.05)  # 52 % red, as SQuARe's own files
    good, bad = load_square(str(tmp_path / "square"))
    sizes = {"clients": 1000, "guard": 500, "cai": 500}
    splits = split_source(good + bad, sizes, seed=0, red_shares={"clients": 0.3})
    assert {name: len(rows) for name, rows in splits.items()} == sizes
    assert sum(s.is_harmful for s in splits["clients"]) == 300  # the paper's client mix, exactly
    assert 0.4 < sum(s.is_harmful for s in splits["guard"]) / 500 < 0.65  # the source's own mix
    prompts = {name: {prompt_digest(s.prompt) for s in rows} for name, rows in splits.items()}
    assert not prompts["clients"] & prompts["guard"] and not prompts["clients"] & prompts["cai"]
    assert not prompts["guard"] & prompts["cai"]
    # without red shares the split is the one before red shares existed
    assert split_source(good + bad, sizes, seed=0, red_shares={}) == split_source(good + bad, sizes, seed=0)
    out = tmp_path / "splits"
    args = ["data", "split", "--data", f"square={tmp_path / 'square'}", "--size", "clients=1000", "--size", "guard=500",
            "--size", "cai=500", "--red-share", "clients=0.3", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["red_shares"] == {"clients": 0.3} and manifest["splits"][0]["red"] == 300
    bad_share = CliRunner().invoke(main, args[:-2] + ["--red-share", "clients=1.5", "--out", str(out)])
    assert bad_share.exit_code == 2 and "expected ROLE=F" in bad_share.output
