"""The report's plotly charts outside the study section: each dataset's perception-distortion plane, the training
curves with versions overlaid, and each trial's own curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reports import curves, figures, plane
from reports.load import Results
from reports.text import long_name


@dataclass
class Chart:
    id: str
    json: str
    title: str = ""
    note: str = ""


@dataclass
class Charts:
    planes: list[Chart]  # per dataset: a figure, or a note saying why there is none
    curves: list[Chart]  # per measure, versions overlaid
    trials: list[Chart]  # per trial, drawn when its <details> is opened


def charts(results: Results, perception: dict[str, str | None]) -> Charts:
    planes = []
    for i, dataset in enumerate(results.datasets):
        metric = perception.get(dataset)
        fig = plane.perception_distortion(results.summary, results.trials, dataset, metric) if metric else None
        if fig is None:
            planes.append(Chart(f"plane-{i}", "", dataset, "no perception–distortion plane: no perception metric "
                                "(LPIPS or NIQE) was measured on it (see Missing metrics); PSNR and SSIM both "
                                "measure distortion."))
        else:
            planes.append(Chart(f"plane-{i}", figures.figure_json(fig), dataset, f"x axis: {long_name(metric)}"))
    curve_charts: list[Chart] = []
    trial_charts: list[Chart] = []
    history = results.history
    if history is not None and history.height:
        for i, curve in enumerate(curves.curve_figures(history, results.trials)):
            curve_charts.append(Chart(f"curve-{i}", figures.figure_json(curve.figure), curve.measure.title))
        for i, trial in enumerate(results.trials.iter_rows(named=True)):
            part = history.filter(pl.col("trial_id") == trial["trial_id"])
            if part.height == 0:
                continue
            label = trial["label"] or trial["trial_id"]
            fig = figures.training_curves(part, label)
            trial_charts.append(Chart(f"trial-curves-{i}", figures.figure_json(fig), label, trial["status"] or ""))
    return Charts(planes, curve_charts, trial_charts)
