"""Plain numpy/scipy reference PSNR and SSIM on Y (the MATLAB / skimage / BasicSR convention), written for
reading, not speed. Y and PSNR are `results.metrics_np` (the project's one numpy version); SSIM is here.
Tests check `benchmarks.scoring.metrics` against it; the throughput benchmark times both.

Inputs are (H, W, 3) uint8 RGB arrays; `crop` pixels are removed from every border.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from results.metrics_np import crop_border, psnr_y, y_channel


def _cropped_y(img_u8: np.ndarray, crop: int) -> np.ndarray:
    return crop_border(y_channel(img_u8), crop)


def psnr_y_reference(sr_u8: np.ndarray, gt_u8: np.ndarray, crop: int) -> float:
    """PSNR on Y: `results.metrics_np`, the project's one numpy PSNR (torch's is tested against it)."""
    return psnr_y(sr_u8, gt_u8, crop=crop)


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
