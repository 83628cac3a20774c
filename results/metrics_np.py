"""The one numpy implementation of the papers' Y channel and PSNR (torch-free).

`reports` uses it for the PSNR of a crop; `benchmarks.scoring.reference` builds its plain reference metrics on it;
the torch metrics in `benchmarks.scoring.metrics` are tested against it. Inputs are (H, W, 3) uint8 RGB arrays.
"""

from __future__ import annotations

import math

import numpy as np

PEAK = 255.0
# ITU-R BT.601 luma in the studio range 16..235 (MATLAB's rgb2ycbcr), for RGB in [0, 1]
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0


def y_channel(img_u8: np.ndarray) -> np.ndarray:
    """BT.601 Y in the 16-235 range, float64 on the 0..255 scale (not rounded), shape (H, W)."""
    if img_u8.ndim != 3 or img_u8.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {img_u8.shape}")
    rgb = img_u8.astype(np.float64) / PEAK
    r, g, b = Y_WEIGHTS
    return Y_OFFSET + r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]


def crop_border(img: np.ndarray, crop: int) -> np.ndarray:
    """`crop` pixels removed from every border (the papers remove `scale` pixels)."""
    return img[crop:-crop, crop:-crop] if crop > 0 else img


def psnr_y(sr_u8: np.ndarray, gt_u8: np.ndarray, *, crop: int = 0) -> float:
    """PSNR on Y in float64 after cropping `crop` pixels per border; +inf for identical images."""
    if sr_u8.shape != gt_u8.shape:
        raise ValueError(f"images differ in shape: {sr_u8.shape} vs {gt_u8.shape}")
    sr, gt = crop_border(y_channel(sr_u8), crop), crop_border(y_channel(gt_u8), crop)
    mse = float(np.mean((sr - gt) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(PEAK**2 / mse)
