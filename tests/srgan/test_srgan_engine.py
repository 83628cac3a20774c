"""The GAN step: phase isolation (G step leaves D alone and vice versa), non-finite losses, determinism."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from srgan_helpers import micro

from srgan.engine import GanEngine, NonFiniteLoss
from srgan.losses import d_gap, relative_logits


def snapshot(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def unchanged(net: torch.nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))


def batch(cfg, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    p, s = cfg.data.patch_size, cfg.scale
    gt = torch.rand(2, 3, p, p, generator=gen)
    return torch.rand(2, 3, p // s, p // s, generator=gen), gt


@pytest.mark.parametrize("name", ["v1", "ragan", "esrgan"])
def test_generator_step_leaves_d_unchanged_and_discriminator_step_leaves_g_unchanged(name: str) -> None:
    cfg = micro(name, train__warmup_steps=0)
    engine = GanEngine(cfg, device="cpu")
    lq, gt = batch(cfg)
    g0, d0 = snapshot(engine.net_g), snapshot(engine.net_d)
    sr = engine.generator_step(lq, gt)
    assert unchanged(engine.net_d, d0), "the G step changed D's parameters"
    assert not unchanged(engine.net_g, g0), "the G step did not train G"
    assert all(p.grad is None for p in engine.net_d.parameters()), "the G step computed D gradients"
    assert all(p.requires_grad for p in engine.net_d.parameters()), "D left frozen after the G step"
    assert not sr.requires_grad and sr.shape == gt.shape
    assert {"loss_pixel", "loss_adv_g", "loss_g", "grad_norm_g"} <= set(engine.pop_metrics())
    g1, d1 = snapshot(engine.net_g), snapshot(engine.net_d)
    engine.discriminator_step(gt, sr)
    assert unchanged(engine.net_g, g1), "the D step changed G's parameters"
    assert not unchanged(engine.net_d, d1), "the D step did not train D"
    assert {"loss_d_real", "loss_d_fake", "d_real", "d_fake", "grad_norm_d"} <= set(engine.pop_metrics())


def test_warmup_step_trains_only_g_with_the_pixel_loss() -> None:
    cfg = micro("v3", train__warmup_steps=2)
    engine = GanEngine(cfg, device="cpu")
    lq, gt = batch(cfg)
    d0 = snapshot(engine.net_d)
    phases = []
    for _ in range(3):
        phases.append(engine.phase)
        engine.train_step(lq, gt)
        metrics = engine.pop_metrics()
    assert phases == ["warmup", "warmup", "gan"]
    assert unchanged(engine.net_d, d0) is False  # D trained in the GAN step only
    assert "loss_d_real" in metrics and "loss_perceptual" in metrics
    engine2 = GanEngine(cfg, device="cpu")
    d0 = snapshot(engine2.net_d)
    engine2.train_step(lq, gt, grad_norms=True)
    warm = engine2.pop_metrics()
    assert set(warm) == {"step", "steps", "lr_g", "lr_d", "loss_pixel", "grad_norm_g"}
    assert unchanged(engine2.net_d, d0)


def test_ema_copy_follows_g_with_its_decay() -> None:
    cfg = micro("esrgan", train__warmup_steps=1, optim__ema_decay=0.9)
    engine = GanEngine(cfg, device="cpu")
    ema0, g0 = snapshot(engine.net_g_ema), snapshot(engine.net_g)
    assert all(torch.equal(a, b) for a, b in zip(ema0, g0, strict=True))
    engine.train_step(*batch(cfg))
    for e0, e1, g1 in zip(ema0, engine.net_g_ema.parameters(), engine.net_g.parameters(), strict=True):
        torch.testing.assert_close(e1, 0.9 * e0 + 0.1 * g1)
    assert engine.inference_generator() is engine.net_g_ema


@pytest.mark.parametrize("warmup", [1, 0])
def test_nan_input_raises_non_finite_loss_naming_step_and_loss(warmup: int) -> None:
    cfg = micro("ragan", train__warmup_steps=warmup)
    engine = GanEngine(cfg, device="cpu")
    lq, gt = batch(cfg)
    if warmup:
        engine.train_step(lq, gt)  # one good step first, so the failing step is step 1
    g0 = snapshot(engine.net_g)
    lq_nan = lq.clone()
    lq_nan[0, 0, 0, 0] = float("nan")
    step = engine.step
    engine.train_step(lq_nan, gt)
    with pytest.raises(NonFiniteLoss, match=rf"generator step {step}: loss_pixel is nan"):
        engine.pop_metrics()
    assert unchanged(engine.net_g, g0), "a non-finite loss must not update the weights"


def test_nan_in_warmup_names_the_warmup_phase() -> None:
    cfg = micro("v2", train__warmup_steps=3)
    engine = GanEngine(cfg, device="cpu")
    lq, gt = batch(cfg)
    gt = gt.clone()
    gt[1, 2, 5, 5] = float("inf")
    engine.train_step(lq, gt)
    with pytest.raises(NonFiniteLoss, match=r"warmup step 0: loss_pixel is (inf|nan)"):
        engine.pop_metrics()


def test_same_seed_same_trajectory_different_seed_different(run_training) -> None:
    cfg = micro("ragan", train__warmup_steps=1, loss__perceptual_layer="conv2_2")
    first = run_training(cfg, 3)
    second = run_training(cfg, 3)
    assert first == second  # exact float equality on CPU, every metric of every step
    assert [m["step"] for m in first] == [0, 1, 2]
    assert "loss_d_real" in first[-1]
    other = run_training(micro("ragan", train__warmup_steps=1, loss__perceptual_layer="conv2_2", train__seed=1), 3)
    assert [m["loss_pixel"] for m in other] != [m["loss_pixel"] for m in first]


def test_amp_policy() -> None:
    from srgan.engine import AMP_MIN_BATCH, amp_enabled

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert not amp_enabled("bf16", cpu, 256)  # never on the CPU
    assert amp_enabled("bf16", cuda, 1) and not amp_enabled("off", cuda, 1024)
    assert not amp_enabled("auto", cuda, 16) and amp_enabled("auto", cuda, AMP_MIN_BATCH)  # measured: issue 10
    assert not GanEngine(micro("v1")).use_amp


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


@pytest.mark.parametrize("name", ["v3", "ragan"])
def test_d_gap_and_raw_adversarial_loss_against_a_hand_computation(name: str) -> None:
    """d_gap from D's logits by hand: vanilla mean sigmoid(C(real)) - mean sigmoid(C(fake)); relativistic
    mean sigmoid(C(real) - mean C(fake)) - mean sigmoid(C(fake) - mean C(real)). loss_adv_raw: the G loss
    before its weight. (pop_metrics' interval means of both: test_srgan_no_sync.py.)"""
    cfg = micro(name, train__warmup_steps=0, data__batch_size=3)
    engine = GanEngine(cfg, device="cpu")
    lq, gt = batch(cfg)
    sr = engine.generator_step(lq, gt)
    twin = copy.deepcopy(engine.net_d).train()  # D as the D step will see it: same weights, batch statistics
    with torch.no_grad():
        real = twin(gt).flatten().tolist()
        fake = twin(sr).flatten().tolist()
    if name == "ragan":
        mean_real, mean_fake = _mean(real), _mean(fake)
        expected = _mean([_sig(r - mean_fake) for r in real]) - _mean([_sig(f - mean_real) for f in fake])
    else:
        expected = _mean([_sig(r) for r in real]) - _mean([_sig(f) for f in fake])
    engine.discriminator_step(gt, sr)
    out = engine.pop_metrics()  # one G and one D step: the interval's means are the step's values (float32 exactly)
    assert out["d_gap"] == pytest.approx(expected, abs=1e-6)
    assert out["loss_adv_raw"] == pytest.approx(out["loss_adv_g"] / cfg.loss.adv_weight, rel=1e-6)
    if name == "v3":  # the gap as the engine computes it: d_real - d_fake in float32
        f32 = torch.tensor([out["d_real"], out["d_fake"]], dtype=torch.float32)
        assert out["d_gap"] == pytest.approx((f32[0] - f32[1]).item(), abs=1e-12)


def test_relativistic_gap_sees_a_saturated_d_that_the_plain_gap_misses() -> None:
    """Both logits saturate sigmoid(C) at 1, so d_real - d_fake is 0, while D_Ra separates them completely."""
    real, fake = torch.tensor([[20.0], [21.0]]), torch.tensor([[10.0], [11.0]])
    assert d_gap(real, fake).item() == pytest.approx(0.0, abs=1e-4)
    rel = d_gap(*relative_logits(real, fake)).item()
    assert rel == pytest.approx(_mean([_sig(20 - 10.5), _sig(21 - 10.5)]) - _mean([_sig(10 - 20.5), _sig(11 - 20.5)]))
    assert rel > 0.99
