"""`harness plugins`: what is installed, and which names need their package to select."""

from __future__ import annotations

import json

import click

from harness import registry as plugin_registry


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """List every installed plugin: kind, name, version and source package.

    A name that several packages register is marked ambiguous: select it as PACKAGE:NAME (e.g. --agg my-pkg:fedavg).
    """
    found = plugin_registry.discover()
    ambiguous = plugin_registry.ambiguous_names(found)
    if as_json:
        click.echo(json.dumps([p.__dict__ | {"ambiguous": (p.kind, p.name) in ambiguous} for p in found], indent=2))
        return
    header = ("KIND", "NAME", "VERSION", "PACKAGE", "TARGET", "NOTE")
    rows = [header] + [(p.kind, p.name, p.version, p.package, p.target,
                        f"ambiguous: select as {p.package}:{p.name}" if (p.kind, p.name) in ambiguous else "")
                       for p in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
