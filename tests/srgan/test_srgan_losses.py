"""Adversarial and pixel losses against values computed by hand; the perceptual network's set-up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from srgan.losses import (
    VGG19_FILE,
    PerceptualLoss,
    WeightsUnavailable,
    pixel_loss,
    relativistic_d_losses,
    relativistic_g_loss,
    vanilla_d_losses,
    vanilla_g_loss,
)

REAL = [0.5, -1.0]
FAKE = [0.3, 2.0]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def logits(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(-1, 1)  # D returns (B, 1)


def test_vanilla_losses_equal_hand_computed_values() -> None:
    g = mean([-math.log(sig(f)) for f in FAKE])  # -E[log D(G(z))]
    d_real = mean([-math.log(sig(r)) for r in REAL])  # -E[log D(x)]
    d_fake = mean([-math.log(1 - sig(f)) for f in FAKE])  # -E[log(1 - D(G(z)))]
    assert vanilla_g_loss(logits(FAKE)).item() == pytest.approx(g, rel=1e-12)
    real, fake = vanilla_d_losses(logits(REAL), logits(FAKE))
    assert real.item() == pytest.approx(d_real, rel=1e-12)
    assert fake.item() == pytest.approx(d_fake, rel=1e-12)


def test_relativistic_losses_equal_hand_computed_values() -> None:
    # D_Ra(a, b) = sigmoid(C(a) - E[C(b)]) (ESRGAN eq. 1)
    ra_real = [sig(r - mean(FAKE)) for r in REAL]  # D_Ra(x_r, x_f)
    ra_fake = [sig(f - mean(REAL)) for f in FAKE]  # D_Ra(x_f, x_r)
    # eq. 2 (D) and eq. 3 (G), each averaged over its two terms as in the ESRGAN/BasicSR code
    d_real = 0.5 * mean([-math.log(p) for p in ra_real])
    d_fake = 0.5 * mean([-math.log(1 - p) for p in ra_fake])
    g = 0.5 * (mean([-math.log(1 - p) for p in ra_real]) + mean([-math.log(p) for p in ra_fake]))
    assert relativistic_g_loss(logits(REAL), logits(FAKE)).item() == pytest.approx(g, rel=1e-12)
    real, fake = relativistic_d_losses(logits(REAL), logits(FAKE))
    assert real.item() == pytest.approx(d_real, rel=1e-12)
    assert fake.item() == pytest.approx(d_fake, rel=1e-12)


def test_relativistic_losses_use_the_given_batch_mean() -> None:
    # Under DDP the batch mean is all-reduced; the loss must take it from the callable, not torch.mean.
    def global_mean(x: torch.Tensor) -> torch.Tensor:
        return x.mean() + 1.0  # as if the other ranks' logits were higher

    ra_real = [sig(r - (mean(FAKE) + 1)) for r in REAL]
    ra_fake = [sig(f - (mean(REAL) + 1)) for f in FAKE]
    g = 0.5 * (mean([-math.log(1 - p) for p in ra_real]) + mean([-math.log(p) for p in ra_fake]))
    assert relativistic_g_loss(logits(REAL), logits(FAKE), global_mean).item() == pytest.approx(g, rel=1e-12)
    real, _ = relativistic_d_losses(logits(REAL), logits(FAKE), global_mean)
    assert real.item() == pytest.approx(0.5 * mean([-math.log(p) for p in ra_real]), rel=1e-12)


def test_relativistic_losses_are_symmetric_in_real_and_fake() -> None:
    # Swapping real and fake turns the G loss into the D loss (D_Ra is the same function of both).
    d_real, d_fake = relativistic_d_losses(logits(FAKE), logits(REAL))
    assert relativistic_g_loss(logits(REAL), logits(FAKE)).item() == pytest.approx((d_real + d_fake).item())


def test_pixel_losses() -> None:
    sr = torch.tensor([[0.0, 0.5], [1.0, 0.25]])
    gt = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    assert pixel_loss(sr, gt, "l1").item() == pytest.approx((0.5 + 0 + 1 + 0.25) / 4)
    assert pixel_loss(sr, gt, "mse").item() == pytest.approx((0.25 + 0 + 1 + 0.0625) / 4)
    with pytest.raises(ValueError, match="unknown pixel loss"):
        pixel_loss(sr, gt, "huber")


def test_perceptual_loss_is_frozen_zero_on_equal_images_and_differentiable() -> None:
    loss = PerceptualLoss("conv5_4", "untrained")
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.training and not loss.features.training
    gt = torch.rand(1, 3, 32, 32)
    assert loss(gt, gt).item() == 0.0
    sr = torch.rand(1, 3, 32, 32, requires_grad=True)
    value = loss(sr, gt)
    value.backward()
    assert value.item() > 0 and sr.grad is not None and sr.grad.abs().sum() > 0


def test_untrained_perceptual_features_are_deterministic() -> None:
    a, b = PerceptualLoss("conv2_2", "untrained"), PerceptualLoss("conv2_2", "untrained")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_imagenet_weights_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(WeightsUnavailable, match="perceptual_weights=untrained"):
        PerceptualLoss("conv5_4", "imagenet")


def test_imagenet_weights_load_from_the_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A seeded cache holds torchvision's full vgg19 state dict; only its `features.*` part is used.
    from torchvision.models import vgg19

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    torch.manual_seed(3)
    reference = vgg19(weights=None)
    # the features' tensors under their torchvision keys, plus one classifier tensor (small: a real file has
    # 548 MB of classifier weights that the loss must ignore)
    state = {f"features.{k}": v for k, v in reference.features.state_dict().items()}
    state["classifier.6.bias"] = reference.classifier[6].bias.detach()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / VGG19_FILE)
    loss = PerceptualLoss("conv5_4", "imagenet")
    x = torch.rand(1, 3, 32, 32)
    norm = (x - loss.mean) / loss.std
    with torch.no_grad():
        assert torch.equal(loss.features(norm), reference.features[:35](norm))  # conv5_4, before its ReLU
        relu = PerceptualLoss("conv5_4_relu", "imagenet").features(norm)
    assert torch.equal(relu, torch.relu(reference.features[:35](norm)))


def _no_network(*_args, **_kwargs) -> None:
    raise OSError("no network in tests")
