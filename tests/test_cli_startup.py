"""`harness --help` and `harness plugins` start without the heavy libraries (issue #18 item 2), and the flags
every subcommand shares (item 5): --version, -v after the subcommand, --eval a,b, one error style, typed values.
Every subcommand's --help, and bad names, files and options, answer before torch, transformers or MLflow load, a
misspelt name with a "did you mean" (issue #36 item 2; the timings are in tests/benchmarks/test_bench_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from harness.cli import COMMANDS, main

HEAVY = ("torch", "peft", "mlflow", "transformers", "matplotlib", "pandas", "trl", "datasets",
         "harness.default_plugins")


def fresh(*args: str) -> tuple[int, list[str], str]:
    """``harness ARGS`` in a fresh interpreter: its exit code, the heavy modules it imported, and its stderr."""
    code = ("import json, sys\nfrom harness.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    code = e.code or 0\n"
            f"heavy = [m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in {HEAVY!r})]\n"
            "print(json.dumps([code, heavy]), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    *lines, last = done.stderr.strip().splitlines()
    exit_code, heavy = json.loads(last)
    return exit_code, heavy, "\n".join(lines)


def imported_by(*args: str) -> list[str]:
    """Heavy modules in sys.modules after running ``harness ARGS`` in a fresh interpreter."""
    return fresh(*args)[1]


def every_command() -> list[list[str]]:
    """The argv of every command and subcommand (``["filter", "train"]``)."""
    found = []
    for name in main.list_commands(None):
        cmd = main.get_command(None, name)
        found += [[name]] + [[name, sub] for sub in getattr(cmd, "commands", {})]
    return found


@pytest.mark.parametrize("argv", every_command(), ids=" ".join)
def test_every_help_imports_no_heavy_library(argv):
    assert fresh(*argv, "--help")[:2] == (0, [])


# argv ({tmp}: a fresh directory) -> what its one error line says; each exits 2 before anything heavy loads
MISTAKES = {
    "misspelt-agg": (["run", "--agg", "scafold"], "unknown agg plugin 'scafold' (did you mean 'scaffold'?)"),
    "misspelt-eval": (["run", "--eval", "hhx"], "unknown eval plugin 'hhx' (did you mean 'hhh'?)"),
    "misspelt-preset": (["run", "--preset", "smok"], "(did you mean 'smoke'?)"),
    "misspelt-key": (["run", "--set", "model.nam=x"], "unknown key model.nam (did you mean 'name'?)"),
    "misspelt-model": (["run", "--model", "smollm2-135"], "(did you mean 'smollm2-135m'?)"),
    "misspelt-command": (["lederboard"], "No such command 'lederboard' (did you mean 'leaderboard'?)"),
    "missing-data": (["run", "--data", "/nonexistent.jsonl"], "data file /nonexistent.jsonl does not exist"),
    "missing-model": (["run", "--model", "/nonexistent"], "model path /nonexistent does not exist"),
    "missing-config": (["run", "--config", "/nonexistent.yaml"], "config file /nonexistent.yaml does not exist"),
    "missing-store": (["run", "--resume", "nosuch"], "there is no MLflow store"),
    "eval-misspelt": (["eval", "--model", "tiny-random", "--eval", "advbnch"], "(did you mean 'advbench'?)"),
    "eval-missing-model": (["eval", "--model", "/nonexistent", "--eval", "hhh"], "model path /nonexistent does not"),
    "eval-missing-adapter": (["eval", "--model", "tiny-random", "--eval", "hhh", "--adapter", "{tmp}"],
                             "is not a saved LoRA adapter"),
    "filter-misspelt": (["filter", "train", "--filter", "lg33", "--data", "demo", "--out", "{tmp}/f"],
                        "(did you mean 'lg3'?)"),
    "filter-missing-data": (["filter", "train", "--data", "/nonexistent.jsonl", "--out", "{tmp}/f"], "does not exist"),
    "suite-misspelt": (["suite", "paper-table1", "--eval", "hhx", "--output-dir", "{tmp}"], "(did you mean 'hhh'?)"),
}


@pytest.mark.parametrize("argv, message", MISTAKES.values(), ids=MISTAKES)
def test_bad_input_is_named_before_anything_heavy_loads(tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("run", "eval"):
        argv += ["--output-dir", str(tmp_path / "out")]
    code, heavy, err = fresh(*argv)
    assert (code, heavy) == (2, []), err
    assert message in err and err.count("Error: ") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["--version"], ["run", "--help"]])
def test_listing_commands_import_no_heavy_library(args):
    assert imported_by(*args) == []


def test_lazy_commands_short_help_is_their_help_s_first_paragraph():
    for name, (_, short) in COMMANDS.items():
        cmd = main.get_command(None, name)
        assert cmd.name == name and " ".join(cmd.help.split("\n\n")[0].split()) == short


def test_help_lists_every_command():
    out = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name} " in out for name in [*COMMANDS, "run", "plugins"])


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("harness, version ")


@pytest.mark.parametrize("argv", [["-v", "plugins"], ["plugins", "-v"], ["plugins", "--verbose"]])
def test_verbose_before_or_after_the_subcommand(argv):
    assert CliRunner().invoke(main, argv).exit_code == 0


def test_verbose_after_a_nested_subcommand():
    result = CliRunner().invoke(main, ["filter", "train", "--help"])
    assert result.exit_code == 0 and "--verbose" in result.output


def test_usage_and_data_errors_share_one_style_and_exit_2(tmp_path):
    usage = CliRunner().invoke(main, ["run", "--no-such-flag"])
    data = CliRunner().invoke(main, ["run", "--preset", "smoke", "--data", str(tmp_path / "missing.jsonl"),
                                     "--output-dir", str(tmp_path)])
    bad_set = CliRunner().invoke(main, ["run", "--set", "nokey", "--output-dir", str(tmp_path)])
    for result in (usage, data, bad_set):
        assert result.exit_code == 2, result.output
        assert "\nError: " in "\n" + result.output and "error: " not in result.output


def test_string_field_takes_a_number_as_text(tmp_path):
    from harness.cli.run import resolve_run_config

    cfg = resolve_run_config("smoke", None, ("tracking.run_name=2024", "model.name=01"), ("hhh,advbench", "mtbench"),
                             {}, {})
    assert cfg.tracking.run_name == "2024" and cfg.model.name == "01"
    assert cfg.plugins.evals == ["hhh", "advbench", "mtbench"]


def test_string_field_in_a_config_file_takes_an_integer(tmp_path):
    from harness.config import load_config

    (tmp_path / "c.yaml").write_text("tracking:\n  run_name: 2024\n")
    assert load_config("smoke", tmp_path / "c.yaml").tracking.run_name == "2024"
