"""One import namespace (issue #18 item 1): the built-in plugins are ``harness.default_plugins``, so a user's own
``plugins/`` folder in the working directory cannot shadow them, and the distribution adds no top-level ``plugins``."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import packages_distributions


def test_distribution_installs_only_the_harness_package():
    assert sorted(name for name, dists in packages_distributions().items() if "fedllm-harness" in dists) == ["harness"]


def test_a_plugins_folder_in_the_working_directory_does_not_shadow_the_built_ins(tmp_path):
    for package in ("plugins", "plugins/aggregators"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "plugins/aggregators/fedavg.py").write_text("raise SystemExit('the user plugins/ shadowed fedavg')\n")
    code = "from harness import registry; print(registry.load_factory('agg', 'fedavg').__module__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "harness.default_plugins.aggregators.fedavg"
