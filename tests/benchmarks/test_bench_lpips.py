"""LPIPS wiring: pyiqa's LPIPS as this project loads it equals an LPIPS computed here from the same weight files.

"Identical inputs give zero" holds for any weights and any input range; this test checks the wiring instead:
the same random AlexNet backbone and linear heads go into pyiqa's metric (through `metrics.load_lpips`, the
real loading path) and into a second, independent LPIPS v0.1 (Zhang et al. 2018) written below. The input
range is the trap pyiqa's users report most: LPIPS wants [-1, 1], pyiqa's metric takes [0, 1] and rescales.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from test_bench_metrics import _seed_random_lpips_cache

from benchmarks.scoring import learned, metrics
from benchmarks.scoring.datasets import load_pairs
from srgan.resize import imresize

# LPIPS's ScalingLayer: inputs in [-1, 1] are shifted and scaled by these per-channel constants (ImageNet's
# mean and std expressed on the [-1, 1] range).
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
RELU_OUTPUTS = (1, 4, 7, 9, 11)  # torchvision AlexNet `features` indices of relu1 .. relu5


def reference_lpips(x: torch.Tensor, y: torch.Tensor, backbone: dict, heads: list[torch.Tensor], *,
                    rescale: bool = True) -> torch.Tensor:
    """LPIPS v0.1, AlexNet, from the paper's definition: x, y (B, 3, H, W) in [0, 1] -> (B,). `rescale=False`
    skips the [0, 1] -> [-1, 1] step (the classic mistake), to show the comparison would catch it."""
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(backbone)
    features = alexnet.features.double().eval()

    def taps(img: torch.Tensor) -> list[torch.Tensor]:
        h = img.double() * 2 - 1 if rescale else img.double()  # [0, 1] -> [-1, 1]
        h = (h - SHIFT.double()) / SCALE.double()  # the scaling layer
        out = []
        for i, layer in enumerate(features):
            h = layer(h)
            if i in RELU_OUTPUTS:
                out.append(h)
            if i == RELU_OUTPUTS[-1]:
                break
        return out

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for fx, fy, w in zip(taps(x), taps(y), heads, strict=True):
            nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)  # unit length along channels
            ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            d = (nx - ny).pow(2)  # (B, C, h, w)
            weighted = (d * w.double().view(1, -1, 1, 1)).sum(dim=1)  # the 1x1 linear head, no bias
            total += weighted.mean(dim=(1, 2))  # spatial average
    return total


def _heads_file() -> Path:
    return learned._lpips_pip_heads() or metrics.LPIPS_HEADS.cache_path()


def _weights() -> tuple[dict, list[torch.Tensor]]:
    backbone = torch.load(metrics.ALEXNET.cache_path(), map_location="cpu", weights_only=True)
    raw = torch.load(_heads_file(), map_location="cpu", weights_only=True)
    heads = [next(v for k, v in raw.items() if k.removeprefix("module.").startswith((f"lin{i}.", f"lins.{i}.")))
             for i in range(5)]
    return backbone, heads


def _pair(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A real pair: Set5's HR and its MATLAB-bicubic reconstruction, both on the 8-bit grid."""
    pair = load_pairs("set5", 4)[index]
    sr = imresize(pair.lq[None], scale=4).clamp(0, 1)
    return (metrics.to_u8_scale(sr) / 255).float(), (metrics.to_u8_scale(pair.gt[None]) / 255).float()


def test_pyiqa_lpips_equals_an_independent_lpips_on_real_pairs(offline: Path, data_root: Path) -> None:
    _seed_random_lpips_cache(offline)
    net = metrics.load_lpips(device="cpu")
    backbone, heads = _weights()
    for index in range(3):
        sr, gt = _pair(index)
        ours = metrics.learned_score(sr, gt, net=net)
        reference = reference_lpips(sr, gt, backbone, heads)
        assert float(reference) > 1e-3  # a real difference, not two zeros
        assert torch.allclose(ours, reference, atol=1e-6, rtol=0), (index, float(ours), float(reference))


def test_the_comparison_catches_a_wrong_input_range(offline: Path, data_root: Path) -> None:
    """Skipping the [-1, 1] rescale changes LPIPS far beyond the tolerance: the test above would catch it."""
    _seed_random_lpips_cache(offline)
    net = metrics.load_lpips(device="cpu")
    backbone, heads = _weights()
    sr, gt = _pair(0)
    wrong = reference_lpips(sr, gt, backbone, heads, rescale=False)
    assert abs(float(wrong) - float(metrics.learned_score(sr, gt, net=net))) > 1e-3
