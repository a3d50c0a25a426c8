"""A throw-away third-party package, pip-installed into a temp dir, is found and selected by name."""

import json
import os
import subprocess
import sys
import textwrap

from mlflow.tracking import MlflowClient

from harness.tracking import default_tracking_uri

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "harness-thirdparty-demo"
version = "9.8.7"

[project.entry-points."fedllm_harness.aggregators"]
keep-global = "thirdparty_demo:KeepGlobal"
"""

MODULE = '''
from harness.hookspecs import hookimpl
from harness.types import AggregateResult


class KeepGlobal:
    """Ignores every client: the global adapter never changes."""

    @hookimpl
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        return AggregateResult(state=dict(global_state), metrics={"thirdparty_marker": 42.0})
'''


def test_installed_third_party_plugin_is_listed_and_selected(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (pkg / "thirdparty_demo.py").write_text(MODULE)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(pkg)],
        check=True,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])))
    harness = [sys.executable, "-m", "harness"]

    listed = json.loads(subprocess.run(harness + ["plugins", "--json"], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    row = next(r for r in listed if r["name"] == "keep-global")
    assert row == {"kind": "agg", "name": "keep-global", "target": "thirdparty_demo:KeepGlobal",
                   "package": "harness-thirdparty-demo", "version": "9.8.7", "ambiguous": False}

    out = tmp_path / "out"
    done = subprocess.run(harness + ["run", "--preset", "smoke", "--agg", "keep-global", "--no-progress",
                                     "--output-dir", str(out)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.data.params["plugins.agg"] == "keep-global"
    assert run.data.metrics["agg/thirdparty_marker"] == 42.0
