"""The perception–distortion plane (Blau & Michaeli, CVPR 2018): PSNR against a perception metric, one function
(`pd_plane`) for the versions, the ladder, the trials and the Pareto search, readable whatever its marks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import plotly.graph_objects as go
import polars as pl

from reports.figures import LAYOUT, UNTRAINED_FLAG, finite, plot_text
from reports.figures import color as _color
from reports.text import METRIC_DIGITS, METRIC_NAMES, higher_is_better, long_name
from results import pareto
from results.schema import METRICS, STATUS_BASELINE, UNTRAINED_VGG


@dataclass(frozen=True)
class PlanePoint:
    label: str
    x: float
    y: float
    baseline: bool


def pareto_front(points: Sequence[PlanePoint], *, x_lower_is_better: bool) -> list[PlanePoint]:
    """The points no other point beats on both axes (y = PSNR, higher is better), ordered along x best first:
    `results.pareto`'s non-dominated sorting, the one front computation of the report and the search."""
    modes = ("min" if x_lower_is_better else "max", "max")
    ranks = pareto.nondominated_ranks([(p.x, p.y) for p in points], modes)
    sign = 1.0 if x_lower_is_better else -1.0
    return sorted((p for p, rank in zip(points, ranks, strict=True) if rank == 0), key=lambda p: (sign * p.x, -p.y))


def _axis_format(metric: str) -> str:
    return f".{METRIC_DIGITS.get(metric, 3)}f"


def perception_distortion(summary: pl.DataFrame, trials: pl.DataFrame, dataset: str, metric: str) -> go.Figure | None:
    """PSNR against a perception metric (`metric`: LPIPS, or NIQE without LPIPS) on one dataset, a point per
    trial and the Pareto front (`pd_plane`: a runaway trial does not set the axes); None when no trial has both
    numbers there."""
    flags = trials["flags"] if "flags" in trials.columns else pl.Series("flags", [None] * trials.height, pl.Utf8)
    rows = summary.filter(pl.col("dataset") == dataset).join(
        trials.select("trial_id", "label", "status").with_columns(flags.alias("flags")), on="trial_id", how="left"
    )
    points = [
        PlanePoint(str(r["label"] or r["trial_id"]), float(r[metric]), float(r["psnr"]),
                   r["status"] == STATUS_BASELINE)
        for r in rows.iter_rows(named=True)
        if finite(r[metric]) and finite(r["psnr"])
    ]
    if not points:
        return None
    untrained = {str(r["label"] or r["trial_id"]) for r in rows.iter_rows(named=True)
                 if UNTRAINED_VGG in (r["flags"] or "")}
    front = pareto_front(points, x_lower_is_better=not higher_is_better(metric))
    series = [PlaneSeries("Pareto front", [PlaneMark(p.label, p.x, p.y) for p in front], "front"),
              PlaneSeries("trials", [PlaneMark(p.label, p.x, p.y, flag=UNTRAINED_FLAG if p.label in untrained else None)
                                     for p in points if not p.baseline], "faint", color="#1f77b4")]
    baseline = [PlaneMark(p.label, p.x, p.y) for p in points if p.baseline]
    if baseline:
        series.append(PlaneSeries("baseline", baseline, "points", color="#d62728", symbol="star"))
    return pd_plane(series, metric=metric, title=f"{dataset}: PSNR against {METRIC_NAMES[metric]}")


def _plane_layout(fig: go.Figure, title: str, metric: str) -> None:
    fig.update_layout(
        **LAYOUT, height=440, title={"text": plot_text(title)},
        xaxis_title=plot_text(f"{long_name(metric)} (perception)"),
        yaxis_title="PSNR (dB, Y), distortion (higher is better)",
    )
    if not higher_is_better(metric):
        fig.update_xaxes(autorange="reversed")  # better to the right, as PSNR is better up


@dataclass(frozen=True)
class PlaneMark:
    """One point on the PD plane: `x` the perception metric, `y` PSNR, each with an optional interval (a seed range
    or a CI, never ± std: `pd_plane` clips it to the metric's range anyway)."""

    label: str
    x: float
    y: float
    x_low: float | None = None
    x_high: float | None = None
    y_low: float | None = None
    y_high: float | None = None
    flag: str | None = None  # e.g. "untrained VGG19 features": a "†" after the label, an open marker, the hover says it
    hover: str | None = None  # an extra hover line ("3 seeds")


@dataclass(frozen=True)
class PlaneSeries:
    """A set of marks drawn one way: `faint` small grey markers without labels; `front` a dashed line through the
    marks in their order; `points` labelled markers with interval bars; `path` the same joined in their order (a
    ladder in weight order)."""

    name: str
    marks: Sequence[PlaneMark]
    style: Literal["faint", "front", "points", "path"]
    color: str | None = None  # default: the palette by series index
    symbol: str = "circle"  # plotly marker symbol ("star" for a baseline, "diamond" for a pretraining)


