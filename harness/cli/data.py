"""`harness data split`: disjoint client / guard / CAI splits of one labelled source (the paper's SQuARe20K,
S-LG20K and S-CAI20K)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.common import data_option, fail
from harness.data.spec import DataSpec


@click.group("data")
def command() -> None:
    """Data sets: disjoint splits of a labelled source for clients, the guard and CAI."""


@command.command("split")
@data_option("source", required=True,
             help="Labelled source: square=DIR (SQuARe response files; the hub has no copy), hh-rlhf[=PATH], "
                  "a .jsonl/.json file or a hub dataset id.")
@click.option("--size", "sizes", multiple=True, metavar="ROLE=N",
              help="Samples per split (clients, guard, cai); default 20000 each, as the paper.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the splits.")
def split(source, sizes, seed, out) -> None:
    """Cut SOURCE into clients/guard/cai splits that share no prompt (by normalised prompt, seeded)."""
    from harness.data.samples import DataError
    from harness.data.sources import load_labelled
    from harness.data.splits import ROLES, split_source, write_splits

    wanted = {role: 20000 for role in ROLES}
    for item in sizes:
        role, eq, n = item.partition("=")
        if not eq or role not in ROLES or not n.isdigit():
            fail(f"--size {item}: expected ROLE=N with ROLE one of {', '.join(ROLES)}")
        wanted[role] = int(n)
    spec = DataSpec.parse(source)
    try:
        acceptable, red = load_labelled(spec.source, spec.path, 0, seed)
        reports = write_splits(split_source(acceptable + red, wanted, seed), Path(out), source, seed)
    except DataError as exc:
        fail(str(exc))
    for r in reports:
        click.echo(f"{r.name}: {r.samples} samples ({r.red} red) over {r.prompts} prompts -> {Path(out) / r.name}.jsonl")
    click.echo(f"use: harness run --data {Path(out) / 'clients.jsonl'}; harness filter train --data "
               f"{Path(out) / 'guard.jsonl'} ...; --align-opt prompts={Path(out) / 'cai.jsonl'}")
