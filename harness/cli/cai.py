"""`harness cai`: build the Constitutional AI data set; print the default constitution."""

from __future__ import annotations

import click

from harness.cai.constitution import DEFAULT_CONSTITUTION, ConstitutionError, constitution_json, load_constitution
from harness.cai.prompts import SOURCES_HELP
from harness.cli.common import fail


@click.group("cai")
def command() -> None:
    """Constitutional AI: red/critique/revision data for the cai* alignment plugins."""


@command.command("build")
@click.option("--model", default="smollm2-135m", show_default=True, help="Hub id, local path, smollm2-135m or tiny-random.")
@click.option("--prompts", "source", default="demo", show_default=True, help=f"Red-teaming prompts: {SOURCES_HELP}.")
@click.option("--out", "out_root", required=True, type=click.Path(file_okay=False), help="Cache root; the build goes to OUT/<key>.")
@click.option("--constitution", type=click.Path(dir_okay=False), help="Constitution JSON (default: the project's own).")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N prompts.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True, help="Per turn.")
def build(model, source, out_root, constitution, limit, batch_size, max_new_tokens) -> None:
    """Run the three CAI turns (red, critique, revision) for each prompt; resumable and cached."""
    from harness.cai.build import BuildSettings, build_cai_dataset
    from harness.cai.prompts import load_prompts
    from harness.config import ModelConfig
    from harness.data.samples import DataError
    from harness.model_handle import GlobalModel
    from harness.models import ModelLoadError, attach_lora, load_base

    try:
        principles = load_constitution(constitution)
        prompts = load_prompts(source, limit)
        cfg = ModelConfig(name=model)
        base, tokenizer = load_base(cfg)
    except (ConstitutionError, DataError, ModelLoadError) as exc:
        fail(str(exc))
    handle = GlobalModel(attach_lora(base, cfg, seed=0), tokenizer, cfg.max_length)
    settings = BuildSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, base_only=True)
    click.echo(f"{len(prompts)} prompts, {len(principles)} principles, model {model}")
    dataset = build_cai_dataset(
        handle, prompts, principles, out_root, settings,
        on_chunk=lambda done, total: click.echo(f"  {done}/{total} prompts", err=True),
    )
    click.echo(f"{len(dataset.records)} records ({len(dataset.dpo_pairs())} usable pairs) in {dataset.path}")
    click.echo(f"use it with: --align-opt data={dataset.path}")


@command.command("constitution")
def show_constitution() -> None:
    """Print the project's default constitution as JSON (the format --constitution reads)."""
    click.echo(constitution_json(DEFAULT_CONSTITUTION))
