"""Build the HTML report of a results folder: `python -m reports.build RESULTS_DIR [--out DIR]`.

Reads the files named in `results.schema` with polars (never harness, Ray or torch) and writes a folder
whose `index.html` works offline from disk: plotly.js is copied next to it once, image crops are PNG files
beside it, and every user-derived string goes through Jinja2's autoescaping. A study's folder (the tables of
`results.study.compute_study`) gets a "Study" section at the top. An unreadable or malformed results file, or
an output folder that cannot be written, stops the build with a `ResultsError` naming the file (the CLI
prints it and exits with status 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import plotly
import plotly.offline
import polars as pl
from PIL import Image

from reports import figures
from reports.study_section import StudySection, study_section
from reports.text import METRIC_NAMES, MISSING, Cell
from reports.text import fmt as _fmt
from results import io, metrics_np, rows, schema

log = logging.getLogger(__name__)

METRICS = ("psnr", "ssim", "lpips")
BASELINE = "baseline"
MAX_IMAGES_PER_DATASET = 3  # visual comparisons per dataset; the per-image table lists them all
CROP_MAX = 64  # crop side in HR pixels
CROP_DISPLAY = 192  # crop side on the page, in CSS pixels (nearest-neighbour zoom)
TEMPLATES = Path(__file__).parent / "templates"


# ---------------------------------------------------------------------------------------------- loading


@dataclass
class Results:
    root: Path
    run: dict
    trials: pl.DataFrame
    scores: pl.DataFrame
    summary: pl.DataFrame
    history: pl.DataFrame | None
    datasets: list[str]
    study: pl.DataFrame | None = None  # the study tables, when `results.study.compute_study` wrote them
    study_versions: pl.DataFrame | None = None
    study_profile: pl.DataFrame | None = None

    def label(self, trial_id: str) -> str:
        return self.labels.get(trial_id, trial_id)

    @property
    def labels(self) -> dict[str, str]:
        return {r["trial_id"]: r["label"] or r["trial_id"] for r in self.trials.iter_rows(named=True)}


# Columns without which a table means nothing; the others may be absent (they read as nulls).
REQUIRED_COLUMNS = {
    schema.TRIALS_FILE: ("trial_id",),
    schema.SCORES_FILE: ("trial_id", "dataset", "image"),
    schema.SUMMARY_FILE: ("trial_id", "dataset"),
    schema.HISTORY_FILE: ("trial_id", "step"),
    schema.STUDY_FILE: ("comparison", "dataset", "metric", "a", "b", "n", "mean_diff", "ci_low", "ci_high"),
    schema.STUDY_VERSIONS_FILE: ("version", "dataset", "metric", "mean"),
    schema.STUDY_PROFILE_FILE: ("version", "stage"),
}


def _read(path: Path, columns: dict[str, str], *, required: bool) -> pl.DataFrame | None:
    """A parquet file conformed to the schema: missing columns become nulls, extra columns are kept; a file
    that cannot be read, or lacks a required column, raises `ResultsError` naming it."""
    if path.exists():
        try:
            present = set(pl.read_parquet_schema(path))
        except (OSError, pl.exceptions.PolarsError) as err:
            raise io.ResultsError(f"{path}: not a readable parquet file ({err})") from err
        lacking = [c for c in REQUIRED_COLUMNS.get(path.name, ()) if c not in present]
        if lacking:
            raise io.ResultsError(f"{path}: required column(s) missing: {', '.join(lacking)}")
    return io.read_table(path, columns, required=required)


def load_results(results_dir: Path) -> Results:
    root = Path(results_dir)
    if not root.is_dir():
        raise io.ResultsError(f"{root}: not a results folder (no such directory)")
    run = io.read_json(root / schema.RUN_FILE, required=False) or {}
    if not isinstance(run, dict):
        raise io.ResultsError(f"{root / schema.RUN_FILE}: expected a JSON object, got {type(run).__name__}")
    trials = _read(root / schema.TRIALS_FILE, schema.TRIAL_COLUMNS, required=True)
    empty_scores = pl.DataFrame(schema=schema.polars_schema(schema.SCORE_COLUMNS))
    empty_summary = pl.DataFrame(schema=schema.polars_schema(schema.SUMMARY_COLUMNS))
    scores = _read(root / schema.SCORES_FILE, schema.SCORE_COLUMNS, required=False)
    summary = _read(root / schema.SUMMARY_FILE, schema.SUMMARY_COLUMNS, required=False)
    history = _read(root / schema.HISTORY_FILE, schema.HISTORY_COLUMNS, required=False)
    assert trials is not None
    # Baselines first, then the trials in the order the sweep wrote them.
    trials = trials.with_row_index("_order").sort(pl.col("status") != BASELINE, "_order").drop("_order")
    summary = summary if summary is not None else empty_summary
    listed = run.get("datasets")
    datasets = [str(d) for d in listed] if isinstance(listed, list) else []
    datasets += sorted(set(summary["dataset"].drop_nulls().to_list()) - set(datasets))
    return Results(root, run, trials, scores if scores is not None else empty_scores, summary, history, datasets,
                   study=_read(root / schema.STUDY_FILE, schema.STUDY_COLUMNS, required=False),
                   study_versions=_read(root / schema.STUDY_VERSIONS_FILE, schema.STUDY_VERSION_COLUMNS,
                                        required=False),
                   study_profile=_read(root / schema.STUDY_PROFILE_FILE, schema.STUDY_PROFILE_COLUMNS,
                                       required=False))


# ------------------------------------------------------------------------------------------ summary table


@dataclass
class SummaryTable:
    params: list[str]
    columns: list[tuple[str, str]]  # (dataset, metric)
    rows: list[dict]  # {"trial": row dict, "params": [str], "cells": [Cell]}
    footnotes: list[str] = field(default_factory=list)


def _fmt_param(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def summary_table(results: Results) -> SummaryTable:
    columns = [(d, m) for d in results.datasets for m in METRICS]
    by_key = {(r["trial_id"], r["dataset"]): r for r in results.summary.iter_rows(named=True)}
    best: dict[tuple[str, str], float] = {}
    for dataset, metric in columns:
        values = [r[metric] for (_, d), r in by_key.items() if d == dataset and _is_number(r[metric])]
        if values:
            best[dataset, metric] = max(values) if schema.HIGHER_IS_BETTER[metric] else min(values)
    reasons: dict[str, dict[str, list[str]]] = {}  # metric -> reason -> datasets
    params = ["preset", "pixel_weight", "perceptual_weight", "adv_weight", "seed", "status"]
    if (results.trials["stage"] == schema.STAGE_PRETRAIN).any():  # a two-stage run: say which row is which
        params.insert(1, "stage")
    rows = []
    for trial in results.trials.iter_rows(named=True):
        cells = []
        for dataset, metric in columns:
            row = by_key.get((trial["trial_id"], dataset))
            value = row[metric] if row else None
            if _is_number(value):
                is_best = (dataset, metric) in best and value == best[dataset, metric]
                cells.append(Cell(_fmt(value, metric), best=is_best, sort=repr(float(value))))
                continue
            if row is None:
                reason = (f"trial failed: {_first_line(trial['error'])}" if trial["status"] == "failed"
                          else f"no scores for {dataset}")
            else:
                reason = row.get(f"{metric}_missing") or "not computed"
                reasons.setdefault(metric, {}).setdefault(reason, [])
                if dataset not in reasons[metric][reason]:
                    reasons[metric][reason].append(dataset)
            cells.append(Cell(MISSING, title=reason, missing=True))
        rows.append({"trial": trial, "params": [_fmt_param(trial[p]) for p in params], "cells": cells})
    footnotes = [
        f"{METRIC_NAMES[metric]} missing: {reason} ({', '.join(datasets)})"
        for metric, by_reason in reasons.items() for reason, datasets in by_reason.items()
    ]
    if any(t["status"] == "failed" for t in results.trials.iter_rows(named=True)):
        footnotes.append(f"{MISSING} on a failed trial: it has no scores (see Failed and stopped trials).")
    return SummaryTable(params, columns, rows, footnotes)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


# -------------------------------------------------------------------------------------------- summaries


def _mean_by(frame: pl.DataFrame, key: str, metric: str) -> list[tuple[str, float]]:
    means = (frame.filter(pl.col(metric).is_not_null() & pl.col(metric).is_not_nan())
             .group_by(key).agg(pl.col(metric).mean()).sort(metric, descending=schema.HIGHER_IS_BETTER[metric]))
    return [(str(k), float(v)) for k, v in means.iter_rows()]


def auto_summary(results: Results) -> str:
    """One paragraph, generated from the data: best by PSNR and by LPIPS, versions ranked."""
    # A pretraining is its own version ("v2-pretrain"), not one more "v2" trial.
    version = (pl.when(pl.col("stage") == schema.STAGE_PRETRAIN).then(pl.col("preset") + "-pretrain")
               .otherwise(pl.col("preset")).alias("version"))
    joined = results.summary.join(results.trials.select("trial_id", "label", "status", version), on="trial_id")
    n_trials = results.trials.filter(pl.col("status") != BASELINE).height
    sentences = [f"{n_trials} trials on {len(results.datasets)} dataset(s) ({', '.join(results.datasets)})."]
    trained = joined.filter(pl.col("status") != BASELINE)
    for metric, unit in (("psnr", " dB"), ("ssim", ""), ("lpips", "")):
        ranked = _mean_by(trained, "trial_id", metric)
        baseline = _mean_by(joined.filter(pl.col("status") == BASELINE), "label", metric)
        scored = f"{baseline[0][0]} scores {_fmt(baseline[0][1], metric)}{unit}" if baseline else ""
        if ranked and metric != "ssim":
            trial_id, value = ranked[0]
            arrow = "highest" if schema.HIGHER_IS_BETTER[metric] else "lowest"
            text = (f"Best by {METRIC_NAMES[metric]}: {results.label(trial_id)} ({arrow} mean over datasets, "
                    f"{_fmt(value, metric)}{unit})")
            sentences.append(text + (f"; {scored}." if scored else "."))
        elif not ranked and scored:
            sentences.append(f"{METRIC_NAMES[metric]}: {scored} (mean over datasets).")
        elif not ranked and metric != "ssim":
            reasons = joined[f"{metric}_missing"].drop_nulls().unique().to_list() if (
                f"{metric}_missing" in joined.columns) else []
            sentences.append(f"No trial has {METRIC_NAMES[metric]}" + (f" ({reasons[0]})." if reasons else "."))
    for metric in ("psnr", "lpips"):
        versions = _mean_by(trained, "version", metric)
        if len(versions) > 1:
            order = " > ".join(f"{name} ({_fmt(v, metric)})" for name, v in versions)
            sentences.append(f"Versions ranked by mean {METRIC_NAMES[metric]}: {order}.")
    failed = results.trials.filter(pl.col("status") == "failed").height
    stopped = results.trials.filter(pl.col("status") == "stopped").height
    if failed or stopped:
        sentences.append(f"{failed} trial(s) failed and {stopped} stopped early.")
    return " ".join(sentences)


# ------------------------------------------------------------------------------------- visual comparisons


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(text: str, limit: int = 40) -> str:
    """A file-name fragment made only of [A-Za-z0-9_-]; never empty."""
    return _UNSAFE.sub("_", text).strip("_")[:limit] or "x"


def _is_plain_component(name: str) -> bool:
    """A name that addresses one entry of a folder (no separators, no '..'): safe to join to a path."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\x00" not in name


