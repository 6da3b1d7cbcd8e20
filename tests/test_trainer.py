"""Trainer behaviour: LR schedule, NaN guard, dead-latent resampling."""
import json

import pytest
import torch

from sae.config import TrainConfig
from sae.nn import build_sae
from sae.training.resample import resample_dead_latents
from sae.training.trainer import Trainer, TrainingError, lr_at


def sparse_data(n=4096, d=16, features=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(features, d, generator=gen), dim=1)
    coeffs = torch.rand(n, features, generator=gen) * (torch.rand(n, features, generator=gen) < 0.06)
    return coeffs @ dirs


def batches_of(data, batch_size, poison_step=None):
    def make(start):
        step = start
        while True:
            x = data[(step * batch_size) % len(data):][:batch_size].clone()
            if step == poison_step:
                x[3, 2] = float("nan")
            yield x
            step += 1
    return make


def test_lr_schedule_warms_up_holds_and_decays():
    cfg = TrainConfig(lr=1.0, lr_warmup_steps=10, lr_decay_fraction=0.5)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[30] == 1.0 and lrs[75] == pytest.approx(0.5) and lrs[99] == pytest.approx(0.02)


def test_nan_activations_stop_with_the_step_and_keep_last_checkpoint(tmp_path):
    data = sparse_data()
    sae = build_sae("topk", 16, 64, k=4)
    sae.init_from_data(data[:512])
    trainer = Trainer(sae, TrainConfig(batch_size=64, checkpoint_every=4, log_every=1), tmp_path, "fp")
    with pytest.raises(TrainingError, match=r"step 9: activations contain NaN/inf.*last good checkpoint"):
        trainer.fit(batches_of(data, 64, poison_step=9), total_steps=50)
    state = json.loads((tmp_path / "checkpoints/latest/state.json").read_text())
    assert state["step"] == 8
    before = (tmp_path / "checkpoints/latest/model.safetensors").read_bytes()
    # resuming on clean data continues from step 8 and completes
    again = Trainer(build_sae("topk", 16, 64, k=4), TrainConfig(batch_size=64, checkpoint_every=4, log_every=1), tmp_path, "fp")
    assert again.try_resume() and again.step == 8
    assert before == (tmp_path / "checkpoints/latest/model.safetensors").read_bytes()


def test_resampling_repoints_dead_latents_at_badly_reconstructed_inputs():
    data = sparse_data()
    sae = build_sae("relu", 16, 64, l1_coefficient=1.0)
    sae.init_from_data(data[:512])
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sae.training_step(data[:64], __import__("sae.nn", fromlist=["StepContext"]).StepContext()).loss.backward()
    opt.step()
    dead = torch.zeros(64, dtype=torch.bool)
    dead[[3, 10, 40]] = True
    untouched = sae.W_dec[~dead].clone()
    n = resample_dead_latents(sae, opt, data[:256], dead, torch.Generator().manual_seed(0))
    assert n == 3
    assert torch.equal(sae.W_dec[~dead], untouched)
    assert sae.b_enc[dead].abs().max() == 0
    assert opt.state[sae.W_dec]["exp_avg"][dead].abs().max() == 0
    # each new decoder row points along some input (minus b_dec)
    xs = data[:256] * sae.act_scale - sae.b_dec
    cos = torch.nn.functional.normalize(sae.W_dec[dead], dim=1) @ torch.nn.functional.normalize(xs, dim=1).T
    assert (cos.max(1).values > 0.999).all()


def test_resampling_in_training_revives_latents(tmp_path):
    data = sparse_data(n=8192)
    sae = build_sae("relu", 16, 128, l1_coefficient=3.0)
    sae.init_from_data(data[:512])
    with torch.no_grad():
        sae.b_enc[:64] = -100.0  # half the latents can never fire
    cfg = TrainConfig(batch_size=128, dead_window_tokens=1024, resample_dead_every=20, log_every=5, lr=3e-3)
    Trainer(sae, cfg, tmp_path, "fp").fit(batches_of(data, 128), total_steps=60)
    fired = (sae.encode(data) > 0).any(0)
    assert fired[:64].float().mean() > 0.5


@pytest.mark.parametrize("arch", ["gated", "topk", "jumprelu"])
def test_resampling_works_for_every_parameterisation(arch):
    data = sparse_data()
    sae = build_sae(arch, 16, 64)
    sae.init_from_data(data[:512])
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:5] = True
    assert resample_dead_latents(sae, opt, data[:256], dead, torch.Generator().manual_seed(0)) == 5
    assert torch.isfinite(sae(data[:32])).all()
