"""What every section of the report shares: metric names and directions, number formats and the table cell.

A metric's direction, range and kind (full- or no-reference) come from `results.schema.METRICS`; this module
adds only how the page writes it (its display name and digits).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from results import schema

# How the page writes each metric; a metric not listed here is shown by its schema name in capitals.
DISPLAY_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "niqe": "NIQE"}
METRIC_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "niqe": 3}
# The metrics that can be the perception axis, in the order they are preferred (LPIPS compares with the HR,
# NIQE scores the SR image alone); PSNR and SSIM both measure distortion and are never that axis.
PERCEPTION_ORDER = ("lpips", "niqe")
MISSING = "—"


def metric_names(names: Iterable[str] | None = None) -> dict[str, str]:
    """{metric: display name} for `names` (default: every metric of the schema), in schema order."""
    chosen = list(schema.METRICS) if names is None else [n for n in schema.METRICS if n in set(names)]
    return {name: DISPLAY_NAMES.get(name, name.upper()) for name in chosen}


METRIC_NAMES = metric_names()
METRIC_UNITS = {name: f" {m.unit}" if m.unit else "" for name, m in schema.METRICS.items()}


def higher_is_better(metric: str) -> bool:
    return schema.METRICS[metric].higher_is_better


def direction(metric: str) -> str:
    return "higher is better" if higher_is_better(metric) else "lower is better"


def arrow(metric: str) -> str:
    return "↑" if higher_is_better(metric) else "↓"


def full_reference(metric: str) -> bool:
    return getattr(schema.METRICS[metric], "full_reference", True)


def long_name(metric: str) -> str:
    """The metric with its kind and direction, e.g. "NIQE (no-reference), lower is better": how an axis, a claim
    or a note names the perception metric it used."""
    kind = "full-reference" if full_reference(metric) else "no-reference"
    unit = schema.METRICS[metric].unit
    return f"{METRIC_NAMES.get(metric, metric)} ({kind}{', ' + unit if unit else ''}), {direction(metric)}"


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


def non_finite(value: object) -> str | None:
    """"infinite" / "not a number" for a float that is not finite, None otherwise (null included)."""
    if isinstance(value, float) and math.isnan(value):
        return "not a number"
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isinf(value):
        return "infinite"
    return None


def fmt(value: float | None, metric: str, *, sign: bool = False) -> str:
    """A metric's value with its usual digits; MISSING for null/NaN, ∞ for an infinite PSNR."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if math.isinf(value):
        return "∞"
    digits = METRIC_DIGITS.get(metric, 3)
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_p(value: float | None) -> str:
    """A p-value: two significant digits, "< 0.001" below that."""
    if not finite(value):
        return MISSING
    return "< 0.001" if value < 0.001 else f"{value:.2g}" if value < 0.1 else f"{value:.2f}"


def pct(value: float | None) -> str:
    """A share in [0, 1] as a whole percentage."""
    return f"{100 * value:.0f} %" if finite(value) else MISSING


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
