"""What every section of the report shares: metric names, number formats and the table cell."""

from __future__ import annotations

import math
from dataclasses import dataclass

METRIC_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS"}
METRIC_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4}
METRIC_UNITS = {"psnr": " dB", "ssim": "", "lpips": ""}
MISSING = "—"


@dataclass
class Cell:
    """A table cell: its text, a hover title (what it measures, or why it is missing) and CSS hooks."""

    text: str
    title: str | None = None
    best: bool = False
    missing: bool = False
    warn: bool = False
    sort: str = ""


def finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: float | None, metric: str, *, sign: bool = False) -> str:
    """A metric's value with its usual digits; MISSING for null/NaN, ∞ for an infinite PSNR."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if math.isinf(value):
        return "∞"
    digits = METRIC_DIGITS.get(metric, 3)
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
