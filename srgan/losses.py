"""Losses: pixel (L1/MSE), VGG19 perceptual, and adversarial (vanilla and relativistic average)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from srgan.config import LossConfig

log = logging.getLogger(__name__)

# torchvision's VGG19 ImageNet weights: file name in the hub cache and where torchvision fetches it from.
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"

# index of each layer (its conv, before the ReLU) in torchvision's vgg19().features
VGG19_LAYERS = {"conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}


_FAILED_DOWNLOADS: set[Path] = set()


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are neither in the cache nor downloadable."""


def pixel_loss(sr: torch.Tensor, gt: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "l1":
        return F.l1_loss(sr, gt)
    if kind == "mse":
        return F.mse_loss(sr, gt)
    raise ValueError(f"unknown pixel loss {kind!r}")


def vgg19_cache_path() -> Path:
    """Where torchvision looks for VGG19 weights (follows TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def ensure_vgg19_weights(*, download: bool = True) -> Path:
    """The path of the ImageNet VGG19 weights in the torch hub cache, fetching them there first if allowed."""
    path = vgg19_cache_path()
    if not path.exists() and download and path not in _FAILED_DOWNLOADS:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(VGG19_URL, str(path), progress=False)
        except Exception as err:  # noqa: BLE001 - any network failure means the same thing here
            log.debug("VGG19 download failed: %s", err)
            _FAILED_DOWNLOADS.add(path)  # one try per process: config checks call this many times
    if not path.exists():
        raise WeightsUnavailable(
            f"VGG19 ImageNet weights not found at {path} and could not be downloaded. Seed the cache on a "
            f"machine with internet (`python -m benchmarks.prefetch --cache DIR`, then point TORCH_HOME at "
            f"DIR), or copy {VGG19_URL} to that path. To train with random VGG features instead, opt in "
            f"explicitly with --set loss.perceptual_weights=untrained (the results will be flagged)."
        )
    return path


def load_vgg19_state(*, download: bool = True) -> dict[str, torch.Tensor]:
    """The ImageNet VGG19 state dict (see `ensure_vgg19_weights`), loaded with weights_only=True."""
    return torch.load(ensure_vgg19_weights(download=download), map_location="cpu", weights_only=True)


class PerceptualLoss(nn.Module):
    """L1 distance between VGG19 features of SR and HR (ImageNet-normalised inputs in [0, 1]).

    The network is frozen and kept in eval mode; it is never wrapped in DDP (it has nothing to train)."""

    def __init__(self, layer: str = "conv5_4", weights: str = "imagenet") -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        name, relu = layer.removesuffix("_relu"), layer.endswith("_relu")
        end = VGG19_LAYERS[name] + (2 if relu else 1)
        # Only the convolutional part of torchvision's vgg19 (same layers and state-dict keys): building the
        # whole model would also allocate and initialise its 120 M-parameter classifier (~0.5 GB, ~1.5 s).
        features = make_layers(cfgs["E"], batch_norm=False)
        if weights == "imagenet":
            state = load_vgg19_state()
            features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                      if k.startswith("features.")})
        elif weights == "untrained":
            # Explicit opt-in: deterministic random features, flagged in every result.
            gen = torch.Generator().manual_seed(19)
            for module in features:
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, generator=gen)
                    nn.init.zeros_(module.bias)
        else:
            raise ValueError(f"unknown perceptual weights {weights!r}")
        self.features = features[:end].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # always eval: no dropout/BN in features, but be explicit

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        feat_sr = self.features((sr - self.mean) / self.std)
        with torch.no_grad():
            feat_gt = self.features((gt - self.mean) / self.std)
        return F.l1_loss(feat_sr, feat_gt)


# --------------------------------------------------------------------------------------------- adversarial

BatchMean = Callable[[torch.Tensor], torch.Tensor]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def vanilla_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -E[log D(G(z))]."""
    return _bce(fake_logits, 1.0)


def vanilla_d_losses(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(-E[log D(x_r)], -E[log(1 - D(x_f))])."""
    return _bce(real_logits, 1.0), _bce(fake_logits, 0.0)


def relative_logits(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                    batch_mean: BatchMean = torch.mean) -> tuple[torch.Tensor, torch.Tensor]:
    """The relativistic average D's logits (ESRGAN eq. 1, inside the sigmoid): C(x_r) - E[C(x_f)] and
    C(x_f) - E[C(x_r)], so that D_Ra(x_r, x_f) = sigmoid(first) and D_Ra(x_f, x_r) = sigmoid(second)."""
    return real_logits - batch_mean(fake_logits), fake_logits - batch_mean(real_logits)


def relativistic_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                        batch_mean: BatchMean = torch.mean) -> torch.Tensor:
    """ESRGAN eq. 3, averaged over its two terms as the reference code does (the paper writes the sum):
    0.5 * (-E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)]), D_Ra(a, b) = sigmoid(C(a) - E[C(b)])."""
    real_rel, fake_rel = relative_logits(real_logits, fake_logits, batch_mean)
    return 0.5 * (_bce(real_rel, 0.0) + _bce(fake_rel, 1.0))


def relativistic_d_losses(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                          batch_mean: BatchMean = torch.mean) -> tuple[torch.Tensor, torch.Tensor]:
    """ESRGAN eq. 2 split in its real and fake halves, each weighted 0.5 (their sum is the D loss)."""
    real_rel, fake_rel = relative_logits(real_logits, fake_logits, batch_mean)
    return 0.5 * _bce(real_rel, 1.0), 0.5 * _bce(fake_rel, 0.0)


def d_gap(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """How far D separates real from fake: mean sigmoid(real) - mean sigmoid(fake), in [-1, 1]; near 1 D wins
    every image and G gets little gradient (a collapse: results.schema.COLLAPSE_GAP). For a relativistic D pass
    `relative_logits(...)`: the gap of D_Ra itself, which sigmoid(C(real)) - sigmoid(C(fake)) can miss (both
    can saturate at 1 while D_Ra still separates them)."""
    return torch.sigmoid(real_logits).mean() - torch.sigmoid(fake_logits).mean()


def build_perceptual(cfg: LossConfig) -> PerceptualLoss | None:
    if cfg.perceptual_weight == 0:
        return None
    return PerceptualLoss(cfg.perceptual_layer, cfg.perceptual_weights)
