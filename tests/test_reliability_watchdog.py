"""plugins.hook_timeout_s: a hook that never returns fails the run cleanly, naming the plugin; a generous limit is on
by default and 0 turns it off."""

import signal
import time

import pytest

from harness.cli.run import RUN_FLAGS, resume_overrides
from harness.config import ConfigError
from harness.hookspecs import hookimpl
from harness.watchdog import HookTimeoutError
from tests.helpers import run_tracked, smoke_config


class Hangs:
    @hookimpl
    def on_round_end(self, server_round, metrics, artifacts):
        if server_round == 1:
            time.sleep(3600)


class SeesTimer:
    """Records the time left on the hook timer while ``on_round_end`` runs (0.0: no timer armed)."""

    def __init__(self):
        self.left: list[float] = []

    @hookimpl
    def on_round_end(self, server_round, metrics, artifacts):
        self.left.append(signal.getitimer(signal.ITIMER_REAL)[0])


def test_a_hook_that_never_returns_fails_the_run_naming_the_plugin(tmp_path):
    cfg = smoke_config(tmp_path, **{"plugins.hook_timeout_s": 2})
    started = time.monotonic()
    with pytest.raises(HookTimeoutError, match=r"hook on_round_end did not return within plugins.hook_timeout_s=2 s; "
                                               r"if the hook is healthy but slow, --resume") as err:
        run_tracked(cfg, Hangs())
    assert time.monotonic() - started < 120
    assert "Hangs" in str(err.value.plugin_fault)  # named like any other plugin fault


@pytest.mark.parametrize("setting, armed", [({}, True), ({"plugins.hook_timeout_s": 0}, False),
                                            ({"plugins.hook_timeout_s": None}, False)], ids=["default", "0", "null"])
def test_a_generous_limit_is_armed_by_default_and_0_or_null_turns_it_off(tmp_path, setting, armed):
    cfg = smoke_config(tmp_path, **{"federation.rounds": 1, "plugins.evals": [], **setting})
    timer = SeesTimer()
    assert run_tracked(cfg, timer).status == "FINISHED"
    if armed:
        assert cfg.plugins.hook_timeout_s == 86_400
        assert 86_000 < timer.left[0] <= 86_400  # was: no limit unless set, so a hung plugin hung a suite forever
    else:
        assert timer.left and set(timer.left) == {0.0}
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0  # disarmed after the run


def test_bad_limits_are_refused_and_a_resumed_run_may_change_the_limit(tmp_path):
    for bad in (-1, float("inf"), 1e7):
        with pytest.raises(ConfigError, match="hook_timeout_s"):
            smoke_config(tmp_path, **{"plugins.hook_timeout_s": bad})
    assert resume_overrides(None, None, ("plugins.hook_timeout_s=0",), (), (), (), (), dict.fromkeys(RUN_FLAGS)) == {
        "plugins.hook_timeout_s": 0}
