"""plugins.hook_timeout_s: a hook that never returns fails the run cleanly, naming the plugin."""

import time

import pytest

from harness.config import ConfigError
from harness.hookspecs import hookimpl
from harness.watchdog import HookTimeoutError
from tests.helpers import run_tracked, smoke_config


class Hangs:
    @hookimpl
    def on_round_end(self, server_round, metrics, artifacts):
        if server_round == 1:
            time.sleep(3600)


def test_a_hook_that_never_returns_fails_the_run_naming_the_plugin(tmp_path):
    cfg = smoke_config(tmp_path, **{"plugins.hook_timeout_s": 2})
    started = time.monotonic()
    with pytest.raises(HookTimeoutError, match=r"hook on_round_end did not return within plugins.hook_timeout_s=2 s") as err:
        run_tracked(cfg, Hangs())
    assert time.monotonic() - started < 120
    assert "Hangs" in str(err.value.plugin_fault)  # named like any other plugin fault


def test_without_a_limit_nothing_is_armed_and_bad_limits_are_refused(tmp_path):
    for bad in (0, -1, float("inf")):
        with pytest.raises(ConfigError, match="hook_timeout_s"):
            smoke_config(tmp_path, **{"plugins.hook_timeout_s": bad})
    run_tracked(smoke_config(tmp_path, **{"plugins.hook_timeout_s": 60}))  # a limit that is never hit
