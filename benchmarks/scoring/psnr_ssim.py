"""PSNR and SSIM on Y with the papers' protocol, each a pure function on torch tensors, so a whole batch is scored
on the CPU or GPU without leaving the device: `psnr`, `ssim`, `psnr_ssim` (both, sharing the quantisation and colour
conversion) and `psnr_ssim_against(sr, reference(gt, crop=scale))` (the same numbers, the HR side computed once for
scoring many SR images against it).

The protocol (`benchmarks.scoring.metrics.protocol()` writes it into every results folder):
  - images are quantised to 8 bits first (SR is clamped to [0, 1] and rounded, as a saved PNG would be);
  - Y of BT.601 YCbCr, 16-235 range: Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1], kept
    unrounded in float64 on the 0..255 scale (BasicSR / skimage convention), peak 255;
  - `crop` pixels (the scale) removed from every border;
  - SSIM: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid region only (no padding), mean of the map
    (Wang et al. 2004).

`color="yiq"` gives pyiqa's default Y (0.299 R + 0.587 G + 0.114 B, full range), which reads 20 log10(255/219)
= 1.32 dB lower; `color="rgb"` scores the three channels (BasicSR's shipped configs). Both are recorded by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch

Color = Literal["ycbcr_bt601", "yiq", "rgb"]
COLORS: tuple[str, ...] = ("ycbcr_bt601", "yiq", "rgb")

# Y weights per colour convention, for RGB on the 0..255 scale (so Y is on 0..255 too).
_Y_WEIGHTS = {
    "ycbcr_bt601": ((65.481, 128.553, 24.966), 16.0),  # ITU-R BT.601, studio range 16..235 (MATLAB rgb2ycbcr)
    "yiq": ((0.299 * 255, 0.587 * 255, 0.114 * 255), 0.0),  # NTSC YIQ luma, full range (pyiqa's default)
}
PEAK = 255.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def to_u8_scale(img: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float in [0, 1] or uint8 -> float64 on 0..255, quantised to the 8-bit grid."""
    if img.dtype == torch.uint8:
        return img.to(torch.float64)
    # rounded in the input's own dtype, exactly as `srgan.images.save_image` writes a PNG, then widened
    return img.detach().clamp(0, 1).mul(PEAK).round().to(torch.float64)


def to_y(img_255: torch.Tensor, *, color: Color = "ycbcr_bt601") -> torch.Tensor:
    """(B, 3, H, W) float64 RGB on 0..255 -> (B, 1, H, W) Y on 0..255; "rgb" returns the input unchanged."""
    if color == "rgb":
        return img_255
    if color not in _Y_WEIGHTS:
        raise ValueError(f"unknown color {color!r}; choose one of {', '.join(COLORS)}")
    (wr, wg, wb), offset = _Y_WEIGHTS[color]
    rgb = img_255 / PEAK  # the formula is defined for RGB in [0, 1]
    y = rgb[:, 0:1] * wr
    y.add_(rgb[:, 1:2], alpha=wg).add_(rgb[:, 2:3], alpha=wb)
    return y.add_(offset)


@contextmanager
def single_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run CPU scoring on one intra-op thread, restoring the setting after.

    The work is ~50 memory-bound elementwise float64 ops per image; splitting each across threads adds a
    barrier per op, which measured 13x slower than one thread on a shared 2-core machine (other processes
    busy) and gains little on an idle one. GPU work is unaffected."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check(sr: torch.Tensor, gt_shape: torch.Size, crop: int) -> None:
    if sr.shape != gt_shape:
        raise ValueError(f"sr {tuple(sr.shape)} and gt {tuple(gt_shape)} differ in shape")
    if sr.shape[1] != 3:
        raise ValueError(f"expected RGB (B, 3, H, W) images, got {tuple(sr.shape)}")
    h, w = sr.shape[-2:]
    if crop < 0 or 2 * crop >= min(h, w):
        raise ValueError(f"crop {crop} leaves nothing of a {h}x{w} image")


def _cropped_y(img: torch.Tensor, crop: int, color: Color) -> torch.Tensor:
    y = to_y(to_u8_scale(img), color=color)
    return y[..., crop:-crop, crop:-crop] if crop else y


def _prepare(sr: torch.Tensor, gt: torch.Tensor, crop: int, color: Color) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.dim() == 3:
        sr, gt = sr[None], gt[None]
    _check(sr, gt.shape, crop)
    return _cropped_y(sr, crop, color), _cropped_y(gt, crop, color)


def psnr(sr: torch.Tensor, gt: torch.Tensor, *, crop: int, color: Color = "ycbcr_bt601") -> torch.Tensor:
    """PSNR in dB per image of a (B, 3, H, W) batch (float in [0, 1] or uint8), float64, peak 255."""
    with single_thread_on_cpu(sr.device):
        sr_y, gt_y = _prepare(sr, gt, crop, color)
        mse = (sr_y - gt_y).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(PEAK**2 / mse)  # identical images give +inf, as they should


