"""Plotly figures for the report: the perception–distortion plane and the training curves.

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
from plotly.subplots import make_subplots
from plotly.utils import PlotlyJSONEncoder

BASELINE_STATUS = "baseline"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
TEMPLATE = "plotly_white"
# Figures carry an empty template: the page embeds TEMPLATE once and every chart uses it (`template_json`).
# A per-figure template would be copied into each figure's JSON and costs most of the build time.
_LAYOUT = {"template": {}, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "font": {"size": 12}}


def plot_text(text: object) -> str:
    """A string for plotly to draw as plain text (plotly decodes entities, so escaping shows it verbatim)."""
    return html.escape(str(text), quote=False)


def figure_json(fig: go.Figure) -> str:
    """The figure as JSON that is safe inside a `<script type="application/json">` element."""
    return _escape_json(fig.to_json())


def _escape_json(text: str) -> str:
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def template_json() -> str:
    """The shared plotly layout template as JSON, safe inside a `<script type="application/json">`."""
    return _escape_json(json.dumps(pio.templates[TEMPLATE].to_plotly_json(), cls=PlotlyJSONEncoder))


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class PlanePoint:
    label: str
    x: float
    y: float
    baseline: bool


def pareto_front(points: Sequence[PlanePoint], *, x_lower_is_better: bool) -> list[PlanePoint]:
    """The points no other point beats on both axes (y = PSNR, higher is better), ordered along x."""
    sign = 1.0 if x_lower_is_better else -1.0
    ordered = sorted(points, key=lambda p: (sign * p.x, -p.y))  # best x first, then best y
    front: list[PlanePoint] = []
    best_y = -math.inf
    for point in ordered:
        if point.y > best_y:
            front.append(point)
            best_y = point.y
    return front


def perception_distortion(summary: pl.DataFrame, trials: pl.DataFrame, dataset: str) -> go.Figure | None:
    """PSNR against LPIPS on one dataset, a point per trial; None when no trial has LPIPS there (PSNR and SSIM
    both measure distortion: they make no perception axis)."""
    rows = summary.filter(pl.col("dataset") == dataset).join(
        trials.select("trial_id", "label", "status"), on="trial_id", how="left"
    )
    points = [
        PlanePoint(str(r["label"] or r["trial_id"]), float(r["lpips"]), float(r["psnr"]),
                   r["status"] == BASELINE_STATUS)
        for r in rows.iter_rows(named=True)
        if _finite(r["lpips"]) and _finite(r["psnr"])
    ]
    if not points:
        return None
    front = pareto_front(points, x_lower_is_better=True)
    fig = go.Figure()
    _add_front(fig, front)
    trained = [p for p in points if not p.baseline]
    fig.add_scatter(
        x=[p.x for p in trained], y=[p.y for p in trained], mode="markers", name="trials",
        text=[plot_text(p.label) for p in trained], marker={"size": 9, "color": "#1f77b4"},
        hovertemplate="%{text}<br>PSNR %{y:.2f} dB<br>LPIPS %{x:.4f}<extra></extra>",
    )
    baseline = [p for p in points if p.baseline]
    if baseline:
        fig.add_scatter(
            x=[p.x for p in baseline], y=[p.y for p in baseline], mode="markers+text", name="baseline",
            text=[plot_text(p.label) for p in baseline], textposition="top center",
            marker={"size": 13, "color": "#d62728", "symbol": "star"},
            hovertemplate="%{text}<br>PSNR %{y:.2f} dB<br>LPIPS %{x:.4f}<extra></extra>",
        )
    _plane_layout(fig, f"{dataset}: perception–distortion plane")
    return fig


def _add_front(fig: go.Figure, front: Sequence[PlanePoint]) -> None:
    fig.add_scatter(
        x=[p.x for p in front], y=[p.y for p in front], mode="lines", name="Pareto front",
        line={"color": "#999", "dash": "dash"}, hoverinfo="skip",
    )


def _plane_layout(fig: go.Figure, title: str) -> None:
    fig.update_layout(
        **_LAYOUT, height=440, title={"text": plot_text(title)},
        xaxis_title="LPIPS, perception (↓ better)", yaxis_title="PSNR (dB, Y), distortion (↑ better)",
    )
    fig.update_xaxes(autorange="reversed")  # better to the right, like PSNR is better up


@dataclass(frozen=True)
class VersionPoint:
    """A version's mean ± std over seeds on both axes."""

    version: str
    lpips: float
    lpips_std: float | None
    psnr: float
    psnr_std: float | None
    n_seeds: int
    baseline: bool


