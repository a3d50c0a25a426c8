"""Which packages the distribution installs, and the folders that hold them (the rest is in pyproject.toml).

One import namespace: the built-in plugins in plugins/ install as ``harness.default_plugins`` (no generic
top-level ``plugins`` module), the board definitions in leaderboards/ as the package data ``harness/boards``.
"""

from setuptools import find_packages, setup

PLUGINS = [f"harness.default_{name}" for name in find_packages(include=["plugins", "plugins.*"])]

setup(
    packages=[*find_packages(include=["harness", "harness.*"]), *PLUGINS, "harness.boards"],
    package_dir={"harness.default_plugins": "plugins", "harness.boards": "leaderboards"},
)
