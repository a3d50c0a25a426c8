"""`harness plugin new` (issue #36 item 6): the skeleton of each kind installs, is listed by `harness plugins`, and its
own test passes: the plugin runs in a smoke job and shows in the summary. Installed with pip into a folder of this
test's (``--target``, on PYTHONPATH), so the venv is left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest
from click.testing import CliRunner

from harness import registry
from harness.cli import main
from harness.cli.plugin import KINDS


def new(tmp_path, name: str, kind: str):
    return CliRunner().invoke(main, ["plugin", "new", name, "--kind", kind, "--dir", str(tmp_path)])


@pytest.mark.parametrize("kind", list(KINDS))
def test_skeleton_files(tmp_path, kind):
    result = new(tmp_path, f"my-{kind}", kind)
    assert result.exit_code == 0, result.output
    root = tmp_path / f"harness-my-{kind}"
    module = f"harness_my_{kind}"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted(
        ["README.md", "pyproject.toml", f"{module}.py", f"tests/test_{module}.py"])
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == f"harness-my-{kind}"
    assert project["project"]["entry-points"][registry.KINDS[kind]] == {f"my-{kind}": f"{module}:My{kind.capitalize()}"}
    for path in (root / f"{module}.py", root / "tests" / f"test_{module}.py"):
        compile(path.read_text(), str(path), "exec")
    assert "$" not in "".join(p.read_text() for p in root.rglob("*.py"))  # every placeholder filled


def test_bad_names_exit_2(tmp_path):
    assert new(tmp_path, "My_Agg", "agg").exit_code == 2
    result = new(tmp_path, "fedavg", "agg")
    assert result.exit_code == 2 and "already installed" in result.output
    assert new(tmp_path, "mine", "agg").exit_code == 0
    result = new(tmp_path, "mine", "agg")
    assert result.exit_code == 2 and "already exists" in result.output


@pytest.mark.slow
def test_generated_plugins_install_list_and_pass_their_tests(tmp_path):
    for kind in KINDS:
        assert new(tmp_path, f"my-{kind}", kind).exit_code == 0
    packages = [str(tmp_path / f"harness-my-{kind}") for kind in KINDS]
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), *packages], check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))

    listed = json.loads(subprocess.run([sys.executable, "-m", "harness", "plugins", "--json"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    mine = {(r["kind"], r["name"], r["package"], r["version"]) for r in listed if r["name"].startswith("my-")}
    assert mine == {(kind, f"my-{kind}", f"harness-my-{kind}", "0.1.0") for kind in KINDS}

    tests = [f"{package}/tests" for package in packages]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], env=env,
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(KINDS)} passed" in done.stdout