LABEL_CHAR, LABEL_HEIGHT = 0.013, 0.07  # a label's box in axis fractions (`_label_spots`)
MARKER_SPAN = (0.017, 0.029)  # an 11-px marker in axis fractions of the ~650 x 380-px plot area (`merged_labels`)
FAINT_NAMED = 5  # runaways of a faint series named in the subtitle (the rest counted)
FENCE = 3.0  # a mark more than FENCE interquartile ranges beyond the quartiles of its axis is an outlier
_LABEL_SPOTS = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left",
                "top left", "bottom right")


def _fences(values: Sequence[float]) -> tuple[float, float]:
    """The range outside which a value is a runaway: quartiles -/+ FENCE x IQR (Tukey's far-out fences), with the
    spread at least 5 % of the median's size so a tight cluster does not call its neighbours outliers."""
    if len(values) < 4:
        return -math.inf, math.inf
    q1, q3 = (float(q) for q in _quantiles(values))
    spread = max(q3 - q1, 0.05 * abs(float(sorted(values)[len(values) // 2])), 1e-12)
    return q1 - FENCE * spread, q3 + FENCE * spread


def _quantiles(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        pos = q * (len(ordered) - 1)
        low = math.floor(pos)
        return ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * (pos - low)

    return at(0.25), at(0.75)


def metric_range(metric: str) -> tuple[float, float]:
    m = METRICS.get(metric)
    return (m.lower, m.upper) if m is not None else (-math.inf, math.inf)


def clip_interval(low: float | None, high: float | None, value: float, metric: str) -> tuple[float, float] | None:
    """An interval around `value` as (minus, plus) error-bar lengths, its ends clipped to the metric's range; None
    when it has no finite ends or no width."""
    if not (finite(low) and finite(high)):
        return None
    lower, upper = metric_range(metric)
    low, high = max(min(low, value), lower), min(max(high, value), upper)
    if low == high:  # one seed (or identical ones): nothing to draw
        return None
    return value - low, high - value


def _view(marks: Sequence[PlaneMark], metric: str) -> tuple[tuple[float, float], tuple[float, float], set[int]]:
    """The axes' ranges (x, y) that keep the marks that matter readable, and the indices of the runaway marks
    drawn at the edge instead."""
    xs, ys = [m.x for m in marks], [m.y for m in marks]
    (x_lo, x_hi), (y_lo, y_hi) = _fences(xs), _fences(ys)
    out = {k for k, m in enumerate(marks) if not (x_lo <= m.x <= x_hi and y_lo <= m.y <= y_hi)}
    kept = [m for k, m in enumerate(marks) if k not in out] or list(marks)

    def span(values: list[float], metric_name: str) -> tuple[float, float]:
        low, high = min(values), max(values)
        pad = max((high - low) * 0.08, abs(high) * 0.01, 1e-6)
        lower, upper = metric_range(metric_name)
        return max(low - pad, lower), min(high + pad, upper)

    x_ends = [v for m in kept for v in (m.x, m.x_low, m.x_high) if finite(v) and x_lo <= v <= x_hi]
    y_ends = [v for m in kept for v in (m.y, m.y_low, m.y_high) if finite(v) and y_lo <= v <= y_hi]
    return span(x_ends, metric), span(y_ends, "psnr"), out


def _label_spots(points: Sequence[tuple[float, float, str]], x_range: tuple[float, float],
                 y_range: tuple[float, float], *, reverse_x: bool = False) -> list[str]:
    """A text position per point: greedily the first spot whose label box overlaps no label already placed and no
    other point, then a few passes in which each label moves to its least crowded spot given all the others. Boxes
    are in axis fractions (LABEL_CHAR of the width per character, LABEL_HEIGHT high: 12-px text on the ~650 x 380-px
    plot area of a 480-px figure, with a margin). `reverse_x`: the x axis is drawn high to low, so "right" is
    towards lower values."""
    width, height = (x_range[1] - x_range[0]) or 1.0, (y_range[1] - y_range[0]) or 1.0
    norm = [((x_range[1] - x) / width if reverse_x else (x - x_range[0]) / width, (y - y_range[0]) / height,
             len(label)) for x, y, label in points]

    def box_at(k: int, spot: str) -> tuple[float, float, float, float]:
        x, y, chars = norm[k]
        w, h, gap = LABEL_CHAR * chars + 0.01, LABEL_HEIGHT, 0.02
        vertical, horizontal = spot.split()
        cy = y + (h / 2 + gap if vertical == "top" else -h / 2 - gap if vertical == "bottom" else 0.0)
        cx = x + (w / 2 + gap if horizontal == "right" else -w / 2 - gap if horizontal == "left" else 0.0)
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    def crowding(k: int, box: tuple[float, float, float, float], others: Sequence) -> float:
        hits = sum(_overlap(box, other) for other in others) + sum(
            box[0] <= px <= box[2] and box[1] <= py <= box[3] for j, (px, py, _) in enumerate(norm) if j != k)
        return hits + 0.5 * (box[0] < 0 or box[2] > 1 or box[1] < 0 or box[3] > 1)  # off the plot: a last resort

    spots: list[str] = []
    for k in range(len(norm)):
        placed = [box_at(j, spot) for j, spot in enumerate(spots)]
        spots.append(min(_LABEL_SPOTS, key=lambda spot: crowding(k, box_at(k, spot), placed)))  # first of the best
    for _ in range(3):
        moved = False
        for k in range(len(norm)):
            others = [box_at(j, spot) for j, spot in enumerate(spots) if j != k]
            best = min(_LABEL_SPOTS, key=lambda spot: crowding(k, box_at(k, spot), others))
            if crowding(k, box_at(k, best), others) < crowding(k, box_at(k, spots[k]), others):
                spots[k], moved = best, True
        if not moved:
            break
    return spots


def merged_labels(points: Sequence[tuple[float, float, str]], x_range: tuple[float, float],
                  y_range: tuple[float, float]) -> list[str]:
    """Each point's label, where points closer than a marker's size (MARKER_SPAN of each axis) are drawn over each
    other: the first of them carries all their labels ("adv_weight = 0, 0.001" when they share a "KEY = " head,
    else joined by " / "), the others none, so no two labels compete for one spot."""
    width, height = (x_range[1] - x_range[0]) or 1.0, (y_range[1] - y_range[0]) or 1.0
    groups: list[list[int]] = []
    for k, (x, y, _) in enumerate(points):
        near = next((g for g in groups if abs(points[g[0]][0] - x) / width < MARKER_SPAN[0]
                     and abs(points[g[0]][1] - y) / height < MARKER_SPAN[1]), None)
        if near is None:
            groups.append([k])
        else:
            near.append(k)
    texts = [""] * len(points)
    for g in groups:
        labels = [points[k][2] for k in g]
        heads = {label.rpartition(" = ")[0] for label in labels}
        texts[g[0]] = (f"{heads.pop()} = " + ", ".join(label.rpartition(" = ")[2] for label in labels)
                       if len(heads) == 1 and all(" = " in label for label in labels) and len(labels) > 1
                       else " / ".join(labels))
    return texts


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def pd_plane(series: Sequence[PlaneSeries], *, metric: str, title: str) -> go.Figure:
    """PSNR (y) against a perception metric (x; reversed when lower is better, so better is up and right).

    Readable whatever the marks: the axes cover the marks that matter (a mark beyond its axis' far-out fences is a
    runaway: drawn at the edge of the view as a triangle, named with its value in the subtitle); interval bars are
    clipped to the metric's range; labels are placed so that they do not print over each other; a flagged mark
    (untrained perceptual features) keeps its flag: a "†" after its label, an open marker and the flag in its hover."""
    every = [m for s in series for m in s.marks]
    if not every:
        raise ValueError("pd_plane needs at least one mark")
    # the view from the marks themselves: a front repeats some of them and would weigh them twice
    x_range, y_range, _ = _view([m for s in series if s.style != "front" for m in s.marks] or every, metric)
    name, fmt = plot_text(METRIC_NAMES.get(metric, metric)), _axis_format(metric)
    fig = go.Figure()
    outside: list[str] = []
    labelled = [(_clamp(m.x, x_range), _clamp(m.y, y_range), m.label + (" †" if m.flag else ""))
                for s in series if s.style in ("points", "path") for m in s.marks]
    merged = merged_labels(labelled, x_range, y_range)  # marks drawn over each other share one label
    shown = [(x, y, text) for (x, y, _), text in zip(labelled, merged, strict=True) if text]
    texts = iter(merged)
    placed = iter(_label_spots(shown, x_range, y_range, reverse_x=not higher_is_better(metric)))
    for i, s in enumerate(series):
        color = s.color or _color(i)
        inside = [m for m in s.marks if x_range[0] <= m.x <= x_range[1] and y_range[0] <= m.y <= y_range[1]]
        if s.style == "front":
            fig.add_scatter(x=[m.x for m in s.marks], y=[m.y for m in s.marks], mode="lines", name=plot_text(s.name),
                            line={"color": s.color or "#999", "dash": "dash"}, hoverinfo="skip")
            continue
        if s.style == "faint":  # every mark, a runaway at the edge as a triangle; the hover gives the real values
            away = [m for m in s.marks if m not in inside]
            outside += [plot_text(f"{m.label}: {METRIC_NAMES.get(metric, metric)} {format(m.x, fmt)}, PSNR "
                                  f"{m.y:.2f} dB") for m in away[:FAINT_NAMED]]
            outside += [f"and {len(away) - FAINT_NAMED} more"] if len(away) > FAINT_NAMED else []
            fig.add_scatter(
                x=[_clamp(m.x, x_range) for m in s.marks], y=[_clamp(m.y, y_range) for m in s.marks],
                mode="markers", name=plot_text(s.name), cliponaxis=False, customdata=[[m.x, m.y] for m in s.marks],
                text=[plot_text(m.label + (f" † ({m.flag})" if m.flag else "")) for m in s.marks],
                marker={"size": 7, "color": s.color or "#bbb", "symbol": [
                    (s.symbol if m in inside else _edge_symbol(m, x_range, y_range, metric))
                    + ("-open" if m.flag else "") for m in s.marks]},
                hovertemplate=(f"%{{text}}<br>PSNR %{{customdata[1]:.2f}} dB<br>{name} %{{customdata[0]:{fmt}}}"
                               "<extra></extra>"))
            continue
        marks = list(s.marks)
        mark_texts = [next(texts) for _ in marks]
        text_spots = [next(placed) if text else "top center" for text in mark_texts]
        if s.style == "path" and len(marks) > 1:  # the path through every mark, runaways at the edge
            fig.add_scatter(x=[_clamp(m.x, x_range) for m in marks], y=[_clamp(m.y, y_range) for m in marks],
                            mode="lines", line={"color": color, "width": 1.5}, hoverinfo="skip", showlegend=False,
                            legendgroup=plot_text(s.name))
        for k, m in enumerate(marks):
            runaway = not (x_range[0] <= m.x <= x_range[1] and y_range[0] <= m.y <= y_range[1])
            label = m.label + (" †" if m.flag else "")
            hover = [plot_text(label), f"PSNR {m.y:.2f} dB", f"{name} {format(m.x, fmt)}"]
            hover += [plot_text(m.hover)] if m.hover else []
            hover += [plot_text(f"flag: {m.flag}")] if m.flag else []
            if runaway:
                outside.append(plot_text(f"{label}: {METRIC_NAMES.get(metric, metric)} {format(m.x, fmt)}, "
                                         f"PSNR {m.y:.2f} dB"))
            ex = None if runaway else clip_interval(m.x_low, m.x_high, m.x, metric)
            ey = None if runaway else clip_interval(m.y_low, m.y_high, m.y, "psnr")
            symbol = s.symbol if not runaway else _edge_symbol(m, x_range, y_range, metric)
            fig.add_scatter(
                x=[_clamp(m.x, x_range)], y=[_clamp(m.y, y_range)], mode="markers+text", name=plot_text(s.name),
                cliponaxis=False,  # a runaway's triangle sits on the edge of the view: draw it whole
                legendgroup=plot_text(s.name), showlegend=k == 0, text=[plot_text(mark_texts[k])],
                textposition=text_spots[k],
                error_x={"type": "data", "symmetric": False, "array": [ex[1] if ex else 0.0],
                         "arrayminus": [ex[0] if ex else 0.0], "visible": ex is not None},
                error_y={"type": "data", "symmetric": False, "array": [ey[1] if ey else 0.0],
                         "arrayminus": [ey[0] if ey else 0.0], "visible": ey is not None},
                marker={"size": 11, "color": color, "symbol": symbol + ("-open" if m.flag else ""),
                        "line": {"width": 2, "color": color}},
                hovertemplate="<br>".join(hover) + "<extra></extra>")
    notes = ["outside this view, drawn at its edge: " + "; ".join(outside)] if outside else []
    flags = sorted({m.flag for m in every if m.flag})
    notes += [plot_text("† " + "; ".join(flags))] if flags else []
    _plane_layout(fig, title, metric)
    fig.update_layout(title={"text": plot_text(title) + (f"<br><sub>{'<br>'.join(notes)}</sub>" if notes else "")},
                      height=480, margin={**LAYOUT["margin"], "t": 60 + 20 * len(notes)})
    reverse = not higher_is_better(metric)
    fig.update_xaxes(range=[x_range[1], x_range[0]] if reverse else list(x_range), autorange=False)
    fig.update_yaxes(range=list(y_range), autorange=False)
    return fig


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(max(value, bounds[0]), bounds[1])


def _edge_symbol(m: PlaneMark, x_range: tuple[float, float], y_range: tuple[float, float], metric: str) -> str:
    """A triangle at the edge pointing to where the runaway mark really is (x reversed when lower is better)."""
    if m.y > y_range[1]:
        return "triangle-up"
    if m.y < y_range[0]:
        return "triangle-down"
    beyond_high = m.x > x_range[1]
    right = beyond_high != (not higher_is_better(metric))  # a reversed x axis draws high values on the left
    return "triangle-right" if right else "triangle-left"
