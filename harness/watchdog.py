"""A time limit per hook call (``plugins.hook_timeout_s``, default 24 h; 0 or null: none): a plugin hook that does
not return in time fails the run, named like any other plugin fault, instead of hanging it (or a suite) forever.

The limit is a ``SIGALRM`` timer armed around each hook call (main thread only: elsewhere, e.g. in a Ray worker,
no limit applies). Python delivers the alarm between bytecodes, so a hook stuck in Python code or in a sleep or
I/O wait is stopped; one stuck inside a C extension that never returns to Python is not. Nested hook calls keep
their own deadlines.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pluggy


class HookTimeoutError(RuntimeError):
    """A hook call ran past ``plugins.hook_timeout_s``."""


def install_watchdog(pm: pluggy.PluginManager, seconds: float | None) -> Callable[[], None]:
    """Arm a ``seconds`` limit around every hook call of ``pm`` (0 or None: no limit); returns the function that
    removes it."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        return lambda: None
    if not seconds > 0:
        raise ValueError(f"plugins.hook_timeout_s must be >= 0 (0 or null: no limit), got {seconds!r}")
    deadlines: list[tuple[float, str]] = []  # (monotonic deadline, hook name), innermost last

    def arm() -> None:
        left = deadlines[-1][0] - time.monotonic() if deadlines else 0.0
        signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3) if deadlines else 0.0)

    def expired(signum, frame) -> None:
        hook = deadlines[-1][1] if deadlines else "?"
        raise HookTimeoutError(f"hook {hook} did not return within plugins.hook_timeout_s={seconds:g} s; if the "
                               "hook is healthy but slow, --resume the run with --set plugins.hook_timeout_s=SECONDS "
                               "(0: no limit)")

    def before(hook_name, hook_impls, kwargs) -> None:
        deadlines.append((time.monotonic() + seconds, hook_name))
        arm()

    def after(outcome, hook_name, hook_impls, kwargs) -> None:
        deadlines.pop()
        arm()

    previous = signal.signal(signal.SIGALRM, expired)
    undo = pm.add_hookcall_monitoring(before, after)

    def remove() -> None:
        undo()
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)

    return remove
