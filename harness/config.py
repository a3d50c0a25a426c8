"""Typed run configuration: dataclasses, YAML presets/files and dotted overrides."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from harness.data.placement import PLACEMENTS, PlacementError, malicious_red_counts
from harness.suggest import did_you_mean

PRESETS = ("smoke", "demo", "repro", "harmful", "paper")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "8bit", "4bit")
DEFAULT_PRESET = "demo"


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the key and its source."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``, so no alias bombs) and duplicate mapping keys.

    Aliases are refused outright: a config is copied (``dataclasses.asdict``) and each copy expands every
    alias, so nine nested levels of an ``&a [*b, *b, ...]`` bomb would take gigabytes. Use every config and
    board file through :func:`strict_load`.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed in harness files; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable key: SafeConstructor reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of over {sys.get_int_max_str_digits()} digits", node.start_mark) from None


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)


def strict_load(text: str, name: str | None = None) -> Any:
    """YAML ``text`` read with :class:`StrictLoader`; ``name`` (a file path) appears in error marks."""
    loader = StrictLoader(text)
    if name is not None:
        loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"  # hub id, local path, "smollm2-135m" or "tiny-random"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    max_length: int = 256
    trust_remote_code: bool = False
    device: str = "auto"  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N
    dtype: str = "auto"  # float32 | bfloat16 | float16 | auto (bfloat16 on a GPU or CPU that computes it natively)
    quantization: str = "none"  # none | 8bit | 4bit (bitsandbytes NF4, double quant; needs a GPU)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more compute
    generation_backend: str = "hf"  # hf (transformers generate) | vllm (extra [vllm], GPU)
    vllm_gpu_memory: float = 0.4  # share of GPU memory vLLM may take (the training model stays resident)


@dataclass
class DataConfig:
    source: str = "demo"  # demo | square | hh-rlhf | a .jsonl/.json file | a hub dataset id
    path: str | None = None  # local file/dir for square / hh-rlhf (else the hub)
    num_samples: int = 400
    harmful_ratio: float = 0.3
    partition: str = "iid"  # iid | dirichlet
    dirichlet_alpha: float = 0.5
    heldout_samples: int = 0  # server-held validation samples from the same sources, never given to a client
    allow_overlap: bool = False  # run even when eval, client and plugin training prompts overlap (docs/data.md)
    exclude_shipped: bool = False  # draw client and held-out data outside every shipped training and eval set (docs/data.md)
    # Who holds the red data (docs/data.md, "Malicious clients and the centralized baseline"): clients 0..k-1 are
    # malicious; `concentrated` gives each of them malicious_red_share red samples, the honest ones the rest
    red_placement: str = "iid"  # iid | concentrated (needs partition iid and malicious_clients >= 1)
    malicious_clients: int = 0
    malicious_red_share: float = 1.0  # under concentrated placement only
    malicious_skip_filter: bool = False  # malicious clients skip pre_local_train and train on every sample

    def is_malicious(self, client_id: int) -> bool:
        """Whether client ``client_id`` is one of the malicious clients ``0..malicious_clients-1``."""
        return client_id < self.malicious_clients


@dataclass
class FederationConfig:
    num_clients: int = 20
    rounds: int = 50
    clients_per_round: int = 5
    local_steps: int = 25
    batch_size: int = 16
    lr: float = 5e-5
    lr_min: float = 1e-6  # cosine decay over rounds from lr to lr_min (OpenFedLLM)
    local_optimizer: str = "adamw"  # adamw | sgd
    seed: int = 0
    clip_update_norm: float | None = None  # L2 bound on each client's update (local - global); None: no clipping
    max_grad_norm: float | None = 1.0  # clip each step's gradient norm (HF Trainer's default); 0 or None: off
    grad_accum_steps: int = 1  # split each batch of batch_size into this many micro-batches (same math)
    # one client holding every client's data, local_steps * clients_per_round steps a round: the FL run's sample
    # visits without federation (docs/data.md)
    centralized: bool = False


CLIPPINGS = ("server", "client")
MIN_NOISE = 0.01  # the smallest positive privacy.noise_multiplier (ε > 5000 after one round of all clients)


@dataclass
class PrivacyConfig:
    """Client-level differential privacy, DP-FedAvg (McMahan et al. 2018; docs/privacy.md); off by default."""

    noise_multiplier: float = 0.0  # σ: Gaussian noise of std σ·clip_norm/clients_per_round on the aggregate
    clip_norm: float | None = None  # C: L2 bound on each client's delta (local - global); None: DP-FedAvg off
    delta: float | None = None  # δ of the reported ε; None: 1/num_clients^1.1 (must be below 1/num_clients)
    clipping: str = "server"  # server: the server clips each delta | client: each client clips its own

    def delta_for(self, num_clients: int) -> float:
        """δ for ε: ``delta``, else 1/num_clients^1.1 (below 1/N: at δ >= 1/N, publishing one random client's
        data whole is (0, δ)-DP)."""
        return self.delta if self.delta is not None else num_clients ** -1.1


@dataclass
class PluginsConfig:
    filter: str = "none"
    filter_options: dict[str, Any] = field(default_factory=dict)
    agg: str = "fedavg"
    agg_options: dict[str, Any] = field(default_factory=dict)
    align: str = "none"
    align_options: dict[str, Any] = field(default_factory=dict)
    attack: str = "none"  # model poisoning by the malicious clients (client_fit_end); needs data.malicious_clients
    attack_options: dict[str, Any] = field(default_factory=dict)
    evals: list[str] = field(default_factory=list)
    eval_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_every: int = 0  # 0: only after the last round
    eval_schedule: dict[str, int] = field(default_factory=dict)  # eval name -> its own eval_every (e.g. heldout-nll: 1)
    eval_limit: int | None = None
    eval_pretrained: bool = False  # also run the evals before round 1 (step 0): the pretrained model's values
    # a hook call running longer fails the run, naming the plugin (harness.watchdog); 24 h: several times the
    # longest healthy hook at paper scale (docs/reliability.md); 0 or null: no limit
    hook_timeout_s: float | None = 86_400.0


@dataclass
class TrackingConfig:
    uri: str | None = None  # None: sqlite store in output_dir
    experiment: str = "fedllm-harness"
    run_name: str | None = None
    fallback_local: bool = False  # an unreachable http(s) server: log to the local sqlite store instead of failing


@dataclass
class RunConfig:
    preset: str = DEFAULT_PRESET
    output_dir: str = "harness-runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat_params(self) -> dict[str, Any]:
        """Dotted key -> value, for MLflow params."""
        return dict(_flatten(self.to_dict()))


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: ``lo`` to ``hi``, an end excluded when ``lo_open``/``hi_open``."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""  # shown after the range, e.g. what null means

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __str__(self) -> str:
        if isinstance(self.lo, int) and isinstance(self.hi, int):
            text = f"{self.lo:,}..{self.hi:,}"
        else:
            text = f"{'(' if self.lo_open else '['}{_number(self.lo)}, {_number(self.hi)}{')' if self.hi_open else ']'}"
        return f"{text} ({self.note})" if self.note else text


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# The range of every int and float setting (issue #35), checked by validate() before anything is created. The
# bounds lie far beyond any paper-scale run (the paper: 50 rounds, 20 clients, 20 000 samples, r = 16, lr 5e-5) and
# inside what the engine can run: `federation.rounds = 10**21` overflowed a C size after the run existed.
# Limits between settings (clients_per_round <= num_clients, lr_min <= lr, ...) are in validate().
LIMITS: dict[str, Range] = {
    "model.lora_r": Range(1, 4096),
    "model.lora_alpha": Range(1, 65_536),
    "model.lora_dropout": Range(0.0, 1.0, hi_open=True),
    "model.max_length": Range(8, 1_048_576),
    "model.vllm_gpu_memory": Range(0.0, 1.0, lo_open=True),
    "data.num_samples": Range(1, 10_000_000),
    "data.harmful_ratio": Range(0.0, 1.0),
    "data.dirichlet_alpha": Range(0.0, 1e6, lo_open=True),
    "data.heldout_samples": Range(0, 10_000_000),
    "data.malicious_clients": Range(0, 100_000),
    "data.malicious_red_share": Range(0.0, 1.0),
    "federation.num_clients": Range(1, 100_000),
    "federation.rounds": Range(1, 1_000_000),
    "federation.clients_per_round": Range(1, 100_000),
    "federation.local_steps": Range(1, 1_000_000),
    "federation.batch_size": Range(1, 65_536),
    "federation.lr": Range(0.0, 10.0, lo_open=True),
    "federation.lr_min": Range(0.0, 10.0),
    "federation.seed": Range(0, 2**32 - 1),
    "federation.clip_update_norm": Range(0.0, 1e6, lo_open=True, note="or null: no clipping"),
    "federation.max_grad_norm": Range(0.0, 1e6, note="0 or null: off"),
    "federation.grad_accum_steps": Range(1, 65_536),
    "privacy.noise_multiplier": Range(0.0, 1e6, note="0: no noise"),
    "privacy.clip_norm": Range(0.0, 1e6, lo_open=True, note="or null: DP-FedAvg off"),
    "privacy.delta": Range(0.0, 1.0, lo_open=True, hi_open=True, note="or null: 1/num_clients^1.1"),
    "plugins.eval_every": Range(0, 1_000_000, note="0: only after the last round"),
    "plugins.eval_limit": Range(1, 10_000_000, note="or null for the full eval sets"),
    "plugins.hook_timeout_s": Range(0.0, 1e6, note="0 or null: no limit"),
}


def _flatten(d: dict[str, Any], prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check_type(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        _, item = typing.get_args(hint)
        return {str(k): _check_type(v, item, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and type(value) is int:  # `run_name: 2024` in YAML: the schema says text
        return str(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = str(unknown[0])
        raise ConfigError(f"unknown key {where + '.' if where else ''}{key}{did_you_mean(key, names)}; "
                          f"known keys here: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        key = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, data[name], key)
        else:
            kwargs[name] = _check_type(data[name], hint, key)
    return cls(**kwargs)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not key.endswith("options"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    try:
        data = strict_load(text, str(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping, got {type(data).__name__}")
    return data


def preset_dict(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; presets: {', '.join(PRESETS)}")
    return strict_load(files("harness.presets").joinpath(f"{name}.yaml").read_text())


def field_hint(dotted: str) -> Any:
    """The schema's type of a dotted config key (``tracking.run_name`` -> ``str | None``); None if not a field."""
    hint: Any = RunConfig
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(hint):
            return None
        hint = typing.get_type_hints(hint).get(part)
    return hint


