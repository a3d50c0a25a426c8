"""`harness --help` and `harness plugins` start without the heavy libraries (issue #18 item 2), and the flags
every subcommand shares (item 5): --version, -v after the subcommand, --eval a,b, one error style, typed values."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from harness.cli import COMMANDS, main

HEAVY = ("torch", "peft", "mlflow", "transformers", "matplotlib", "trl", "datasets", "harness.default_plugins",
         "harness.hookspecs")


def imported_by(*args: str) -> list[str]:
    """Heavy modules in sys.modules after running ``harness ARGS`` in a fresh interpreter."""
    code = ("import json, sys\nfrom harness.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps([m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in {HEAVY!r})]), "
            "file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


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