@lru_cache(maxsize=8)
def _gaussian_1d(device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()  # the 2-D window is the outer product: separable, normalised to sum 1


def _filter_valid(x: torch.Tensor) -> torch.Tensor:
    """11x11 Gaussian filtering of (..., H, W), valid region only, as two 1-D passes (float64).

    Each pass is a weighted sum of 11 shifted views: plain vectorised multiply-adds, which run ~50x faster
    than float64 `conv2d` on the CPU (no oneDNN path for double) and are just as fast on the GPU."""
    g = _gaussian_1d(x.device).tolist()
    n = SSIM_WINDOW
    h, w = x.shape[-2:]
    rows = x[..., 0 : h - n + 1, :] * g[0]
    for k in range(1, n):
        rows.add_(x[..., k : h - n + 1 + k, :], alpha=g[k])  # in place: no temporaries per tap
    out = rows[..., 0 : w - n + 1] * g[0]
    for k in range(1, n):
        out.add_(rows[..., k : w - n + 1 + k], alpha=g[k])
    return out


def ssim(sr: torch.Tensor, gt: torch.Tensor, *, crop: int, color: Color = "ycbcr_bt601") -> torch.Tensor:
    """Mean SSIM per image of a (B, 3, H, W) batch, float64 (for "rgb", the mean over the three channels)."""
    with single_thread_on_cpu(sr.device):
        return _ssim(*_prepare(sr, gt, crop, color))


def psnr_ssim(sr: torch.Tensor, gt: torch.Tensor, *, crop: int,
              color: Color = "ycbcr_bt601") -> tuple[torch.Tensor, torch.Tensor]:
    """Both metrics from one quantisation and colour conversion (what `evaluate` uses)."""
    with single_thread_on_cpu(sr.device):
        sr_y, gt_y = _prepare(sr, gt, crop, color)
        mse = (sr_y - gt_y).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(PEAK**2 / mse), _ssim(sr_y, gt_y)


@dataclass(frozen=True)
class Reference:
    """The HR side of `psnr_ssim`, computed once for scoring many SR images against one HR batch (every model of a
    sweep on the same benchmark image): its cropped Y and its two SSIM local statistics. `psnr_ssim_against` with
    it gives `psnr_ssim`'s numbers bit for bit (the same operations on the same values)."""

    shape: torch.Size  # the HR batch's (B, 3, H, W)
    crop: int
    color: Color
    y: torch.Tensor  # (B, C, h, w) float64: cropped Y (C = 3 for "rgb")
    mu: torch.Tensor  # (B * C, 1, h - 10, w - 10): the Gaussian-filtered Y
    sq: torch.Tensor  # the same, of Y squared


def reference(gt: torch.Tensor, *, crop: int, color: Color = "ycbcr_bt601") -> Reference:
    """The `Reference` of a (B, 3, H, W) HR batch (float in [0, 1] or uint8)."""
    gt = gt[None] if gt.dim() == 3 else gt
    _check(gt, gt.shape, crop)
    with single_thread_on_cpu(gt.device):
        y = _cropped_y(gt, crop, color)
        b, c, h, w = y.shape
        _ssim_size(h, w)
        flat = y.reshape(b * c, 1, h, w)
        mu, sq = _filter_valid(torch.cat([flat, flat * flat])).chunk(2)
    return Reference(gt.shape, crop, color, y, mu, sq)


def psnr_ssim_against(sr: torch.Tensor, ref: Reference) -> tuple[torch.Tensor, torch.Tensor]:
    """`psnr_ssim(sr, gt, crop=ref.crop, color=ref.color)` with the HR side taken from `reference(gt)`."""
    sr = sr[None] if sr.dim() == 3 else sr
    _check(sr, ref.shape, ref.crop)
    with single_thread_on_cpu(sr.device):
        sr_y = _cropped_y(sr, ref.crop, ref.color)
        mse = (sr_y - ref.y).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(PEAK**2 / mse), _ssim(sr_y, ref.y, ref_stats=(ref.mu, ref.sq))


def _ssim_size(h: int, w: int) -> None:
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px after the crop, got {h}x{w}")


def _ssim(x: torch.Tensor, y: torch.Tensor, *,
          ref_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    b, c, h, w = x.shape
    _ssim_size(h, w)
    x, y = x.reshape(b * c, 1, h, w), y.reshape(b * c, 1, h, w)
    if ref_stats is None:  # the five local statistics in one filtering pass: (5 * B * C, 1, H, W)
        mu_x, mu_y, xx, yy, xy = _filter_valid(torch.cat([x, y, x * x, y * y, x * y])).chunk(5)
    else:  # y's two were filtered once (`reference`): the filter works per image, so they are the same values
        mu_y, yy = ref_stats
        mu_x, xx, xy = _filter_valid(torch.cat([x, x * x, x * y])).chunk(3)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(b, c, -1).mean(dim=2).mean(dim=1)

