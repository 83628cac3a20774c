"""The equal-budget control of a GAN stage (`srgan.versions.continued_stage`, issue 25): the stage's generator
updates as pixel-loss steps, everything else the stage's own. Checked against the engine itself: a control trains
the generator exactly as its GAN stage does with the adversarial weight at 0 (which is why the ladder's 0 arm of a
pixel-only recipe and the control are one run), and differently once the weight is not 0."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from srgan.engine import GanEngine, learning_rates
from srgan.versions import continued_name, continued_stage, gan_stage, preset, pretrain_stage


def _gan(name: str = "v2-tiny", **train) -> object:
    cfg = gan_stage(preset(name), init_from="pretrained")
    return replace(cfg, train=replace(cfg.train, **train)) if train else cfg


def test_a_control_keeps_the_stage_but_its_losses_and_phase() -> None:
    gan = _gan("esrgan-tiny", gan_steps=12, seed=3)
    control = continued_stage(gan)
    assert control.name == continued_name("rrdbnet") == "rrdb-continued"
    assert control.train.total_steps == gan.train.total_steps == 12
    assert (control.train.warmup_steps, control.train.gan_steps) == (12, 0)
    assert control.loss.adv_weight == control.loss.perceptual_weight == 0 and control.loss.pixel_weight == 1
    # what it shares with its stage: pretrained generator, seed, data, optimiser (EMA included), cadences
    for part in ("generator", "discriminator", "optim", "data"):
        assert getattr(control, part) == getattr(gan, part)
    same = ("seed", "init_from", "stage", "val_every", "ckpt_every", "log_every", "size")
    assert all(getattr(control.train, k) == getattr(gan.train, k) for k in same)
    assert [learning_rates(control, s) for s in range(12)] == [learning_rates(gan, s) for s in range(12)]


def test_only_a_gan_stage_has_a_control() -> None:
    with pytest.raises(ValueError, match="takes a GAN-stage config"):
        continued_stage(preset("v2-tiny"))
    with pytest.raises(ValueError, match="takes a GAN-stage config"):
        continued_stage(pretrain_stage(preset("v2-tiny")))


def _train(cfg, batches) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    engine = GanEngine(cfg)
    phases = []
    for lq, gt in batches:
        phases.append(engine.phase)
        engine.train_step(lq, gt)
    engine.pop_metrics()
    return {"phases": phases, **{k: v.clone() for k, v in engine.inference_generator().state_dict().items()}}


def test_a_control_trains_g_as_its_gan_stage_at_adversarial_weight_zero() -> None:
    gan = _gan(gan_steps=6)
    gen = torch.Generator().manual_seed(7)
    batches = [(torch.rand(4, 3, 12, 12, generator=gen), torch.rand(4, 3, 48, 48, generator=gen)) for _ in range(6)]
    control = _train(continued_stage(gan), batches)
    zero = _train(replace(gan, loss=replace(gan.loss, adv_weight=0.0)), batches)
    weighted = _train(replace(gan, loss=replace(gan.loss, adv_weight=0.1)), batches)
    assert control.pop("phases") == ["warmup"] * 6 and zero.pop("phases") == ["gan"] * 6
    weighted.pop("phases")
    for name, tensor in control.items():
        torch.testing.assert_close(tensor, zero[name], rtol=1e-6, atol=1e-7)  # the same run (no D work needed)
    assert any(not torch.allclose(control[k], weighted[k]) for k in control)  # the adversarial term moves G
