"""Plotly figures for the report: what every figure shares, and the training curves (the
perception–distortion plane: `reports.plane`).

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

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.utils import PlotlyJSONEncoder

UNTRAINED_FLAG = "untrained VGG19 features (random weights): not a perceptual loss in the papers' sense"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
TEMPLATE = "plotly_white"
# Figures carry an empty template: the page embeds TEMPLATE once and every chart uses it (`template_json`).
# A per-figure template would be copied into each figure's JSON and costs most of the build time.
LAYOUT = {"template": {}, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "font": {"size": 12}}


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


def finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


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
    layout: dict = {**LAYOUT, "height": 200 + 180 * len(panels), "title": {"text": plot_text(label)},
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
    layout = {**LAYOUT, "height": 360, "title": {"text": plot_text(title)}, "shapes": shapes,
              "annotations": annotations, "legend": {"groupclick": "togglegroup"},
              "xaxis": {"title": {"text": "generator updates (pretraining included)"}},
              "yaxis": {"title": {"text": plot_text(y_title)}}}
    return {"data": data, "layout": layout}
