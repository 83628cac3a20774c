"""Plain numpy/scipy reference PSNR and SSIM on Y (the MATLAB / skimage / BasicSR convention), written for
reading, not speed. Tests check `benchmarks.metrics` against it; the throughput benchmark times both.

Inputs are (H, W, 3) uint8 RGB arrays; `crop` pixels are removed from every border.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def y_channel(img_u8: np.ndarray) -> np.ndarray:
    """BT.601 Y in the 16-235 range, float64 on the 0..255 scale (not rounded)."""
    rgb = img_u8.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def _cropped_y(img_u8: np.ndarray, crop: int) -> np.ndarray:
    y = y_channel(img_u8)
    return y[crop:-crop, crop:-crop] if crop else y


def psnr_y_reference(sr_u8: np.ndarray, gt_u8: np.ndarray, crop: int) -> float:
    sr, gt = _cropped_y(sr_u8, crop), _cropped_y(gt_u8, crop)
    mse = np.mean((sr - gt) ** 2)
    return float(10.0 * np.log10(255.0**2 / mse))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """MATLAB's fspecial('gaussian', size, sigma): a 2-D Gaussian normalised to sum 1."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    xx, yy = np.meshgrid(x, x)
    window = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return window / window.sum()


def ssim_y_reference(sr_u8: np.ndarray, gt_u8: np.ndarray, crop: int) -> float:
    """Wang et al. 2004 SSIM: 11x11 Gaussian (sigma 1.5), K1 0.01, K2 0.03, L 255, valid region."""
    x, y = _cropped_y(sr_u8, crop), _cropped_y(gt_u8, crop)
    window = gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(img: np.ndarray) -> np.ndarray:
        return signal.convolve2d(img, window, mode="valid")  # the window is symmetric: conv == correlation

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())
