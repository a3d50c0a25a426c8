"""The README's third-party plugin example, pip-installed as its own package into a temp dir, is listed, selected
by name, and does what it says (the global adapter never changes)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from harness.tracking import default_tracking_uri

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "my-harness-plugin"
version = "9.8.7"
"""


def readme_example() -> tuple[str, str]:
    """The README's third-party plugin example: its pyproject entry-point table and its module."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("A third-party package needs nothing else"):]
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    module = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return toml, module


def test_installed_third_party_plugin_is_listed_and_selected(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    toml, module = readme_example()
    (pkg / "pyproject.toml").write_text(HEADER + toml)
    (pkg / "my_plugin.py").write_text(module)
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
    assert row == {"kind": "agg", "name": "keep-global", "target": "my_plugin:KeepGlobal",
                   "package": "my-harness-plugin", "version": "9.8.7", "ambiguous": False}

    out = tmp_path / "out"
    done = subprocess.run(harness + ["run", "--preset", "smoke", "--agg", "keep-global", "--no-progress",
                                     "--output-dir", str(out)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(default_tracking_uri(out))
    (run,) = client.search_runs([client.get_experiment_by_name("fedllm-harness").experiment_id])
    assert run.data.params["plugins.agg"] == "keep-global"
    final = load_file(next(out.glob("runs/*/final_adapter/adapter_model.safetensors")))
    lora_b = [t for name, t in final.items() if "lora_B" in name]
    assert lora_b and all(not t.any() for t in lora_b), "keep-global changed the global adapter (LoRA B starts at 0)"