def parse_override(text: str) -> tuple[str, Any]:
    """'federation.rounds=3' -> ('federation.rounds', 3); the value is read as YAML, except that a string field
    takes the text as written ('tracking.run_name=2024' -> '2024')."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value")
    key = key.strip()
    try:
        value = strict_load(raw, "<override>") if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: value is not valid YAML: {exc}") from exc
    if field_hint(key) in (str, str | None):
        return key, value if value is None or isinstance(value, str) else raw.strip()
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key, value


def _set_dotted(base: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    """``base`` with each dotted key's value set at exactly that key: ``plugins.eval_options.advbench.items=520``
    changes one option and keeps the preset's others; ``plugins.eval_options={}`` replaces them all."""
    out = copy.deepcopy(base)
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return out


def load_config(
    preset: str | None = None,
    file: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve preset (file's ``preset`` key, else ``demo``) <- file <- dotted overrides."""
    file_data = read_yaml(file) if file else {}
    name = preset or file_data.get("preset") or DEFAULT_PRESET
    try:
        data = _build(RunConfig, preset_dict(name), "")
    except ConfigError as exc:
        raise ConfigError(f"preset {name}: {exc}") from exc
    merged = data.to_dict()
    for source, apply in ((f"config file {file}", lambda m: _merge(m, file_data)),
                          ("command line", lambda m: _set_dotted(m, overrides or {}))):
        try:
            merged = dataclasses.asdict(_build(RunConfig, apply(merged), ""))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    merged["preset"] = name
    return validate(_build(RunConfig, merged, ""))


def validate(cfg: RunConfig) -> RunConfig:
    """Every value's range and the cross-field checks that types alone cannot express, up front: a bad value is a
    :class:`ConfigError` naming the key (exit 2) before anything is created, never a failure in round N or a run
    that "finishes" untrained (``lr: .inf``)."""
    model, data, fed = cfg.model, cfg.data, cfg.federation
    for key, value in _numbers(cfg):
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):  # YAML's .inf/.nan
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        if value not in LIMITS[key]:
            raise ConfigError(f"{key} must be in {LIMITS[key]}, got {_shown(value)}")
    checks = [
        (bool(model.target_modules), "model.target_modules must name at least one module", model.target_modules),
        (model.dtype in DTYPES, f"model.dtype must be one of {', '.join(DTYPES)}", model.dtype),
        (model.quantization in QUANTIZATIONS, f"model.quantization must be one of {', '.join(QUANTIZATIONS)}",
         model.quantization),
        (model.generation_backend in ("hf", "vllm"), "model.generation_backend must be 'hf' or 'vllm'",
         model.generation_backend),
        (fed.batch_size % fed.grad_accum_steps == 0,
         f"federation.grad_accum_steps must be >= 1 and divide batch_size ({fed.batch_size})", fed.grad_accum_steps),
        (fed.clients_per_round <= fed.num_clients,
         f"federation.clients_per_round must be in 1..num_clients ({fed.num_clients})", fed.clients_per_round),
        (fed.lr_min <= fed.lr, f"federation.lr_min must be in [0, lr] (lr = {fed.lr!r})", fed.lr_min),
        (fed.local_optimizer in ("adamw", "sgd"), "federation.local_optimizer must be 'adamw' or 'sgd'",
         fed.local_optimizer),
        (data.num_samples >= fed.num_clients, "data.num_samples must be >= federation.num_clients "
         f"({fed.num_clients})", data.num_samples),
        (data.partition in ("iid", "dirichlet"), "data.partition must be 'iid' or 'dirichlet'", data.partition),
        *_threat_checks(data, fed),
        (cfg.plugins.attack == "none" or data.malicious_clients >= 1, f"plugins.attack={cfg.plugins.attack} rewrites "
         "the malicious clients' updates and needs data.malicious_clients >= 1 (with none it attacks nothing)",
         data.malicious_clients),
        (not fed.centralized or cfg.plugins.agg == "fedavg", "federation.centralized trains one client, whose update "
         "is the new global adapter: it needs plugins.agg=fedavg (another aggregator would weigh a single update "
         "by rules made for several)", cfg.plugins.agg),
        *_privacy_checks(cfg.privacy, fed),
        *_schedule_checks(cfg.plugins),
    ]
    for ok, message, value in checks:
        if not ok:
            raise ConfigError(f"{message}, got {value!r}")
    if data.red_placement == "concentrated":
        try:
            malicious_red_counts(data.num_samples, round(data.num_samples * data.harmful_ratio), fed.num_clients,
                                 data.malicious_clients, data.malicious_red_share)
        except PlacementError as exc:
            raise ConfigError(str(exc)) from None
    if cfg.privacy.clip_norm is not None:
        _check_private_run(cfg)
    if cfg.tracking.run_name is not None:
        check_run_name(cfg.tracking.run_name)
    return cfg


def _schedule_checks(plugins: PluginsConfig) -> list[tuple[bool, str, Any]]:
    """validate()'s checks of ``plugins.eval_schedule``: evals of the run, each with a round count."""
    every = LIMITS["plugins.eval_every"]
    return [(name in plugins.evals, f"plugins.eval_schedule names eval {name!r}, which is not in plugins.evals "
             f"({', '.join(plugins.evals) or 'none'})", name) for name in plugins.eval_schedule] + [
        (n in every, f"plugins.eval_schedule.{name} must be a number of rounds in {every}", n)
        for name, n in plugins.eval_schedule.items()]


def _privacy_checks(privacy: PrivacyConfig, fed: FederationConfig) -> list[tuple[bool, str, Any]]:
    """validate()'s checks of the DP-FedAvg settings between themselves and the federation (docs/privacy.md)."""
    on, noised = privacy.clip_norm is not None, privacy.noise_multiplier > 0
    return [
        (privacy.clipping in CLIPPINGS, f"privacy.clipping must be one of {', '.join(CLIPPINGS)}", privacy.clipping),
        (on or not noised, "privacy.noise_multiplier > 0 needs privacy.clip_norm: the noise is calibrated to the "
         "clipped updates' norm bound, without one it bounds nothing", privacy.noise_multiplier),
        (not noised or privacy.noise_multiplier >= MIN_NOISE, f"privacy.noise_multiplier must be 0 or >= {MIN_NOISE}"
         " (below it ε is in the thousands after one round; the accountant stalls near 0)", privacy.noise_multiplier),
        (not noised or privacy.delta_for(fed.num_clients) < 1 / fed.num_clients,
         f"privacy.delta must be below 1/num_clients ({1 / fed.num_clients:.4g}): at δ >= 1/N, publishing one random "
         "client's data whole is (0, δ)-DP", privacy.delta_for(fed.num_clients)),
        (not on or not fed.centralized, "privacy.clip_norm: client-level DP needs clients, and federation.centralized "
         "trains one client holding all the data", fed.centralized),
    ]


def _check_private_run(cfg: RunConfig) -> None:
    """DP-FedAvg needs an aggregator that averages (its class declares ``averages = True``, docs/plugins.md) and,
    with noise, Opacus for the accountant; an aggregator that is not installed is named by the plugin checks."""
    import importlib.util

    from harness import registry

    try:
        averages = getattr(registry.load_factory("agg", cfg.plugins.agg), "averages", False) is True
    except registry.PluginError:
        averages = True
    if not averages:
        raise ConfigError(
            f"privacy.clip_norm: DP-FedAvg needs an aggregator that averages the client updates; agg plugin "
            f"{cfg.plugins.agg!r} does not declare averages = True. The noise N(0, (σC/m)²) is calibrated to the "
            "C/m by which one client can move a mean of m updates clipped to C; a median, trimmed mean, Krum "
            "selection, server-optimiser step or control variate responds to one client otherwise, so the noise "
            "would not bound what the release reveals (docs/privacy.md). Use fedavg, fedprox or norm-bound")
    if cfg.privacy.noise_multiplier > 0 and importlib.util.find_spec("opacus") is None:
        raise ConfigError("privacy.noise_multiplier > 0 needs Opacus for its privacy accountant: pip install "
                          "'fedllm-harness[extras]' (or pip install opacus)")


def _threat_checks(data: DataConfig, fed: FederationConfig) -> list[tuple[bool, str, Any]]:
    """validate()'s checks of red placement, malicious clients and the centralized baseline (docs/data.md)."""
    concentrated = data.red_placement == "concentrated"
    return [
        (data.red_placement in PLACEMENTS, f"data.red_placement must be one of {', '.join(PLACEMENTS)}",
         data.red_placement),
        (data.malicious_clients <= fed.num_clients,
         f"data.malicious_clients must be in 0..num_clients ({fed.num_clients})", data.malicious_clients),
        (not concentrated or data.malicious_clients >= 1, "data.red_placement=concentrated needs "
         "data.malicious_clients >= 1 (with none it would be iid under another name)", data.malicious_clients),
        (not concentrated or data.partition == "iid", "data.red_placement=concentrated needs data.partition=iid "
         "(it sets the clients' sizes and red shares itself)", data.partition),
        (not data.malicious_skip_filter or data.malicious_clients >= 1,
         "data.malicious_skip_filter needs data.malicious_clients >= 1", data.malicious_clients),
        (not fed.centralized or data.malicious_clients == 0, "federation.centralized trains one client holding all "
         "the data, which has no malicious clients: data.malicious_clients must be 0", data.malicious_clients),
    ]


def _numbers(cfg: RunConfig):
    """(dotted key, value) of every int and float setting (optional ones too) outside the plugin options."""
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(sub):
            continue
        hints = typing.get_type_hints(type(sub))
        for f in dataclasses.fields(sub):
            hint = hints[f.name]
            optional = typing.get_origin(hint) in (typing.Union, types.UnionType)  # int | None, not dict[str, int]
            if {int, float} & {hint, *(typing.get_args(hint) if optional else ())}:
                yield f"{section.name}.{f.name}", getattr(sub, f.name)


def _shown(value: float) -> str:
    """``repr(value)``; an integer of over 30 digits as its number of digits (Python prints none over 4300)."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of {math.floor(math.log10(abs(value))) + 1} digits"
    return repr(value)


# A run name is the name of its directory, <output_dir>/runs/<name>, and nothing derived from it is longer (the run's
# own files have fixed names). File systems take at most 255 bytes per name (NAME_MAX on ext4, xfs, btrfs, tmpfs,
# overlayfs); 200 leaves a margin and stays under MLflow's 250-character run name column.
MAX_RUN_NAME_BYTES = 200


BEFORE_SETTING = {"federation.max_grad_norm": None, "model.dtype": "float32"}
"""How runs logged before these settings existed behaved, where that is not the setting's default: no gradient
clipping, float32 bases (``model.dtype: auto`` is bfloat16 on GPUs and on CPUs with native bf16)."""


def older_run_settings() -> dict[str, Any]:
    """Dotted key -> the value a run logged before the setting existed ran with: the setting's default (it arrived
    with the behaviour runs had until then), else :data:`BEFORE_SETTING`'s. Suites reuse and boards group by it."""
    return {**RunConfig().flat_params(), **BEFORE_SETTING}


def param_text(value: Any) -> str:
    """A setting's value as an MLflow param holds it: JSON for lists and mappings, ``str`` otherwise."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def check_run_name(name: str) -> str:
    """A run name is one directory under ``<output_dir>/runs/``: no separators, ``..``, absolute or empty names,
    and at most :data:`MAX_RUN_NAME_BYTES` bytes."""
    bad = (not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0")
           or Path(name).is_absolute() or name != name.strip())
    if bad:
        raise ConfigError(f"tracking.run_name {name!r} is not a valid run name: it names a directory under "
                          "<output_dir>/runs/, so it must be non-empty, without '/', '\\', leading/trailing "
                          "spaces, and not '.' or '..'")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_RUN_NAME_BYTES:
        raise ConfigError(f"tracking.run_name {name[:24]!r}... is {size} bytes long (UTF-8); a run name names a "
                          f"directory and may take at most {MAX_RUN_NAME_BYTES} bytes (file systems allow 255 per "
                          "name)")
    return name


def run_dir(output_dir: str | Path, name: str) -> Path:
    """Where run ``name`` keeps its files: ``<output_dir>/runs/<name>`` (absolute)."""
    return Path(output_dir).resolve() / "runs" / name
