"""What every `harness` subcommand shares: the error style, KEY=VALUE options, the flags that mean the same
everywhere (``--eval``, ``--limit``, ``--data``), ``-v`` and the lazy command group.

Light on purpose: ``harness --help`` imports only this, click, the config schema and plugin discovery.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module
from collections.abc import Callable
from typing import Any, NoReturn

import click

from harness.config import ConfigError, parse_override
from harness.data.spec import DataSpec
from harness.suggest import did_you_mean


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``Error: message`` (click's own style for usage errors) and exit; 2 = bad usage or input."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (values typed by the config schema, see :func:`parse_override`); exit 2 on a bad one."""
    out = {}
    for pair in pairs:
        try:
            key, value = parse_override(pair)
        except ConfigError as exc:
            fail(f"{flag}: {exc}")
        out[key] = value
    return out


def split_names(values: tuple[str, ...]) -> list[str]:
    """``("a,b", "c")`` -> ``["a", "b", "c"]``: a repeatable flag that also takes comma-separated names."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def chosen_evals(values: tuple[str, ...], current: list[str]) -> list[str]:
    """``--eval`` values -> the evals to run: plain names replace ``current`` (the preset's or config's evals), each
    ``+NAME`` adds NAME to them (``--eval +my-eval``: the preset's evals, then ``my-eval``)."""
    names = split_names(values)
    added = [name[1:].strip() for name in names if name.startswith("+")]
    if "" in added:
        fail("--eval +NAME: a plugin name must follow the +")
    base = [name for name in names if not name.startswith("+")] or list(current)
    return base + [name for name in dict.fromkeys(added) if name not in base]


def data_option(*names: str, help: str, **kwargs) -> Callable:
    """``--data SOURCE[=PATH]``: a labelled data source, in the same form in every command (checked when parsed,
    read with :meth:`DataSpec.parse`); ``names``: the parameter name, if not ``data``."""

    def check(ctx: click.Context, param: click.Parameter, value):
        for text in value if param.multiple else [value] if value is not None else []:
            try:
                DataSpec.parse(text)
            except ValueError as exc:
                raise click.BadParameter(str(exc)) from exc
        return value

    return click.option("--data", *names, metavar="SOURCE[=PATH]", callback=check, help=help, **kwargs)


def eval_option(help: str = "Eval plugin (e.g. advbench, hhh, mtbench, lm-eval:TASK)", **kwargs) -> Callable:
    """``--eval NAME``: an eval plugin; repeat or comma-separate for several (read with :func:`split_names`, or
    :func:`chosen_evals` where ``+NAME`` adds to a preset's evals)."""
    return click.option("--eval", "evals", multiple=True, metavar="NAME",
                        help=f"{help}; repeat or comma-separate for several.", **kwargs)


def limit_option(**kwargs) -> Callable:
    """``--limit N`` (alias ``--eval-limit``): at most N items per benchmark."""
    return click.option("--limit", "--eval-limit", "eval_limit", type=int, metavar="N",
                        help="At most N items per benchmark (default: the full sets); --eval-limit is an alias.",
                        **kwargs)


def eval_option_overrides(pairs: tuple[str, ...], evals: list[str]) -> dict[str, Any]:
    """``--eval-opt NAME.KEY=VALUE`` pairs -> ``plugins.eval_options.NAME.KEY`` overrides; NAME must be selected."""
    out = {}
    for key, value in parse_options(pairs, "--eval-opt").items():
        name, dot, option = key.rpartition(".")
        if not dot or name not in evals:
            fail(f"--eval-opt {key}=...: expected EVAL.OPTION=VALUE with EVAL one of {', '.join(evals) or '(no --eval)'}")
        out[f"plugins.eval_options.{name}.{option}"] = value
    return out


def _verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        logging.getLogger().setLevel(logging.INFO)


def with_verbose(cmd: click.Command) -> click.Command:
    """Give ``cmd`` (and a group's subcommands) ``-v/--verbose``, so it works after the subcommand too."""
    if not any(p.name == "verbose" for p in cmd.params):
        cmd.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, callback=_verbose,
                                       help="Log at INFO level."))
    for sub in getattr(cmd, "commands", {}).values():
        with_verbose(sub)
    return cmd


class Choice(click.Choice):
    """click's Choice whose error adds the closest choice (``--preset smok``: did you mean 'smoke'?)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            exc.message = exc.message.rstrip(".") + did_you_mean(str(value), self.choices) + "."
            raise


class LazyGroup(click.Group):
    """A group whose ``lazy`` commands (name -> ("module:attr", short help)) are imported only when invoked.

    ``--help`` lists them from the short help given here, so it imports none of their modules."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """click's; an unknown name gets the closest command, lazy ones included (click looks at loaded ones)."""
        name = args[0]
        if not ctx.resilient_parsing and not name.startswith("-") and self.get_command(ctx, name) is None:
            ctx.fail(f"No such command {name!r}{did_you_mean(name, self.list_commands(ctx))}.")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, _, attr = self.lazy[name][0].partition(":")
            self.add_command(getattr(import_module(module), attr), name)
        cmd = self.commands.get(name)
        return with_verbose(cmd) if cmd is not None else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
        rows = [(name, self.commands[name].get_short_help_str(limit) if name in self.commands else self.lazy[name][1])
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
