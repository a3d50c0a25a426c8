"""`make run`, the README's first command, runs the project's main command (issue #39)."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN = ["harness", "run", "--filter", "lg3", "--agg", "scaffold", "--align", "cai50"]


def recipe(target: str) -> list[str]:
    """The command line of a one-line Makefile target, with ``$(BIN)/`` dropped."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n\t([^\n]+)", text, re.M)
    assert match, f"no recipe for {target}"
    return shlex.split(match.group(1).replace("$(BIN)/", ""))


def test_make_run_is_the_main_command():
    assert recipe("run") == MAIN


def test_the_readme_names_the_same_main_command_and_says_so_first():
    readme = (ROOT / "README.md").read_text()
    first = next(line for line in readme.splitlines() if line.startswith("make run"))
    assert "main command" in first and "lg3" in first and "SCAFFOLD" in first and "CAI" in first
    assert " ".join(MAIN) + "     # the main command" in readme


def test_the_quick_demo_stays_available():
    assert recipe("demo-fedavg") == ["harness", "run", "--filter", "none", "--agg", "fedavg", "--align", "none"]
