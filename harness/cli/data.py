"""`harness data split`: disjoint client / guard / CAI splits of one labelled source (the paper's SQuARe20K,
S-LG20K and S-CAI20K); `harness data harmful-scenario`: the harmful-reply client data (docs/data.md)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.common import data_option, fail
from harness.data.scenario.settings import GUARD, PARTS, ScenarioSettings
from harness.data.spec import DataSpec

SCENARIO = ScenarioSettings()


@click.group("data")
def command() -> None:
    """Data sets: disjoint splits of a labelled source for clients, the guard and CAI."""


@command.command("split")
@data_option("source", required=True,
             help="Labelled source: square=DIR (SQuARe response files; the hub has no copy), hh-rlhf[=PATH], "
                  "a .jsonl/.json file or a hub dataset id.")
@click.option("--size", "sizes", multiple=True, metavar="ROLE=N",
              help="Samples per split (clients, guard, cai); default 20000 each, as the paper.")
@click.option("--red-share", "red_shares", multiple=True, metavar="ROLE=F",
              help="Make a split exactly F red (e.g. clients=0.3, the paper's client mix); default: the source's mix.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the splits.")
def split(source, sizes, red_shares, seed, out) -> None:
    """Cut SOURCE into clients/guard/cai splits that share no prompt (by normalised prompt, seeded)."""
    from harness.data.samples import DataError
    from harness.data.sources import load_labelled
    from harness.data.splits import ROLES, split_source, write_splits

    wanted = {role: 20000 for role in ROLES} | _per_role(sizes, "--size", "N", ROLES, _count)
    shares = _per_role(red_shares, "--red-share", "F", ROLES, _share, " and F in [0, 1]")
    spec = DataSpec.parse(source)
    try:
        acceptable, red = load_labelled(spec.source, spec.path, 0, seed)
        reports = write_splits(split_source(acceptable + red, wanted, seed, shares), Path(out), source, seed, shares)
    except DataError as exc:
        fail(str(exc))
    for r in reports:
        click.echo(f"{r.name}: {r.samples} samples ({r.red} red) over {r.prompts} prompts -> {Path(out) / r.name}.jsonl")
    click.echo(f"use: harness run --data {Path(out) / 'clients.jsonl'}; harness filter train --data "
               f"{Path(out) / 'guard.jsonl'} ...; --align-opt prompts={Path(out) / 'cai.jsonl'}")


def _per_role(items, option: str, form: str, roles, parse, rule: str = "") -> dict:
    """``ROLE=VALUE`` items as {role: parsed value}; exit 2 naming ``option`` when one is malformed."""
    out = {}
    for item in items:
        role, eq, text = item.partition("=")
        value = parse(text) if eq and role in roles else None
        if value is None:
            fail(f"{option} {item}: expected ROLE={form} with ROLE one of {', '.join(roles)}{rule}")
        out[role] = value
    return out


def _count(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _share(text: str) -> float | None:
    try:
        share = float(text)
    except ValueError:
        return None
    return share if 0.0 <= share <= 1.0 else None


@command.command("harmful-scenario")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The labelled JSONL to write "
              "(and FILE.meta.json beside it); use it with harness run --data FILE.")
@click.option("--model", default=SCENARIO.model, show_default=True,
              help="The untuned base whose answers make the red and benign rows.")
@click.option("--refusal-model", default=SCENARIO.refusal_model, show_default=True,
              help="The safe base whose refusals of harmful requests make the acceptable harmful rows.")
@click.option("--seed", type=int, default=SCENARIO.seed, show_default=True,
              help="Order of the prompts (which requests --limit keeps and the refusal model is offered first).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=SCENARIO.max_new_tokens, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=SCENARIO.batch_size, show_default=True)
@click.option("--refusal-share", type=click.FloatRange(0, 1, max_open=True), default=SCENARIO.refusal_share,
              show_default=True, help="Refusals' share of the acceptable rows (docs/data.md).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N harmful and N benign prompts.")
@click.option("--square-dir", type=click.Path(file_okay=False),
              help="SQuARe's question files (benign prompts); default $HARNESS_DATA/square.")
@click.option("--part", type=click.Choice(PARTS), default=SCENARIO.part, show_default=True,
              help="clients: the clients' data; guard: the guard's own split (its own requests, disjoint from the "
                   "clients' part; every harmful request answered by both models), for harness filter train --data.")
def harmful_scenario(out, model, refusal_model, seed, max_new_tokens, batch_size, refusal_share, limit, square_dir,
                     part) -> None:
    """Build the harmful-reply scenario: red = the untuned base's compliant answers to the project's harmful
    requests; acceptable = its answers to benign SQuARe questions and the safe base's refusals (docs/data.md).
    --part guard builds the guard's own split the same way."""
    from harness.data.samples import DataError
    from harness.data.scenario.build import ScenarioError, build_scenario, write_scenario
    from harness.data.sources import local_copy
    from harness.evals.files import EvalDataError
    from harness.models import ModelLoadError

    square = square_dir or local_copy("square")
    if square is None:
        fail("no SQuARe questions: pass --square-dir DIR or set HARNESS_DATA to a folder laid out like shared/data")
    settings = ScenarioSettings(model, refusal_model, seed, max_new_tokens, batch_size, refusal_share, limit, part)
    try:
        scenario = build_scenario(settings, Path(square), target=out)
    except (DataError, EvalDataError, ModelLoadError) as exc:
        fail(str(exc))
    except ScenarioError as exc:
        fail(str(exc), 1)
    meta_file = write_scenario(scenario, Path(out))
    c = scenario.meta["counts"]
    click.echo(f"{out}: {c['rows']} rows, {c['red']} red, {c['acceptable']} acceptable ({c['benign_answers']} benign "
               f"answers, {c['refusals']} refusals: share {c['refusal_share']:.2f}) in {scenario.meta['seconds']:.0f} s")
    for reason, n in scenario.meta["dropped"].items():
        click.echo(f"  dropped {n}: {reason}")
    if part != GUARD and c["refusals"] < c["refusals_wanted"]:
        click.echo(f"  warning: {refusal_model} refused only {c['refusals']} of the {c['refusals_wanted']} harmful "
                   f"requests wanted", err=True)
    use = f"harness filter train --data {out}" if part == GUARD else f"harness run --data {out}"
    click.echo(f"meta: {meta_file}; use: {use}")
