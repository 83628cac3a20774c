"""Plotly figures for the report: the perception–distortion planes and the training curves.

Every function takes polars frames and returns a `plotly.graph_objects.Figure`; the page embeds them as
JSON (see `figure_json`). Text that plotly draws (trace names, hover text, annotations) goes through
`plot_text`, because plotly interprets a small set of HTML-like tags in its text: escaped, a label such as
`<b>` is shown as typed rather than as markup.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.utils import PlotlyJSONEncoder

from reports.text import METRIC_DIGITS, METRIC_NAMES, higher_is_better, long_name
from results import pareto
from results.schema import METRICS, STATUS_BASELINE, UNTRAINED_VGG

UNTRAINED_FLAG = "untrained VGG19 features (random weights): not a perceptual loss in the papers' sense"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
TEMPLATE = "plotly_white"
# Figures carry an empty template: the page embeds TEMPLATE once and every chart uses it (`template_json`).
# A per-figure template would be copied into each figure's JSON and costs most of the build time.
_LAYOUT = {"template": {}, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "font": {"size": 12}}


def plot_text(text: object) -> str:
    """A string for plotly to draw as plain text (plotly decodes entities, so escaping shows it verbatim)."""
    return html.escape(str(text), quote=False)


def figure_json(fig: go.Figure | dict) -> str:
    """The figure (a plotly Figure, or its JSON as a dict) as JSON that is safe inside a
    `<script type="application/json">` element."""
    text = fig.to_json() if isinstance(fig, go.Figure) else json.dumps(fig, cls=PlotlyJSONEncoder)
    return _escape_json(text)


def _escape_json(text: str) -> str:
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def template_json() -> str:
    """The shared plotly layout template as JSON, safe inside a `<script type="application/json">`."""
    return _escape_json(json.dumps(pio.templates[TEMPLATE].to_plotly_json(), cls=PlotlyJSONEncoder))


def color(i: int) -> str:
    """The palette's i-th colour (cycled)."""
    return _PALETTE[i % len(_PALETTE)]


_color = color


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


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
        if _finite(r[metric]) and _finite(r["psnr"])
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
        **_LAYOUT, height=440, title={"text": plot_text(title)},
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
    if not (_finite(low) and _finite(high)):
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

    x_ends = [v for m in kept for v in (m.x, m.x_low, m.x_high) if _finite(v) and x_lo <= v <= x_hi]
    y_ends = [v for m in kept for v in (m.y, m.y_low, m.y_high) if _finite(v) and y_lo <= v <= y_hi]
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
                      height=480, margin={**_LAYOUT["margin"], "t": 60 + 20 * len(notes)})
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


def _phase_boundaries(history: pl.DataFrame) -> list[tuple[int, str, str]]:
    """(step, from, to) wherever the phase changes, in step order."""
    boundaries: list[tuple[int, str, str]] = []
    previous: str | None = None
    for step, phase in history.select("step", "phase").iter_rows():
        if previous is not None and phase is not None and phase != previous:
            boundaries.append((int(step), previous, phase))
        if phase is not None:
            previous = phase
    return boundaries


def _has(history: pl.DataFrame, column: str) -> bool:
    return column in history.columns and history[column].drop_nulls().len() > 0


# A trial's panels: (title, [(column, trace name)]); a panel with no data in a trial is left out.
TRIAL_PANELS = (
    ("validation PSNR (dB)", (("val_psnr", "val PSNR"),)),
    ("validation NIQE (lower is better)", (("val_niqe", "val NIQE"),)),
    ("losses", (("loss_g", "G loss (weighted total)"), ("loss_pixel", "pixel"), ("loss_perceptual", "perceptual"),
                ("loss_adv_g", "G adversarial (weighted)"), ("loss_d", "D loss (real + fake)"))),
    ("D(real) / D(fake), D gap", (("d_real", "D(real)"), ("d_fake", "D(fake)"), ("d_gap", "D gap"))),
)
_PANEL_GAP = 0.08  # vertical space between a trial's panels, as a share of the plot


def _scatter(x: list, y: list, name: str, color: str, **extra: object) -> dict:
    """A line trace as plotly JSON. The curve figures are built as plain dicts: plotly's validated objects cost
    ~0.2 s per figure, and a study draws one figure per trial."""
    return {"type": "scatter", "mode": "lines", "x": x, "y": y, "name": plot_text(name),
            "line": {"color": color, "width": 1.5}, **extra}