def _crop_box(hr_u8: np.ndarray) -> tuple[int, int, int]:
    """(top, left, side) of the most textured square window — where SR methods differ the most."""
    h, w = hr_u8.shape[:2]
    side = max(1, min(CROP_MAX, max(16, min(h, w) // 2), h, w))
    y = metrics_np.y_channel(hr_u8)
    stride = max(1, side // 2)
    best = (-1.0, 0, 0)
    for top in range(0, h - side + 1, stride):
        for left in range(0, w - side + 1, stride):
            variance = float(y[top:top + side, left:left + side].var())
            if variance > best[0]:
                best = (variance, top, left)
    return best[1], best[2], side


def _load_rgb(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as error:
        log.warning("cannot read %s: %s", path, error)
        return None


@dataclass
class Crop:
    label: str
    src: str  # relative to index.html
    psnr: str
    kind: str  # "hr" | "baseline" | "trial"


@dataclass
class Comparison:
    dataset: str
    image: str
    box: str
    crops: list[Crop]
    notes: list[str]


class _CropWriter:
    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / "crops"
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.png"):
            stale.unlink()
        self.count = 0

    def save(self, crop_u8: np.ndarray, *parts: str) -> str:
        self.count += 1
        name = f"{self.count:04d}_" + "_".join(safe_name(p, 24) for p in parts) + ".png"
        Image.fromarray(crop_u8).save(self.folder / name, compress_level=1)
        return f"crops/{name}"


def visual_comparisons(results: Results, out_dir: Path) -> list[Comparison]:
    hr_root = results.root / schema.IMAGES_DIR / schema.HR_DIR
    if not hr_root.is_dir():
        return []
    writer = _CropWriter(out_dir)
    trial_rows = [t for t in results.trials.iter_rows(named=True) if t["status"] != "failed"]
    on_disk = sorted(p.name for p in hr_root.iterdir() if p.is_dir())
    datasets = [d for d in results.datasets if d in on_disk] + [d for d in on_disk if d not in results.datasets]
    comparisons = []
    for dataset in datasets:
        files = sorted(p for p in (hr_root / dataset).iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if len(files) > MAX_IMAGES_PER_DATASET:
            log.info("%s: showing %d of %d images", dataset, MAX_IMAGES_PER_DATASET, len(files))
        for hr_path in files[:MAX_IMAGES_PER_DATASET]:
            hr = _load_rgb(hr_path)
            if hr is None:
                continue
            top, left, side = _crop_box(hr)
            window = (slice(top, top + side), slice(left, left + side))
            crops = [Crop("HR", writer.save(hr[window], dataset, hr_path.stem, "hr"), "", "hr")]
            notes = []
            for trial in trial_rows:
                trial_id = trial["trial_id"]
                if not _is_plain_component(trial_id):
                    notes.append(f"{trial['label']}: trial id is not a plain folder name; skipped")
                    continue
                sr_path = results.root / schema.IMAGES_DIR / trial_id / dataset / hr_path.name
                if not sr_path.is_file():
                    if trial["status"] == BASELINE:
                        notes.append(f"{trial['label']}: no saved images, baseline crop skipped")
                    continue
                sr = _load_rgb(sr_path)
                if sr is None or sr.shape != hr.shape:
                    notes.append(f"{trial['label']}: image missing or not the HR size, skipped")
                    continue
                kind = "baseline" if trial["status"] == BASELINE else "trial"
                src = writer.save(sr[window], dataset, hr_path.stem, trial_id)
                psnr = metrics_np.psnr_y(sr[window], hr[window])
                crops.append(Crop(trial["label"] or trial_id, src, f"{_fmt(psnr, 'psnr')} dB", kind))
            box = f"{side}×{side} px at ({left}, {top}) of {hr.shape[1]}×{hr.shape[0]}"
            comparisons.append(Comparison(dataset, hr_path.stem, box, crops, notes))
    return comparisons


# --------------------------------------------------------------------------------- other page sections


def image_score_rows(results: Results) -> list[dict]:
    labels = results.labels
    why = {(r["trial_id"], r["dataset"]): r for r in results.summary.iter_rows(named=True)}
    rows = []
    for r in results.scores.sort("dataset", "image", "trial_id").iter_rows(named=True):
        cells = []
        for m in METRICS:
            if _is_number(r[m]):
                cells.append(Cell(_fmt(r[m], m), sort=repr(float(r[m]))))
            else:
                reason = (why.get((r["trial_id"], r["dataset"])) or {}).get(f"{m}_missing") or "not computed"
                cells.append(Cell(MISSING, title=reason, missing=True))
        rows.append({"dataset": r["dataset"], "image": r["image"], "trial": labels.get(r["trial_id"], r["trial_id"]),
                     "cells": cells})
    return rows


def _pretty_json(value: str | None) -> str:
    if not value:
        return ""
    try:
        return json.dumps(json.loads(value), indent=2, sort_keys=True)
    except json.JSONDecodeError:
        return value


def _show(value: object) -> str:
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(map(str, value))
    if isinstance(value, dict | list):
        return json.dumps(value, indent=1, sort_keys=True, default=str)
    return _fmt_param(value)


def run_metadata(results: Results) -> dict:
    run = results.run
    fields = [(name, run.get(name)) for name in schema.RUN_FIELDS if name != "protocol"]
    fields += [(k, v) for k, v in run.items() if k not in schema.RUN_FIELDS]
    shown = [(k, _show(v)) for k, v in fields]
    protocol = run.get("protocol") or {}
    protocol_rows = [(str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in
                     (protocol.items() if isinstance(protocol, dict) else [("protocol", protocol)])]
    trials = []
    for t in results.trials.iter_rows(named=True):
        trials.append({"label": t["label"] or t["trial_id"], "trial_id": t["trial_id"], "status": t["status"],
                       "steps": _fmt_param(t["steps"]),
                       "wall_s": MISSING if t["wall_s"] is None else f"{t['wall_s']:.1f}",
                       "device_hours": MISSING if t["device_hours"] is None else f"{t['device_hours']:.4f}",
                       "flags": rows.json_list(t["flags"]), "config": _pretty_json(t["config_json"])})
    total = results.trials["device_hours"].drop_nulls().sum()
    warnings = []
    for t in trials:
        for flag in t["flags"]:
            warnings.append(f"{t['label']}: {flag}")
    for key, value in protocol_rows:
        if "untrained" in f"{key} {value}".lower():
            warnings.append(f"protocol {key}: {value}")
    return {"fields": shown, "protocol": protocol_rows, "trials": trials, "total_device_hours": f"{total:.4f}",
            "warnings": warnings}


@dataclass
class Chart:
    id: str
    json: str
    title: str = ""
    note: str = ""


def _lpips_unavailable(results: Results, dataset: str) -> str:
    """Why a dataset has no perception axis: the recorded reasons LPIPS is missing there."""
    rows = results.summary.filter(pl.col("dataset") == dataset)
    reasons = sorted(set(rows["lpips_missing"].drop_nulls().to_list()))
    why = "; ".join(reasons) or ("no trial has LPIPS scores" if rows.height else "no scores on this dataset")
    return (f"the perception axis is unavailable: LPIPS was not computed ({why}). PSNR and SSIM both measure "
            "distortion, so no perception–distortion plane is drawn; the summary table has both.")


def charts(results: Results) -> tuple[list[Chart], list[Chart], Chart | None]:
    """(perception–distortion charts per dataset, training curves per trial, validation overview). A dataset
    without LPIPS gets a chart with no figure (empty json) and the reason in its note."""
    planes = []
    for i, dataset in enumerate(results.datasets):
        fig = figures.perception_distortion(results.summary, results.trials, dataset)
        if fig is None:
            planes.append(Chart(f"plane-{i}", "", dataset, _lpips_unavailable(results, dataset)))
        else:
            planes.append(Chart(f"plane-{i}", figures.figure_json(fig), dataset))
    curves: list[Chart] = []
    overview = None
    history = results.history
    if history is not None and history.height:
        for i, trial in enumerate(results.trials.iter_rows(named=True)):
            part = history.filter(pl.col("trial_id") == trial["trial_id"])
            if part.height == 0:
                continue
            label = trial["label"] or trial["trial_id"]
            fig = figures.training_curves(part, label)
            curves.append(Chart(f"curves-{i}", figures.figure_json(fig), label, trial["status"] or ""))
        overview = Chart("overview", figures.figure_json(figures.validation_overview(history, results.labels)))
    return planes, curves, overview


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


def _write_plotlyjs(out_dir: Path) -> str:
    name = f"plotly-{safe_name(plotly.offline.get_plotlyjs_version(), 20)}.min.js"
    target = out_dir / name
    script = plotly.offline.get_plotlyjs()
    if not target.exists() or target.stat().st_size != len(script.encode()):
        target.write_text(script, encoding="utf-8")
    return name


def study(results: Results) -> StudySection | None:
    return study_section(results.study, results.study_versions, results.study_profile, results.trials,
                         results.datasets)


def build_report(results_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Write the report of `results_dir` to `out_dir` (default `results_dir/report`); returns index.html.

    Raises `results.io.ResultsError` (naming the file) for an unreadable or malformed results file and for an
    output folder that cannot be written."""
    results = load_results(Path(results_dir))
    out = io.check_writable(Path(out_dir) if out_dir is not None else results.root / "report")
    try:
        return _build(results, out)
    except OSError as err:  # a full disk, or permissions changed under us
        where = err.filename or out
        raise io.ResultsError(f"{where}: cannot write the report ({err.strerror or err})") from err


def _build(results: Results, out: Path) -> Path:
    planes, curves, overview = charts(results)
    trials = list(results.trials.iter_rows(named=True))
    page = _environment().get_template("report.html").render(
        title=f"enhance-this report: {results.root.name}",
        study=study(results),
        plotly_js=_write_plotlyjs(out),
        plotly_template=figures.template_json(),
        summary=summary_table(results),
        metric_names=METRIC_NAMES,
        higher_is_better=schema.HIGHER_IS_BETTER,
        paragraph=auto_summary(results),
        planes=planes,
        curves=curves,
        overview=overview,
        comparisons=visual_comparisons(results, out),
        crop_display=CROP_DISPLAY,
        image_rows=image_score_rows(results),
        meta=run_metadata(results),
        failed=[t for t in trials if t["status"] == "failed"],
        stopped=[t for t in trials if t["status"] == "stopped"],
        has_history=results.history is not None,
    )
    index = out / "index.html"
    io.atomic_write(index, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    log.info("report written to %s", index)
    return index


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the HTML report of a results folder.")
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: RESULTS_DIR/report)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        index = build_report(args.results_dir, args.out)
    except io.ResultsError as err:
        parser.exit(2, f"error: {err}\n")
    print(index)


if __name__ == "__main__":
    main()
