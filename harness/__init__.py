"""fedllm-harness: a plugin-based benchmark harness for responsible federated LLM fine-tuning."""

import os

# OpenMP threads that spin while waiting collapse when the CPU is shared (another run, a test suite):
# with 2 threads on a loaded 2-core machine a SmolLM2 training step ran 6x slower spinning than sleeping
# (docs/performance.md). Set before torch loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad input, not a bug: a missing or malformed data file, an option value that cannot work. Raised by a
    plugin (its constructor or any hook) or by the harness, it makes the CLI print its message and exit 2
    (docs/plugins.md). The harness's own data errors subclass it."""


def finite_number(name: str, value, positive: bool = False) -> float:
    """``value`` as a float; an :class:`InputError` naming option ``name`` unless it is a finite number, > 0 with
    ``positive``, else other than 0 (for the plugins' numeric options)."""
    import math

    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value == 0):
        raise InputError(f"{name} must be a finite number {'> 0' if positive else 'other than 0'}, got {value!r}")
    return float(value)
