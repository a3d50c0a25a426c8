"""Which packages the distribution installs, and the folders that hold them (the rest is in pyproject.toml).

The board definitions in leaderboards/ install as the package data ``harness/boards``.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["harness*", "plugins*"]), "harness.boards"],
    package_dir={"harness.boards": "leaderboards"},
)
