"""`harness plugin new`: write a plugin package skeleton (pyproject with the entry point, the plugin, a README and a
test that runs it on the smoke preset), from the templates in harness/templates/plugin/."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

import click

import harness
from harness import registry as plugin_registry
from harness.cli.common import fail

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "plugin"
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Kind:
    """How a kind is selected, and what its generated test looks for in the run's summary."""

    flag: str
    args: str  # the selection, as Python list items
    line: str  # the summary line the test reads
    expect: str  # what that line must contain


KINDS: dict[str, Kind] = {
    "filter": Kind("--filter", '"--filter", "$name"', "filter $name", "client samples"),
    "agg": Kind("--agg", '"--agg", "$name"', "aggregator $name", "clients 2"),
    "align": Kind("--align", '"--align", "$name"', "aligner $name", "norm"),
    "eval": Kind("--eval", '"--eval", "+$name"', "$name prompts answered", " -> "),
    "attack": Kind("--attack", '"--attack", "$name", "--malicious-clients", "1", "--clients-per-round", "4"',
                   "attack $name", "malicious_updates 1"),
}


def render(name: str, kind: str) -> dict[str, str]:
    """The skeleton's files (relative path -> text) for plugin ``name`` of ``kind``."""
    module = "harness_" + name.replace("-", "_")
    k = KINDS[kind]
    values = {"name": name, "kind": kind, "dist": f"harness-{name}", "module": module,
              "cls": "".join(part.capitalize() for part in name.split("-")), "metric": name.replace("-", "_"),
              "group": plugin_registry.KINDS[kind], "flag": k.flag, "harness_version": harness.__version__}
    values |= {key: Template(getattr(k, key)).substitute(values) for key in ("args", "line", "expect")}
    values["example"] = "harness run --preset smoke " + " ".join(json.loads(f"[{values['args']}]"))

    def fill(template: str) -> str:
        return Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)

    return {"pyproject.toml": fill("pyproject.toml.tmpl"), "README.md": fill("README.md.tmpl"),
            f"{module}.py": fill(f"{kind}.py.tmpl"), f"tests/test_{module}.py": fill("test.py.tmpl")}


@click.group("plugin")
def command() -> None:
    """Write a new plugin package (`harness plugins` lists the installed ones)."""


@command.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(list(KINDS)), required=True, help="What the plugin is.")
@click.option("--dir", "parent", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to create the package folder harness-NAME.")
def new(name: str, kind: str, parent: str) -> None:
    """Write the package harness-NAME: pyproject.toml (the entry point), the plugin module, a README and a test
    that runs the plugin on the smoke preset. Then: pip install -e harness-NAME; pytest harness-NAME."""
    if not NAME.match(name):
        fail(f"plugin name {name!r}: use lower-case letters, digits and single dashes, starting with a letter")
    if name in plugin_registry.installed_names(kind):
        fail(f"{kind} plugin {name!r} is already installed (harness plugins lists it): choose another name")
    root = Path(parent) / f"harness-{name}"
    if root.exists():
        fail(f"{root} already exists")
    for relative, text in render(name, kind).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(str(path))
    click.echo(f"next: pip install -e {root}  (offline: add --no-deps --no-build-isolation); then pytest {root}")