def training_curves(history: pl.DataFrame, label: str) -> dict:
    """One trial: validation PSNR (and NIQE), its losses, D(real)/D(fake) and the D gap, with phase changes
    marked; only the panels the trial has data for (a pretraining has no discriminator panel). Stacked panels
    on one x axis, as plotly JSON."""
    history = history.sort("step")
    if {"loss_d_real", "loss_d_fake"} <= set(history.columns):
        history = history.with_columns((pl.col("loss_d_real") + pl.col("loss_d_fake")).alias("loss_d"))
    panels = [(title, [(c, n) for c, n in lines if _has(history, c)]) for title, lines in TRIAL_PANELS]
    panels = [(title, lines) for title, lines in panels if lines] or [("no values reported", [])]
    height = (1 - _PANEL_GAP * (len(panels) - 1)) / len(panels)
    layout: dict = {**_LAYOUT, "height": 200 + 180 * len(panels), "title": {"text": plot_text(label)},
                    "legend": {"groupclick": "toggleitem"}, "annotations": [], "shapes": []}
    data, color = [], 0
    for k, (title, lines) in enumerate(panels):
        top = 1 - k * (height + _PANEL_GAP)
        axis = "" if k == 0 else str(k + 1)
        layout[f"yaxis{axis}"] = {"domain": [max(0.0, top - height), top], "anchor": "x"}
        layout["annotations"].append({"text": plot_text(title), "x": 0.5, "xref": "paper", "xanchor": "center",
                                      "y": top, "yref": "paper", "yanchor": "bottom", "showarrow": False})
        for column, name in lines:
            values = history.select("step", column).drop_nulls()
            data.append(_scatter(values["step"].to_list(), values[column].to_list(), name, _color(color),
                                 yaxis=f"y{axis}", legendgroup=str(k + 1)))
            color += 1
    layout["xaxis"] = {"anchor": f"y{len(panels) if len(panels) > 1 else ''}", "title": {"text": "step"}}
    for step, before, after in _phase_boundaries(history):
        layout["shapes"].append({"type": "line", "x0": step, "x1": step, "xref": "x", "y0": 0, "y1": 1,
                                 "yref": "paper", "line": {"color": "#555", "dash": "dot", "width": 1}})
        layout["annotations"].append({  # inside the top panel, right of the line, clear of the panel's title
            "x": step, "y": 1.0, "xref": "x", "yref": "y domain", "text": plot_text(f" {before}→{after}"),
            "showarrow": False, "xanchor": "left", "yanchor": "top", "font": {"size": 10, "color": "#555"}})
    return {"data": data, "layout": layout}


@dataclass(frozen=True)
class CurveSeries:
    """One version's curve of one measure: the mean over its trials (seeds) at each generator update, and the
    lowest and highest trial there (None with a single trial: no spread to draw)."""

    name: str
    x: list[float]
    mean: list[float]
    low: list[float] | None
    high: list[float] | None
    n_trials: int
    color: int  # palette index, the same for a version in every figure
    pretraining: bool = False


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def compare_curves(series: Sequence[CurveSeries], *, title: str, y_title: str,
                   stage_ends: Sequence[int] = (), threshold: float | None = None) -> dict:
    """Versions overlaid on one axis of generator updates: each its mean over seeds as a line and the range
    over seeds as a band; pretrainings dashed, before the GAN stages that start where they end (dotted);
    `threshold` a dotted horizontal reference. Plotly JSON (see `_scatter`)."""
    data = []
    for s in series:
        color = _color(s.color)
        name = f"{s.name} ({s.n_trials} seed{'s' if s.n_trials != 1 else ''})"
        group = plot_text(s.name)
        if s.low is not None and s.high is not None:
            edge = {"line": {"width": 0, "color": color}, "hoverinfo": "skip", "showlegend": False,
                    "legendgroup": group}
            data.append({**_scatter(s.x, s.high, name, color), **edge})
            data.append({**_scatter(s.x, s.low, name, color), **edge, "fill": "tonexty",
                         "fillcolor": _rgba(color, 0.18)})
        mean = _scatter(s.x, s.mean, name, color, legendgroup=group,
                        hovertemplate=f"{group}<br>update %{{x}}<br>mean %{{y:.4g}}<extra></extra>")
        mean["line"].update(width=1.8, dash="dash" if s.pretraining else "solid")
        mean["mode"] = "lines" if len(s.x) > 3 else "lines+markers"
        data.append(mean)
    shapes, annotations = [], []
    for end in sorted(set(stage_ends)):
        shapes.append({"type": "line", "x0": end, "x1": end, "xref": "x", "y0": 0, "y1": 1, "yref": "paper",
                       "line": {"color": "#555", "dash": "dot", "width": 1}})
        annotations.append({"x": end, "y": 1.0, "xref": "x", "yref": "paper", "text": " pretraining → GAN",
                            "showarrow": False, "xanchor": "left", "yanchor": "top",
                            "font": {"size": 10, "color": "#555"}})
    if threshold is not None:
        shapes.append({"type": "line", "x0": 0, "x1": 1, "xref": "paper", "y0": threshold, "y1": threshold,
                       "yref": "y", "line": {"color": "#d62728", "dash": "dot", "width": 1}})
    layout = {**_LAYOUT, "height": 360, "title": {"text": plot_text(title)}, "shapes": shapes,
              "annotations": annotations, "legend": {"groupclick": "togglegroup"},
              "xaxis": {"title": {"text": "generator updates (pretraining included)"}},
              "yaxis": {"title": {"text": plot_text(y_title)}}}
    return {"data": data, "layout": layout}
