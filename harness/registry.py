"""Plugin discovery (entry points) and the per-run plugin manager.

Built-in plugins are declared in this project's ``pyproject.toml`` under the same entry-point
groups a third-party package uses, so both are found the same way::

    [project.entry-points."fedllm_harness.aggregators"]
    my-agg = "my_package.module:MyAggregator"

An entry point names a class; the harness instantiates it with the plugin's options from
the config and registers the instance with pluggy. Its ``@hookimpl`` methods are the hooks.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points, packages_distributions, version
from typing import TYPE_CHECKING, Any

import pluggy

from harness import InputError
from harness.suggest import did_you_mean

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.types import Headline

KINDS: dict[str, str] = {
    "filter": "fedllm_harness.filters",
    "agg": "fedllm_harness.aggregators",
    "align": "fedllm_harness.alignment",
    "eval": "fedllm_harness.evals",
    "attack": "fedllm_harness.attacks",
}


class PluginError(ValueError):
    """A plugin could not be selected or instantiated."""


class PluginStartError(PluginError):
    """A plugin's constructor raised something other than an option error; the CLI exits 1 (not bad usage)."""

    exit_code = 1


class UnknownPluginError(PluginError):
    def __init__(self, kind: str, name: str, available: list[str]):
        self.kind, self.name, self.available = kind, name, available
        super().__init__(f"unknown {kind} plugin {name!r}{did_you_mean(name, available)}; installed {kind} plugins: "
                         f"{', '.join(available) or '(none)'}")


class AmbiguousPluginError(UnknownPluginError):
    """Two or more distributions register the selected name: pick one as ``DIST:NAME``.

    A subclass of :class:`UnknownPluginError` because, like it, the name does not select exactly one plugin.
    """

    def __init__(self, kind: str, name: str, dists: list[str]):
        self.kind, self.name, self.dists = kind, name, dists
        PluginError.__init__(
            self,
            f"{kind} plugin name {name!r} is ambiguous: it is registered by {', '.join(dists)}; "
            f"select one as DIST:NAME, e.g. " + " or ".join(f"{d}:{name}" for d in dists),
        )


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    target: str  # "module:Class"
    package: str
    version: str


def discover() -> list[PluginInfo]:
    """Every installed plugin of every kind, sorted by kind then name."""
    found = []
    for kind, group in KINDS.items():
        for ep in entry_points(group=group):
            dist = ep.dist
            found.append(
                PluginInfo(
                    kind=kind,
                    name=ep.name,
                    target=ep.value,
                    package=dist.metadata["Name"] if dist else "?",
                    version=dist.version if dist else "?",
                )
            )
    return sorted(found, key=lambda p: (list(KINDS).index(p.kind), p.name))


def selection(cfg: RunConfig, kinds: tuple[str, ...] = tuple(KINDS)) -> list[tuple[str, str, dict[str, Any]]]:
    """The plugins of ``kinds`` (default: all) that ``cfg`` selects, as (kind, name, options) for
    :func:`build_manager`: filter, agg, align, attack, evals."""
    p = cfg.plugins
    chosen = [("filter", p.filter, p.filter_options), ("agg", p.agg, p.agg_options),
              ("align", p.align, p.align_options), ("attack", p.attack, p.attack_options)]
    chosen += [("eval", name, p.eval_options.get(name, {})) for name in p.evals]
    return [plugin for plugin in chosen if plugin[0] in kinds]


def installed_names(kind: str) -> list[str]:
    return sorted({p.name for p in discover() if p.kind == kind})


def ambiguous_names(found: list[PluginInfo] | None = None) -> set[tuple[str, str]]:
    """(kind, name) of every plugin name registered by more than one distribution."""
    packages: dict[tuple[str, str], set[str]] = {}
    for p in discover() if found is None else found:
        packages.setdefault((p.kind, p.name), set()).add(p.package)
    return {key for key, dists in packages.items() if len(dists) > 1}


def _dist_name(ep) -> str:
    return ep.dist.metadata["Name"] if ep.dist else "?"