def study_plane(points: Sequence[VersionPoint], dataset: str) -> go.Figure:
    """PSNR against LPIPS per version (mean ± std over seeds as error bars) and the Pareto front of the means."""
    front = pareto_front([PlanePoint(p.version, p.lpips, p.psnr, p.baseline) for p in points],
                         x_lower_is_better=True)
    fig = go.Figure()
    _add_front(fig, front)
    for i, p in enumerate(points):
        fig.add_scatter(
            x=[p.lpips], y=[p.psnr], mode="markers+text", name=plot_text(p.version),
            text=[plot_text(p.version)], textposition="top center",
            error_x={"type": "data", "array": [p.lpips_std or 0.0], "visible": p.lpips_std is not None},
            error_y={"type": "data", "array": [p.psnr_std or 0.0], "visible": p.psnr_std is not None},
            marker={"size": 13 if p.baseline else 10, "color": "#222" if p.baseline else _color(i),
                    "symbol": "star" if p.baseline else ("diamond" if p.version.endswith("-pretrain") else "circle")},
            hovertemplate=(f"{plot_text(p.version)} ({p.n_seeds} seed{'s' if p.n_seeds != 1 else ''})"
                           "<br>PSNR %{y:.2f} dB<br>LPIPS %{x:.4f}<extra></extra>"),
        )
    _plane_layout(fig, f"{dataset}: versions on the perception–distortion plane (mean ± std over seeds)")
    return fig


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


def _line(fig: go.Figure, history: pl.DataFrame, column: str, name: str, color: str, row: int) -> None:
    if column not in history.columns:
        return
    values = history.select("step", column).drop_nulls()
    if values.height == 0:
        return
    fig.add_scatter(
        x=values["step"].to_list(), y=values[column].to_list(), mode="lines", name=name,
        line={"color": color, "width": 1.5}, row=row, col=1, legendgroup=str(row),
    )


def training_curves(history: pl.DataFrame, label: str) -> go.Figure:
    """One trial: validation PSNR, G and D losses, D(real)/D(fake), with phase changes marked."""
    history = history.sort("step")
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
        subplot_titles=("validation PSNR (dB)", "losses", "D(real) / D(fake)"),
    )
    _line(fig, history, "val_psnr", "val PSNR", _color(0), 1)
    _line(fig, history, "loss_g", "G loss", _color(1), 2)
    _line(fig, history, "loss_pixel", "pixel", _color(2), 2)
    _line(fig, history, "loss_perceptual", "perceptual", _color(4), 2)
    _line(fig, history, "loss_adv_g", "G adversarial", _color(5), 2)
    if {"loss_d_real", "loss_d_fake"} <= set(history.columns):
        d_loss = history.select("step", (pl.col("loss_d_real") + pl.col("loss_d_fake")).alias("loss_d"))
        _line(fig, d_loss, "loss_d", "D loss", _color(3), 2)
    _line(fig, history, "d_real", "D(real)", _color(2), 3)
    _line(fig, history, "d_fake", "D(fake)", _color(3), 3)
    for step, before, after in _phase_boundaries(history):
        fig.add_shape(  # one line through all panels (their x axes are matched to "x")
            type="line", x0=step, x1=step, xref="x", y0=0, y1=1, yref="paper",
            line={"color": "#555", "dash": "dot", "width": 1},
        )
        fig.add_annotation(  # inside the top panel, right of the line, clear of the subplot title
            x=step, y=1.0, xref="x", yref="y domain", text=plot_text(f" {before}→{after}"), showarrow=False,
            xanchor="left", yanchor="top", font={"size": 10, "color": "#555"},
        )
    fig.update_layout(**_LAYOUT, height=560, title={"text": plot_text(label)}, legend={"groupclick": "toggleitem"})
    fig.update_xaxes(title_text="step", row=3, col=1)
    return fig


def validation_overview(history: pl.DataFrame, labels: dict[str, str]) -> go.Figure:
    """Validation PSNR of every trial on one chart, to compare the runs at a glance."""
    fig = go.Figure()
    valid = history.select("trial_id", "step", "val_psnr").drop_nulls().sort("trial_id", "step")
    for i, (trial_id, part) in enumerate(valid.group_by("trial_id", maintain_order=True)):
        key = trial_id[0] if isinstance(trial_id, tuple) else trial_id
        fig.add_scatter(
            x=part["step"].to_list(), y=part["val_psnr"].to_list(), mode="lines",
            name=plot_text(labels.get(str(key), str(key))), line={"color": _color(i), "width": 1.5},
        )
    fig.update_layout(**_LAYOUT, height=420, title={"text": "validation PSNR, all trials"},
                      xaxis_title="step", yaxis_title="PSNR (dB) ↑")
    return fig
