"""Issue #35 items 3 and 5: every number in the run config and the run name's length are checked against what the
engine and the file system can take, before anything is created (exit 2, naming the key, the value and the limit)."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.config import LIMITS, MAX_RUN_NAME_BYTES, ConfigError, RunConfig, load_config

HUGE = 1000000000000000000000  # 10**21: overflowed a C ssize_t after the run directory existed


def cli(*args: str):
    return CliRunner().invoke(main, ["run", "--preset", "smoke", *args], catch_exceptions=False)


def numeric_settings() -> list[tuple[str, type]]:
    """(dotted key, int or float) of every numeric field of the run config (``int``, ``float | None``, not a
    ``dict[str, int]``), read from the dataclasses."""
    def numbers(hint) -> set[type]:
        scalar = typing.get_origin(hint) in (None, typing.Union, types.UnionType)
        return {hint, *typing.get_args(hint)} & {int, float} if scalar else set()

    return [(f"{section}.{name}", numbers(hint).pop())
            for section, cls in typing.get_type_hints(RunConfig).items() if dataclasses.is_dataclass(cls)
            for name, hint in typing.get_type_hints(cls).items() if numbers(hint)]


def assert_refused_creating_nothing(result, out, *fragments: str) -> None:
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # no MLflow store, no run directory, no round_0000


# -- item 3: numbers --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--set", f"federation.rounds={HUGE}"], ["--rounds", str(HUGE)]])
def test_huge_rounds_exit_2_naming_key_value_and_range_creating_nothing(tmp_path, args):
    result = cli(*args, "--output-dir", str(tmp_path / "out"))
    assert_refused_creating_nothing(result, tmp_path / "out",
                                    f"federation.rounds must be in 1..1,000,000, got {HUGE}")


def test_every_numeric_setting_has_a_range():
    assert sorted(key for key, _ in numeric_settings()) == sorted(LIMITS)


@pytest.mark.parametrize("key, kind", numeric_settings())
def test_a_value_beyond_either_end_of_a_range_is_refused_naming_it(key, kind):
    limit = LIMITS[key]
    for value in (kind(HUGE), kind(limit.lo - 1), kind(limit.hi) * 2):
        with pytest.raises(ConfigError) as err:
            load_config("smoke", overrides={key: value})
        assert str(err.value) == f"{key} must be in {limit}, got {value!r}"
    if kind is float:
        for value in (math.nan, math.inf, -math.inf):
            with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
                load_config("smoke", overrides={key: value})


def test_an_integer_of_thousands_of_digits_is_named_by_its_length():
    with pytest.raises(ConfigError, match=r"federation.rounds must be in 1..1,000,000, got an integer of 5001 digits"):
        load_config("smoke", overrides={"federation.rounds": 10**5000})


def test_an_integer_too_long_for_python_to_read_is_a_config_error(tmp_path):
    (tmp_path / "run.yaml").write_text(f"federation:\n  rounds: {'9' * 5000}\n")
    result = cli("--config", str(tmp_path / "run.yaml"), "--output-dir", str(tmp_path / "out"))
    assert_refused_creating_nothing(result, tmp_path / "out", "run.yaml is not valid YAML: integer of over")
    result = cli("--set", f"federation.rounds={'9' * 5000}", "--output-dir", str(tmp_path / "out"))
    assert_refused_creating_nothing(result, tmp_path / "out", "--set: override federation.rounds: value is not valid")


def closed_end(end: str) -> dict[str, float]:
    """Every setting with a closed ``end`` ("lo" or "hi") set to it; the ends fit each other's cross-field limits."""
    return {key: getattr(r, end) for key, r in LIMITS.items() if not getattr(r, f"{end}_open")}


@pytest.mark.parametrize("end", ["lo", "hi"])
def test_every_setting_at_its_bounds_passes(end):
    cfg = load_config("smoke", overrides=closed_end(end))
    assert cfg.federation.rounds == getattr(LIMITS["federation.rounds"], end)


# -- item 5: run-name length ------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["--run-name", "--set"])
def test_a_300_character_run_name_exits_2_naming_the_limit_creating_nothing(tmp_path, how):
    name = "r" * 300
    args = ["--run-name", name] if how == "--run-name" else ["--set", f"tracking.run_name={name}"]
    result = cli(*args, "--output-dir", str(tmp_path / "out"))
    assert_refused_creating_nothing(result, tmp_path / "out", "tracking.run_name 'rrrr",
                                    f"is 300 bytes long (UTF-8); a run name names a directory and may take at most "
                                    f"{MAX_RUN_NAME_BYTES} bytes")


def test_the_run_name_limit_counts_bytes_and_leaves_a_margin_below_the_file_systems(tmp_path):
    longest = "é" * (MAX_RUN_NAME_BYTES // 2)  # two bytes each in UTF-8
    assert load_config("smoke", overrides={"tracking.run_name": longest}).tracking.run_name == longest
    with pytest.raises(ConfigError, match=f"is {MAX_RUN_NAME_BYTES + 2} bytes long"):
        load_config("smoke", overrides={"tracking.run_name": longest + "é"})
    assert MAX_RUN_NAME_BYTES <= os.pathconf(tmp_path, "PC_NAME_MAX") - 50
    (tmp_path / longest).mkdir()
