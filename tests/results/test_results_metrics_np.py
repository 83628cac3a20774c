"""results.metrics_np: the numpy Y (BT.601, 16-235) and PSNR, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from results import metrics_np


def test_y_channel_spans_the_studio_range() -> None:
    black, white = np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 255, np.uint8)
    assert metrics_np.y_channel(black)[0, 0] == pytest.approx(16.0)
    assert metrics_np.y_channel(white)[0, 0] == pytest.approx(235.0)  # 16 + 65.481 + 128.553 + 24.966
    red = np.array([[[255, 0, 0]]], np.uint8)
    assert metrics_np.y_channel(red)[0, 0] == pytest.approx(16 + 65.481)


def test_psnr_of_a_one_level_grey_shift() -> None:
    """Every channel one level up moves Y by 219/255 everywhere: PSNR = 20 log10(255 / (219/255))."""
    a = np.random.default_rng(0).integers(0, 255, (12, 10, 3)).astype(np.uint8)
    b = a + 1
    assert metrics_np.psnr_y(b, a) == pytest.approx(20 * math.log10(255 * 255 / 219), abs=1e-9)


def test_border_crop_and_identical_images() -> None:
    a = np.random.default_rng(1).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    b = a.copy()
    b[:2] = 255 - b[:2]  # differences only in the top two rows
    assert math.isfinite(metrics_np.psnr_y(b, a))
    assert metrics_np.psnr_y(b, a, crop=2) == math.inf and metrics_np.psnr_y(a, a) == math.inf


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        metrics_np.psnr_y(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        metrics_np.y_channel(np.zeros((4, 4), np.uint8))
