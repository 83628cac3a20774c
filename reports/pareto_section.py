"""The report's Pareto-search section: the search on the perception–distortion plane and its front in a table.

Reads pareto.parquet (every trial of `harness.sweep --search pareto`: its weights, its held-out validation
objectives, `rank`, `front`) and, when the front was confirmed over seeds, pareto_confirm.parquet
(`results.pareto.confirm_summary`: per front point, dataset and metric the mean over seeds and the seed range,
on the test sets). Drawn with the one PD-plane function of the report (`reports.plane.pd_plane`), which the
study's ladder uses too: all trials faint, the front as a line, the front points labelled by their weights; and
per test set the confirmed points with their seed ranges. Every string reaches the page through Jinja2's
autoescape or `plot_text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from reports import figures, plane
from reports.text import METRIC_DIGITS, METRIC_NAMES
from results import io
from results.pareto import along_front

PARETO_FILE = "pareto.parquet"  # harness.sweeps.pareto_search.PARETO_FILE (reports never import harness)
CONFIRM_FILE = "pareto_confirm.parquet"
NOT_KEYS = {"trial_id", "label", "status", "seed", "rank", "front", "preset"}


@dataclass
class FrontRow:
    weights: str  # the point's searched values, e.g. "adv_weight=0.0064"
    objectives: list[str]  # its held-out validation objectives, formatted
    confirmed: list[str] = field(default_factory=list)  # per (dataset, metric): "mean [low–high]"
    verdict: str = ""  # survives other seeds / told apart from neighbours, in words


@dataclass
class ParetoSection:
    summary: str
    objective_names: list[str]
    confirmed_names: list[str]
    rows: list[FrontRow]  # the front, sorted along the trade-off
    planes: list[tuple[str, str, str]]  # (id, figure JSON, note)
    notes: list[str]


def _objectives(table: pl.DataFrame) -> list[tuple[str, str, str]]:
    """(column, metric, mode) of the objectives pareto.parquet holds (`val_<metric>` columns)."""
    out = []
    for column in table.columns:
        if column.startswith("val_"):
            metric = column.removeprefix("val_")
            out.append((column, metric, "max" if metric in ("psnr", "ssim") else "min"))
    return out


def _fmt(value: object, metric: str) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.{METRIC_DIGITS.get(metric, 3)}f}"


def weights_label(row: dict, keys: list[str], presets: int) -> str:
    """A point's label: its searched values (the last part of each key), with its preset where several were."""
    parts = [str(row["preset"])] if presets > 1 else []
    for key in keys:
        value = row[key]
        shown = f"{value:.2g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.split('.')[-1]}={shown}")
    return " ".join(parts) or str(row["label"])


def pareto_section(root: Path) -> ParetoSection | None:
    """The section of a results folder holding pareto.parquet; None without one."""
    table = io.read_table(root / PARETO_FILE, required=False)
    if table is None:
        return None
    objectives = _objectives(table)
    columns, modes = [c for c, _, _ in objectives], [m for _, _, m in objectives]
    keys = [c for c in table.columns if c not in NOT_KEYS and not c.startswith("val_")]
    presets = table["preset"].n_unique() if "preset" in table.columns else 1
    labels = {r["trial_id"]: weights_label(r, keys, presets) for r in table.iter_rows(named=True)}
    front = along_front(table, columns, modes)
    confirm = io.read_table(root / CONFIRM_FILE, required=False)
    order = [m for _, m, _ in objectives]
    found = set(zip(confirm["dataset"], confirm["metric"], strict=True)) if confirm is not None else set()
    pairs = sorted(found, key=lambda dm: (dm[0], order.index(dm[1]) if dm[1] in order else len(order), dm[1]))
    rows = []
    for r in front.iter_rows(named=True):
        row = FrontRow(labels[r["trial_id"]], [_fmt(r[c], m) for c, m, _ in objectives])
        if confirm is not None:
            mine = confirm.filter(pl.col("point") == r["trial_id"])
            for dataset, metric in pairs:
                cell = mine.filter((pl.col("dataset") == dataset) & (pl.col("metric") == metric))
                c = cell.row(0, named=True) if cell.height else None
                row.confirmed.append("–" if c is None else f"{_fmt(c['mean'], metric)} [{_fmt(c['low'], metric)}–"
                                     f"{_fmt(c['high'], metric)}], {c['n_seeds']} seeds")
            row.verdict = _verdict(mine)
        rows.append(row)
    n, k = table.height, front.height
    said = ", ".join(f"{_name(m)} {mode}" for _, m, mode in objectives)
    summary = (f"{n} trial(s) searched on the held-out validation images ({said}); {k} on the front (no other "
               "trial as good on every objective and better on one).")
    notes = []
    if confirm is None:
        notes.append("The front was not confirmed over seeds (--confirm-seeds 0): one seed's luck may make a point.")
    planes = _planes(table, front, confirm, labels, objectives)
    return ParetoSection(summary=summary,
                         objective_names=[f"{_name(m)} ({mode}, validation)" for _, m, mode in objectives],
                         confirmed_names=[f"{_name(m)} on {d}" for d, m in pairs], rows=rows, planes=planes,
                         notes=notes)


