"""CAI alignment on tiny-random: DPO reference = the post-SFT model, exact iterations, margin goes up."""

import math
from pathlib import Path

import pytest
import torch

import harness.cai.align as align_module
from harness import registry as plugin_registry
from harness.cai.align import CaiAligner, CaiSettings, split_iterations
from harness.cai.dataset import RECORDS_FILE, CaiDataset, CaiRecord, record_line
from harness.cai.train import dpo_loss, reference_logps, tokenize_pairs
from harness.config import ModelConfig, RunConfig
from harness.types import RunInfo

RECORDS = [
    CaiRecord("Hack wifi?", "a", red="Sure, step 1.", critique="Harmful.", revision="No, sorry."),
    CaiRecord("Forge a check?", "a", red="Sure, get ink.", critique="Illegal.", revision="I won't."),
    CaiRecord("Stalk my ex?", "a", red="Yes, follow.", critique="Harmful.", revision="Please don't."),
    CaiRecord("Make a gun?", "a", red="Sure, buy parts.", critique="Dangerous.", revision="I can't help."),
    CaiRecord("Phish a bank?", "a", red="Yes, copy a site.", critique="Fraud.", revision="That is fraud."),
]


@pytest.fixture()
def cai_dir(tmp_path) -> Path:
    (tmp_path / RECORDS_FILE).write_text("".join(record_line(r) for r in RECORDS))
    return tmp_path


@pytest.fixture()
def model(tiny_model):
    """The shared tiny model with a non-trivial adapter; restored afterwards."""
    saved = tiny_model.adapter_state()
    gen = torch.Generator().manual_seed(1)
    tiny_model.load_adapter_state({n: t + 0.05 * torch.randn(t.shape, generator=gen) for n, t in saved.items()})
    yield tiny_model
    tiny_model.load_adapter_state(saved)


def pair_logps(model, cai_dir):
    pairs = tokenize_pairs(model.tokenizer, CaiDataset.load(cai_dir).dpo_pairs(), model.max_length)
    return reference_logps(model, pairs, range(pairs.n), batch_size=8)


def settings(cai_dir, **options):
    """The test records' revisions are all improvements; judge=none keeps every changed one."""
    return CaiSettings(data=str(cai_dir), judge="none", **options)


def test_dpo_reference_is_the_model_after_this_rounds_sft(model, cai_dir, monkeypatch):
    before_sft = pair_logps(model, cai_dir)
    seen = {}
    real = align_module.dpo_train

    def spy(*args, **kwargs):
        seen["at_dpo_start"] = pair_logps(model, cai_dir)  # the policy when DPO starts, i.e. after the SFT steps
        seen["reference"] = dict(kwargs.get("reference", args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(align_module, "dpo_train", spy)
    result = CaiAligner(3, settings(cai_dir, batch_size=5, lr=1e-2, sft_fraction=0.67)).align(model)
    assert (result.metrics["sft_steps"], result.metrics["dpo_steps"]) == (2, 1)
    assert set(seen["reference"]) == set(before_sft)
    for i, logps in seen["at_dpo_start"].items():
        assert seen["reference"][i] == pytest.approx(logps, abs=1e-4)
        assert seen["reference"][i] != pytest.approx(before_sft[i], abs=1e-3)  # not the pre-SFT model
    # reference == policy at the first DPO step: every log-ratio is 0, so the loss is -logsigmoid(0) = log 2
    assert result.metrics["dpo_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert result.metrics["reward_margin"] == pytest.approx(0.0, abs=1e-5)


def test_iteration_count_is_honoured_exactly(model, cai_dir, monkeypatch):
    steps = {"n": 0}
    real_step = torch.optim.AdamW.step

    def counted(self, *args, **kwargs):
        steps["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted)
    result = CaiAligner(5, settings(cai_dir, sft_fraction=0.4, batch_size=2)).align(model)
    assert steps["n"] == 5
    assert (result.metrics["sft_steps"], result.metrics["dpo_steps"]) == (2, 3)
    steps["n"] = 0
    epoch = CaiAligner(None, settings(cai_dir, batch_size=2)).align(model)
    assert steps["n"] == 3 + 3  # ceil(5 / 2) SFT steps, then ceil(5 / 2) DPO steps
    assert (epoch.metrics["sft_steps"], epoch.metrics["dpo_steps"]) == (3, 3)


def test_split_iterations():
    assert (split_iterations(50, 0.5).sft_steps, split_iterations(50, 0.5).dpo_steps) == (25, 25)
    assert (split_iterations(7, 0.0).sft_steps, split_iterations(7, 1.0).dpo_steps) == (0, 0)


def test_cai_raises_the_dpo_margin_on_its_pairs(model, cai_dir):
    def margin():
        logps = pair_logps(model, cai_dir)
        return sum(c - r for c, r in logps.values()) / len(logps)

    before = margin()
    result = CaiAligner(12, settings(cai_dir, batch_size=5, lr=5e-3)).align(model)
    assert margin() > before + 1.0
    assert torch.equal(result.state[next(iter(result.state))], model.adapter_state()[next(iter(result.state))])
    assert {"sft_loss", "dpo_loss", "reward_margin", "reward_accuracy", "seconds"} <= set(result.metrics)


def test_dpo_loss_matches_the_sigmoid_formula():
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-3.5, -5.0]), torch.tensor([-3.0, -2.5])
    loss, r_c, r_r = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    # pair 1: beta * ((0.5) - (-1.0)) = 0.75; pair 2: beta * (0 - 0.5) = -0.25
    expected = -(torch.nn.functional.logsigmoid(torch.tensor(0.75)) + torch.nn.functional.logsigmoid(torch.tensor(-0.25))) / 2
    assert loss.item() == pytest.approx(expected.item())
    assert r_c.tolist() == pytest.approx([0.25, 0.0]) and r_r.tolist() == pytest.approx([-0.5, 0.25])


def test_plugins_reject_bad_options(cai_dir):
    with pytest.raises(plugin_registry.PluginError, match="iterations"):
        plugin_registry.instantiate("align", "cai50", {"iterations": 10})
    with pytest.raises(plugin_registry.PluginError, match="sft_fraction must be in"):
        plugin_registry.instantiate("align", "cai", {"sft_fraction": 1.5})
    with pytest.raises(plugin_registry.PluginError, match="iterations must be >= 1"):
        plugin_registry.instantiate("align", "cai", {"iterations": 0})
    with pytest.raises(plugin_registry.PluginError, match="judge must be one of"):
        plugin_registry.instantiate("align", "cai50", {"judge": "vibes"})
    with pytest.raises(plugin_registry.PluginError, match="not both"):
        plugin_registry.instantiate("align", "cai50", {"pairs": "demo", "data": str(cai_dir)})
    with pytest.raises(plugin_registry.PluginError, match="neither 'demo' nor an existing JSONL"):
        plugin_registry.instantiate("align", "cai50", {"pairs": str(cai_dir / "missing.jsonl")})
    with pytest.raises(plugin_registry.PluginError, match="neither 'demo' nor an existing file"):
        plugin_registry.instantiate("align", "cai50", {"prompts": str(cai_dir / "missing.txt")})  # before the run
    plugin = plugin_registry.instantiate("align", "cai", {"iterations": 8, "data": str(cai_dir)})
    assert plugin.aligner.iterations == 8
    plugin.on_run_start(run=RunInfo("r", cai_dir, RunConfig(model=ModelConfig(name="tiny-random")), {}))
    assert plugin.aligner.model_name == "tiny-random"  # picks the default guard for judge=guard
