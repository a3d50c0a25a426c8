"""Issue #37: the attack plugin kind. Built-ins ``scale`` (model replacement, Bagdasaryan et al. 2020) and
``sign-flip`` rewrite the malicious clients' updates only; FedAvg follows a boosted client, Multi-Krum and norm
bounding do not; an attack without malicious clients or with a bad factor is refused; local and Flower agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness import InputError, registry
from harness.cli import main
from harness.cli.run import resume_overrides
from harness.default_plugins.attacks.scale import Scale
from harness.default_plugins.attacks.sign_flip import SignFlip
from harness.hookspecs import hookimpl
from harness.types import RunInfo
from tests.helpers import distance, logged_run, run_tracked, same_run_on_both_engines, smoke_config

GAMMA = 10.0


def clone(state) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in state.items()}


class Recorder:
    """One round: each client's trained adapter (before every ``client_fit_end`` hook, the attack's among them),
    the global adapter x, the adapters the server received and the aggregate."""

    def __init__(self):
        self.trained: dict[int, dict[str, torch.Tensor]] = {}

    @hookimpl(wrapper=True)
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        self.trained[client_id] = clone(local_state)
        return (yield)

    @hookimpl(wrapper=True)
    def aggregate(self, server_round, global_state, updates, num_clients_total):
        result = yield
        self.x, self.new = clone(global_state), clone(result.state)
        self.sent = {u.client_id: clone(u.state) for u in updates}
        return result

    def delta(self, state) -> dict[str, torch.Tensor]:
        return {name: state[name] - self.x[name] for name in self.x}

    def off_honest_mean(self) -> float:
        """‖aggregate's delta − the honest clients' mean delta‖ / ‖that mean‖ (client 0 is malicious)."""
        honest = [self.delta(self.sent[cid]) for cid in self.sent if cid != 0]
        mean = {name: sum(d[name] for d in honest) / len(honest) for name in self.x}
        zero = {name: torch.zeros_like(t) for name, t in mean.items()}
        return distance(self.delta(self.new), mean) / distance(mean, zero)


def attacked_round(tmp_path, agg: str, attack: str, **options) -> tuple[Recorder, dict[str, float], Path]:
    """One round of five clients of 10 samples, all trained, client 0 malicious: its recorder, its metrics and
    its output folder."""
    cfg = smoke_config(tmp_path / f"{agg}-{attack}", **{
        "data.num_samples": 50, "data.malicious_clients": 1, "federation.num_clients": 5,
        "federation.clients_per_round": 5, "federation.rounds": 1, "plugins.evals": [], "plugins.agg": agg,
        "plugins.attack": attack, **{f"plugins.{key}": value for key, value in options.items()}})
    recorder = Recorder()
    summary = run_tracked(cfg, recorder)
    assert summary.status == "FINISHED", summary.error
    return recorder, summary.final_metrics, Path(cfg.output_dir)


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    """(aggregator, attack) -> that round, run once for the module."""
    done: dict[tuple[str, str], tuple[Recorder, dict[str, float], Path]] = {}

    def get(agg: str, attack: str, **options):
        if (agg, attack) not in done:
            factor = {} if attack == "none" else {"attack_options": {"factor": GAMMA}}
            done[agg, attack] = attacked_round(tmp_path_factory.mktemp("runs"), agg, attack, **factor, **options)
        return done[agg, attack]

    return get


@pytest.mark.slow
def test_scale_sends_gamma_times_the_malicious_clients_delta_and_leaves_the_honest_ones(rounds):
    recorder, metrics, out = rounds("fedavg", "scale")
    assert sorted(recorder.sent) == [0, 1, 2, 3, 4]
    for cid, sent in recorder.sent.items():
        trained = recorder.trained[cid]
        assert distance(trained, recorder.x) > 0  # every client trained: no check below compares zeros
        if cid == 0:  # the malicious client: x + γ·(y − x)
            for name, d in recorder.delta(sent).items():
                torch.testing.assert_close(d, GAMMA * recorder.delta(trained)[name], rtol=1e-5, atol=1e-8)
        else:  # honest: exactly what it trained
            assert all(torch.equal(sent[name], trained[name]) for name in trained), cid
    assert metrics["attack/malicious_updates"] == 1.0
    run = logged_run(out)[0]
    assert run.data.tags["harness.attack"] == "scale" and run.data.tags["harness.plugin.attack.scale"].startswith(
        "fedllm-harness ")
    assert (run.data.params["plugins.attack"], run.data.params["plugins.attack_options.factor"]) == ("scale", "10.0")


def test_sign_flip_sends_the_reversed_scaled_delta_of_malicious_clients_only(tmp_path):
    attack = SignFlip(factor=2.0)
    attack.on_run_start(run=RunInfo("r", tmp_path, smoke_config(tmp_path, **{"data.malicious_clients": 2}), {}))
    x = {"a": torch.tensor([1.0, -1.0])}
    for cid, expected in [(0, [-1.0, -7.0]), (1, [-1.0, -7.0]), (2, [2.0, 2.0])]:
        local = {"a": torch.tensor([2.0, 2.0])}  # delta (1, 3): a malicious client sends x - 2 * (1, 3)
        assert attack.client_fit_end(client_id=cid, server_round=1, local_state=local, global_state=x, fit_ins=None,
                                     train_info=None) is None
        assert local["a"].tolist() == expected, cid


class Answers:
    """A plugin registered after the attack whose ``client_fit_end`` answers (as SCAFFOLD's does)."""

    @hookimpl
    def client_fit_end(self, client_id, server_round, local_state, global_state, fit_ins, train_info):
        return {"extra": torch.zeros(1)}


def test_the_attack_runs_even_when_another_plugin_answers_client_fit_end(tmp_path):
    pm = registry.build_manager([("attack", "scale", {"factor": 3.0})], extra=[Answers()])
    pm.hook.on_run_start(run=RunInfo("r", tmp_path, smoke_config(tmp_path, **{"data.malicious_clients": 1}), {}))
    local = {"a": torch.tensor([2.0])}
    extra = pm.hook.client_fit_end(client_id=0, server_round=1, local_state=local, global_state={"a": torch.ones(1)},
                                   fit_ins=None, train_info=None)
    assert list(extra) == ["extra"] and local["a"].tolist() == [4.0]  # 1 + 3 * (2 - 1)


@pytest.mark.slow
def test_multi_krum_and_norm_bound_undo_what_a_boosted_client_does_to_fedavg(rounds):
    clean = rounds("fedavg", "none")[0]
    boosted = rounds("fedavg", "scale")[0]
    honest_norms = [distance(clean.sent[cid], clean.x) for cid in (1, 2, 3, 4)]
    krum, krum_metrics, _ = rounds("multi-krum", "scale", agg_options={"num_malicious": 1})
    bounded, bound_metrics, _ = rounds("norm-bound", "scale", agg_options={"max_norm": max(honest_norms)})
    found = {name: r.off_honest_mean() for name, r in
             [("fedavg", clean), ("fedavg+scale", boosted), ("multi-krum+scale", krum), ("norm-bound+scale", bounded)]}
    print("distance from the honest mean / its norm:", {k: round(v, 4) for k, v in found.items()})
    assert found["fedavg+scale"] > 1.0 and found["fedavg+scale"] > 5 * found["fedavg"], found
    assert krum_metrics["agg/selected/client_0"] == 0.0 and found["multi-krum+scale"] < 1e-4, found
    assert bound_metrics["agg/clipped"] >= 1 and found["norm-bound+scale"] < 2 * found["fedavg"], found


def run_cli(tmp_path, *args: str):
    return CliRunner().invoke(main, ["run", "--preset", "smoke", "--rounds", "1", "--no-progress",
                                     "--output-dir", str(tmp_path / "out"), *args])


def test_an_attack_without_malicious_clients_is_refused_creating_nothing(tmp_path):
    result = run_cli(tmp_path, "--attack", "scale")
    assert result.exit_code == 2, result.output
    assert "plugins.attack=scale rewrites the malicious clients' updates and needs data.malicious_clients >= 1" in (
        result.output)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("attack, factor, message", [
    ("scale", "0", "factor must be a finite number other than 0, got 0"),
    ("scale", ".inf", "factor must be a finite number other than 0, got inf"),
    ("scale", "ten", "factor must be a finite number other than 0, got 'ten'"),
    ("sign-flip", "-1", "factor must be a finite number > 0, got -1"),
])
def test_a_bad_factor_is_refused_naming_the_plugin(tmp_path, attack, factor, message):
    result = run_cli(tmp_path, "--attack", attack, "--malicious-clients", "1", "--attack-opt", f"factor={factor}")
    assert result.exit_code == 2 and f"Error: attack plugin '{attack}': {message}" in result.output, result.output


def test_an_unknown_attack_lists_the_installed_ones(tmp_path):
    result = run_cli(tmp_path, "--attack", "scal", "--malicious-clients", "1")
    assert result.exit_code == 2 and "unknown attack plugin 'scal'" in result.output
    assert "installed attack plugins: none, scale, sign-flip" in result.output


def test_factor_is_checked_at_construction():
    assert Scale().multiplier == 10.0 and Scale(factor=-2).multiplier == -2.0 and SignFlip().multiplier == -1.0
    for bad in (0, math.nan, True):
        with pytest.raises(InputError, match="factor must be a finite number other than 0"):
            Scale(factor=bad)


def test_harness_plugins_lists_the_attacks():
    listed = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    assert {(p["name"], p["target"]) for p in listed if p["kind"] == "attack"} >= {
        ("none", "harness.default_plugins.attacks.none:NoAttack"),
        ("scale", "harness.default_plugins.attacks.scale:Scale"),
        ("sign-flip", "harness.default_plugins.attacks.sign_flip:SignFlip")}


def test_resume_refuses_another_attack(capsys):
    flags = {"attack": "scale", "tracking_uri": None, "output_dir": None}
    with pytest.raises(SystemExit) as stopped:
        resume_overrides(None, None, (), (), (), (), (), flags, ("factor=2",))
    assert stopped.value.code == 2 and "drop --attack-opt, --attack:" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.flower
def test_an_attacked_run_is_the_same_on_flower(tmp_path):
    args = ("--num-clients", "3", "--clients-per-round", "3", "--malicious-clients", "1", "--attack", "scale",
            "--attack-opt", "factor=5")
    _, local_history = same_run_on_both_engines(tmp_path, *args)
    assert local_history["attack/malicious_updates"] == [(1, 1.0), (2, 1.0)]


def test_an_attacker_does_not_clip_its_update_under_client_side_clipping(tmp_path):
    """DP-FedAvg with ``clipping: client`` trusts each client to clip; a client running an attack does not."""
    cfg = smoke_config(tmp_path, **{
        "data.num_samples": 50, "data.malicious_clients": 1, "federation.num_clients": 5,
        "federation.clients_per_round": 5, "federation.rounds": 1, "plugins.evals": [], "plugins.attack": "scale",
        "privacy.clip_norm": 1e-4, "privacy.clipping": "client"})
    recorder = Recorder()
    summary = run_tracked(cfg, recorder)
    norms = {cid: distance(recorder.sent[cid], recorder.x) for cid in recorder.sent}
    assert summary.final_metrics["privacy/clipped"] == 4  # the four honest clients clipped their own updates
    assert norms[0] > 100 * 1e-4 and all(norms[cid] <= 1e-4 * 1.001 for cid in range(1, 5))