def _name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def _verdict(mine: pl.DataFrame) -> str:
    parts = []
    for dataset in sorted(set(mine["dataset"].to_list())):
        row = mine.filter(pl.col("dataset") == dataset).row(0, named=True)
        survives = {True: "its seed means stay on the front", False: "its seed means are dominated",
                    None: "not ranked (a metric is missing)"}[row["front_of_means"]]
        apart = {True: "told apart from its neighbours", False: "not told apart from a neighbour (seed ranges "
                 "overlap on every metric)", None: "not tested (one seed or no neighbour)"}[row["distinguishable"]]
        parts.append(f"{dataset}: {survives}; {apart}")
    return "; ".join(parts)


def _planes(table: pl.DataFrame, front: pl.DataFrame, confirm: pl.DataFrame | None, labels: dict[str, str],
            objectives: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The search on the PD plane (held-out validation), then per test set the confirmed front with seed ranges;
    none where PSNR and a perception metric are not both objectives."""
    metrics = {m: c for c, m, _ in objectives}
    perception = next((m for m in ("lpips", "niqe") if m in metrics), None)
    if "psnr" not in metrics or perception is None:
        return []
    x, y = metrics[perception], metrics["psnr"]

    def mark(r: dict) -> plane.PlaneMark:
        return plane.PlaneMark(labels[r["trial_id"]], float(r[x]), float(r[y]))

    done = table.filter(pl.col(x).is_not_null() & pl.col(y).is_not_null())
    front_marks = [mark(r) for r in front.sort(x).iter_rows(named=True)]
    search = plane.pd_plane([
        plane.PlaneSeries("all trials", [mark(r) for r in done.iter_rows(named=True)], "faint"),
        plane.PlaneSeries("Pareto front", front_marks, "front"),
        plane.PlaneSeries("front points (weights)", front_marks, "points"),
    ], metric=perception, title="Pareto search: held-out validation")
    planes = [("pareto-plane-search", figures.figure_json(search),
               f"x axis: {_name(perception)} on the held-out validation crops; y: PSNR (dB, Y) on them")]
    if confirm is None:
        return planes
    for i, dataset in enumerate(sorted(set(confirm["dataset"].to_list()))):
        part = confirm.filter(pl.col("dataset") == dataset)
        marks = []
        for point in front["trial_id"].to_list():
            px = part.filter((pl.col("point") == point) & (pl.col("metric") == perception))
            py = part.filter((pl.col("point") == point) & (pl.col("metric") == "psnr"))
            if not px.height or not py.height or px["mean"][0] is None or py["mean"][0] is None:
                continue
            a, b = px.row(0, named=True), py.row(0, named=True)
            marks.append(plane.PlaneMark(labels[point], a["mean"], b["mean"], a["low"], a["high"], b["low"],
                                           b["high"], hover=f"{b['n_seeds']} seeds (range over seeds)"))
        if not marks:
            continue
        line = sorted(marks, key=lambda m: m.x)
        fig = plane.pd_plane([plane.PlaneSeries("front, seed means", line, "front"),
                                plane.PlaneSeries("confirmed points (seed range)", marks, "points")],
                               metric=perception, title=f"{dataset}: the front confirmed over seeds")
        planes.append((f"pareto-plane-{i}", figures.figure_json(fig),
                       f"{dataset}: each point the mean over its seeds, bars the range over seeds (test set, papers' "
                       "protocol)"))
    return planes
