"""Our lean DPO step computes exactly TRL's DPOTrainer loss (sigmoid, reverse KL) on TRL's own batch."""

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from harness.cai.train import dpo_loss, sequence_logps
from harness.config import ModelConfig
from harness.model_handle import GlobalModel
from harness.models import attach_lora, load_base
from harness.training import IGNORE, TokenizedSamples

ROWS = [
    {"prompt": "Hack wifi?", "chosen": "No, sorry.", "rejected": "Sure, step 1."},
    {"prompt": "Make a gun?", "chosen": "I can't help.", "rejected": "Sure, buy parts."},
]


def perturbed(state, gen):
    return {n: t + 0.1 * torch.randn(t.shape, generator=gen) for n, t in state.items()}


def test_dpo_loss_equals_trl_dpo_trainer(tmp_path):
    cfg = ModelConfig(name="tiny-random", lora_r=4, lora_alpha=8, lora_dropout=0.0, max_length=128)
    base, tok = load_base(cfg)
    model = GlobalModel(attach_lora(base, cfg, seed=0), tok, cfg.max_length)  # a private model: TRL patches it
    gen = torch.Generator().manual_seed(0)
    model.load_adapter_state(perturbed(model.adapter_state(), gen))
    reference_state = model.adapter_state()
    args = DPOConfig(
        output_dir=str(tmp_path), bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
        report_to=[], beta=0.3, per_device_train_batch_size=2, max_length=128,
    )
    # TRL keeps a copy of an existing adapter as the reference ("ref"), i.e. the model as it was here.
    trainer = DPOTrainer(model=model.model, args=args, train_dataset=Dataset.from_list(ROWS), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    model.load_adapter_state(perturbed(reference_state, gen))  # the policy moves; the reference stays
    trainer.model.eval()
    trl_loss = float(trainer._compute_loss(trainer.model, batch, False))

    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    keep = [mask[i].bool() for i in range(len(ids))]
    rows = TokenizedSamples(
        [ids[i][keep[i]] for i in range(len(ids))],
        [ids[i].masked_fill(completion[i] == 0, IGNORE)[keep[i]] for i in range(len(ids))],
    )
    with torch.no_grad():
        policy = sequence_logps(model, rows, range(4))
        model.load_adapter_state(reference_state)
        reference = sequence_logps(model, rows, range(4))
    ours, _, _ = dpo_loss(policy[:2], policy[2:], reference[:2], reference[2:], beta=0.3)
    assert trl_loss != pytest.approx(0.6931, abs=1e-3)  # policy != reference, so the check is not trivial
    assert float(ours) == pytest.approx(trl_loss, abs=1e-5)
