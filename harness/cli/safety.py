"""`harness safety-tune`: make a safe base (LoRA SFT on refusals + the model's own benign answers)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.common import fail
from harness.safe_base.settings import BENIGN_LOSSES, REFUSAL_STYLES, SafetyTuneSettings

SHIPPED = SafetyTuneSettings()


@click.command("safety-tune")
@click.option("--base", default="smollm2-135m", show_default=True, help="Hub id, local path or smollm2-135m.")
@click.option("--data-dir", "--data", "data_dir", default="../shared/data", show_default=True,
              type=click.Path(file_okay=False), help="Benchmark data folder laid out like shared/data (needs hh_rlhf/ "
                                                     "and square/); --data is its older name.")
@click.option("--within", type=click.Path(dir_okay=False),
              help="Keep only red prompts listed in this train_prompts.sha256 (default: the shipped SmolLM2 guard's, "
                   "so the rest of hh-rlhf stays free for client data); 'all' keeps every one.")
@click.option("--red", "red_limit", type=click.IntRange(min=1), default=150, show_default=True, help="Red prompts.")
@click.option("--square", "square_limit", type=click.IntRange(min=0), default=600, show_default=True,
              help="Benign SQuARe questions (half non-sensitive).")
@click.option("--chat-requests", is_flag=True,
              help="Add the project's casual chat requests to the benign prompts (recipe v9, docs/safe-base.md).")
@click.option("--refusals", "refusal_style", type=click.Choice(REFUSAL_STYLES), default=REFUSAL_STYLES[0],
              show_default=True, help="The red prompts' answers: apology ('I'm sorry, but I can't …') or statement "
                                      "('That could cause real harm …, so I cannot …'; recipe v10, docs/safe-base.md).")
@click.option("--steps", type=click.IntRange(min=1), default=SHIPPED.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=SHIPPED.batch_size, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=SHIPPED.lr, show_default=True)
@click.option("--lora-r", type=click.IntRange(min=1), default=SHIPPED.lora_r, show_default=True)
@click.option("--answer-tokens", type=click.IntRange(min=1), default=SHIPPED.answer_tokens, show_default=True,
              help="New tokens of the base model's own benign answers.")
@click.option("--benign-loss", type=click.Choice(BENIGN_LOSSES), default=SHIPPED.benign_loss, show_default=True,
              help="ce: cross-entropy on the base's own benign answers; kl: match the frozen base's distribution over "
                   "them (a smaller held-out NLL rise, docs/safe-base.md).")
@click.option("--seed", type=int, default=SHIPPED.seed, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where the adapter and its card go.")
def command(base, data_dir, within, red_limit, square_limit, chat_requests, refusal_style, steps, batch_size, lr, lora_r,
            answer_tokens, benign_loss, seed, out):
    """Safety-tune BASE with the harness's LoRA loop (recipe: harness/safe_base/recipe.py, docs/safe-base.md)."""
    from harness.data.overlap import read_digest_file
    from harness.data.samples import DataError
    from harness.guard.defaults import SMOLLM2_GUARD
    from harness.models import ModelLoadError
    from harness.safe_base.recipe import build_mix
    from harness.safe_base.tune import safety_tune

    try:
        allowed = None if within == "all" else read_digest_file(within or SMOLLM2_GUARD / "train_prompts.sha256")
        mix = build_mix(Path(data_dir), allowed, red_limit, square_limit, seed, chat=chat_requests,
                        refusal_style=refusal_style)
        settings = SafetyTuneSettings(steps=steps, batch_size=batch_size, lr=lr, lr_min=lr / 10, lora_r=lora_r,
                                      answer_tokens=answer_tokens, benign_loss=benign_loss, seed=seed)
        click.echo(f"{len(mix.red)} red prompts, {len(mix.benign)} benign prompts; base {base}", err=True)
        card = safety_tune(base, mix, Path(out), settings)
    except (DataError, ModelLoadError, OSError) as exc:
        fail(str(exc))
    click.echo(json.dumps(card, indent=1))