def _normalized(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def split_name(name: str) -> tuple[str, str | None]:
    """'lm-eval:hellaswag' -> ('lm-eval', 'hellaswag'); the part after a colon becomes the ``task`` option."""
    base, sep, arg = name.partition(":")
    return base, (arg if sep else None)


def parse_selection(kind: str, name: str) -> tuple[str | None, str, str | None]:
    """``(distribution, plugin name, argument)`` of a selection: ``fedavg``, ``my-pkg:fedavg`` (the plugin ``fedavg``
    of distribution ``my-pkg``, for a name several distributions register), ``lm-eval:hellaswag`` (argument
    ``hellaswag``), ``fedllm-harness:lm-eval:hellaswag``. A prefix is a distribution only if that distribution
    registers the rest's plugin name for ``kind``."""
    prefix, sep, rest = name.partition(":")
    if sep:
        base, arg = split_name(rest)
        eps = entry_points(group=KINDS[kind])
        if any(ep.name == base and _normalized(_dist_name(ep)) == _normalized(prefix) for ep in eps):
            return prefix, base, arg
    base, arg = split_name(name)
    return None, base, arg


def _entry_point(kind: str, name: str):
    dist, base, _ = parse_selection(kind, name)
    matches = {}
    for ep in entry_points(group=KINDS[kind]):
        if ep.name == base and (dist is None or _normalized(_dist_name(ep)) == _normalized(dist)):
            matches.setdefault(_dist_name(ep), ep)  # one per distribution
    if not matches:
        raise UnknownPluginError(kind, name, installed_names(kind))
    if len(matches) > 1:
        raise AmbiguousPluginError(kind, base, sorted(matches))
    return next(iter(matches.values()))


def _origin(kind: str, name: str, ep) -> str:
    """'agg plugin 'fedavg' (fedllm-harness 0.1.0, fedllm_harness...:FedAvg)' for error messages."""
    return f"{kind} plugin {name!r} ({_dist_name(ep)} {ep.dist.version if ep.dist else '?'}, {ep.value})"


def _load(kind: str, name: str, ep) -> Any:
    """``ep.load()``; an import failure raises :class:`PluginError` naming the plugin and its distribution."""
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - any import-time failure of the plugin's module
        raise PluginError(f"{_origin(kind, name, ep)} could not be imported: {type(exc).__name__}: {exc}") from exc


def check_selectable(kind: str, name: str) -> None:
    """Raise :class:`UnknownPluginError` unless a plugin ``name`` of ``kind`` is installed."""
    _entry_point(kind, name)


def distribution(kind: str, name: str) -> tuple[str, str]:
    """(distribution name, version) of the package that provides plugin ``name`` of ``kind``; '?' when unknown."""
    dist = _entry_point(kind, name).dist
    return (dist.metadata["Name"], dist.version) if dist else ("?", "?")


def load_factory(kind: str, name: str) -> Any:
    """The class (or factory) plugin ``name`` of ``kind`` names, not instantiated."""
    ep = _entry_point(kind, name)
    return _load(kind, name, ep)


def headlines(evals: Sequence[str]) -> list[Headline]:
    """The metrics the eval plugins ``evals`` declare for the run summary and the default board: each plugin
    class's ``headline`` tuple of :class:`harness.types.Headline` (docs/plugins.md), in order; PluginError when a
    plugin's is not such a tuple."""
    from harness.types import Headline

    found: list[Headline] = []
    for name in evals:
        declared = getattr(load_factory("eval", name), "headline", ())
        if not isinstance(declared, tuple) or not all(isinstance(h, Headline) for h in declared):
            raise PluginError(f"eval plugin {name!r}: headline must be a tuple of harness.types.Headline, got "
                              f"{declared!r:.200}")
        found += [h for h in declared if h not in found]
    return found


def names_option(kind: str, name: str, option: str) -> bool:
    """Whether plugin ``name`` of ``kind`` names ``option`` among its constructor's keywords."""
    return option in inspect.signature(load_factory(kind, name)).parameters


def instantiate(kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """Load plugin ``name`` of ``kind`` and build it with ``options`` (its constructor's keywords)."""
    ep = _entry_point(kind, name)
    factory = _load(kind, name, ep)
    options = dict(options or {})
    arg = parse_selection(kind, name)[2]
    if arg is not None:
        options.setdefault("task", arg)
    accepted = inspect.signature(factory).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(set(options) - set(accepted)) if not takes_kwargs else []
    if unknown:
        known = ", ".join(n for n in accepted if n != "self") or "(none)"
        raise PluginError(f"{kind} plugin {name!r} has no option(s) {', '.join(unknown)}; options: {known}")
    try:
        return factory(**options)
    except InputError as exc:  # the plugin's own message: its data or an option value (docs/plugins.md)
        raise PluginError(f"{kind} plugin {name!r}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{kind} plugin {name!r} rejected its options {options}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - not bad options: the plugin failed to start (exit 1, no traceback)
        raise PluginStartError(f"{_origin(kind, name, ep)} failed to start: {type(exc).__name__}: {exc}") from exc



@dataclass(frozen=True)
class PluginFault:
    """Which plugin raised in which hook; attached to the exception as ``exc.plugin_fault`` (type unchanged)."""

    plugin: str  # plugin_origin(): name and package
    hook: str

    def __str__(self) -> str:
        return f"plugin {self.plugin} raised in hook {self.hook}"


def describe_failure(exc: BaseException) -> str:
    """'plugin agg:x (pkg 1.0) raised in hook aggregate: ValueError: ...', or 'ValueError: ...' without a plugin."""
    fault = getattr(exc, "plugin_fault", None)
    text = f"{type(exc).__name__}: {exc}"
    return f"{fault}: {text}" if fault else text


def new_manager() -> pluggy.PluginManager:
    """A plugin manager whose hook exceptions name the plugin that raised them (see :class:`PluginFault`)."""
    from harness import hookspecs  # the hook contract: only when a run is built, not for discovery

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)

    def blame(outcome: pluggy.Result, hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs) -> None:
        exc = outcome.exception
        if isinstance(exc, Exception) and not hasattr(exc, "plugin_fault"):
            impl = _raising_impl(exc, hook_impls)
            if impl is not None:
                exc.plugin_fault = PluginFault(plugin_origin(pm, impl.plugin), hook_name)
                exc.add_note(str(exc.plugin_fault))

    pm.add_hookcall_monitoring(lambda *args: None, blame)
    return pm


def _raising_impl(exc: Exception, hook_impls: Sequence[pluggy.HookImpl]) -> pluggy.HookImpl | None:
    """The hook implementation whose frame is outermost in ``exc``'s traceback (the only one if there is one)."""
    by_code = {getattr(impl.function, "__code__", None): impl for impl in hook_impls}
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in by_code:
            return by_code[tb.tb_frame.f_code]
        tb = tb.tb_next
    return hook_impls[0] if len(hook_impls) == 1 else None


def plugin_origin(pm: pluggy.PluginManager, plugin: object) -> str:
    """'kind:name (package version)' for a selected plugin, 'module.Class (package version)' for another."""
    registered = pm.get_name(plugin) or ""
    kind, _, name = registered.partition(":")
    if kind in KINDS:
        try:
            dist = _entry_point(kind, name).dist
        except PluginError:
            dist = None
        if dist is not None:
            return f"{registered} ({dist.metadata['Name']} {dist.version})"
    cls = type(plugin)
    packages = packages_distributions().get(cls.__module__.partition(".")[0], [])
    where = f"{packages[0]} {version(packages[0])}" if packages else "not from an installed package"
    return f"{cls.__module__}.{cls.__qualname__} ({where})"


def build_manager(selection: list[tuple[str, str, dict[str, Any]]], extra: list[object] = ()) -> pluggy.PluginManager:
    """A plugin manager with the selected plugins (kind, name, options) and ``extra`` core plugins."""
    pm = new_manager()
    for kind, name, options in selection:
        plugin = instantiate(kind, name, options)
        if kind == "eval":
            headlines([name])  # a malformed declaration is refused before the run, like a malformed hook
        try:
            pm.register(plugin, name=f"{kind}:{name}")
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{_origin(kind, name, _entry_point(kind, name))} has an invalid hook "
                              f"implementation: {exc}") from exc
    for plugin in extra:
        pm.register(plugin)
    return pm
