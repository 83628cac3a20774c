"""Build the HTML report of a results folder: `python -m reports.build RESULTS_DIR [--out DIR]`.

Reads the files named in `results.schema` with polars (never harness, Ray or torch) and writes a folder
whose `index.html` works offline from disk: plotly.js is copied next to it once, image crops are PNG files
beside it, and every user-derived string goes through Jinja2's autoescaping. A study's folder (the tables of
`results.study.compute_study`) gets a "Study" section at the top (`reports.study_section`). A metric that is
missing is said once, near the top, with its reason; the perception axis is LPIPS where it was measured, else
NIQE. An unreadable or malformed results file, a table that lists a key twice (`reports.load`), or an output
folder that cannot be written, stops the build with a `ResultsError` naming the file (the CLI prints it and
exits with status 2); a summary.parquet that disagrees with scores.parquet is recomputed from the scores, and
the page says so.
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

from reports import curves, figures
from reports.load import Results, load_results
from reports.pareto_section import pareto_section
from reports.study_section import StudySection, study_section
from reports.text import METRIC_NAMES, METRIC_UNITS, MISSING, PERCEPTION_ORDER, Cell, higher_is_better, long_name
from reports.text import fmt as _fmt
from results import io, metrics_np, rows, schema

log = logging.getLogger(__name__)

BASELINE = schema.STATUS_BASELINE
MAX_IMAGES_PER_DATASET = 3  # visual comparisons per dataset; the per-image table lists them all
CROP_MAX = 64  # crop side in HR pixels
CROP_DISPLAY = 192  # crop side on the page, in CSS pixels (nearest-neighbour zoom)
TEMPLATES = Path(__file__).parent / "templates"


# ------------------------------------------------------------------------------------------ summary table


@dataclass
class SummaryTable:
    params: list[str]
    metrics: list[str]
    columns: list[tuple[str, str]]  # (dataset, metric)
    rows: list[dict]  # {"trial": row dict, "params": [Cell], "cells": [Cell]}
    footnotes: list[str] = field(default_factory=list)


# A pretraining uses the pixel loss alone: these settings do not apply to it (left blank in its row).
PRETRAIN_UNUSED = ("perceptual_weight", "adv_weight")


def _fmt_param(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _param_cell(trial: dict, name: str) -> Cell:
    pretraining = trial["stage"] == schema.STAGE_PRETRAIN
    if pretraining and name in PRETRAIN_UNUSED:
        return Cell("", "not used: a pretraining trains with the pixel loss only")
    if pretraining and name == "preset" and not rows.LEGACY_PRETRAIN_NAME.fullmatch(str(trial["preset"])):
        return Cell(trial["version"], f"recorded as preset {trial['preset']!r} in this older results folder")
    return Cell(_fmt_param(trial[name]))


def _missing_title(metric: str) -> str:
    return f"{METRIC_NAMES[metric]} not computed: see Missing metrics at the top"


def summary_table(results: Results) -> SummaryTable:
    metrics = results.metrics
    columns = [(d, m) for d in results.datasets for m in metrics]
    by_key = {(r["trial_id"], r["dataset"]): r for r in results.summary.iter_rows(named=True)}
    best: dict[tuple[str, str], float] = {}
    for dataset, metric in columns:
        values = [r[metric] for (_, d), r in by_key.items() if d == dataset and _is_number(r[metric])]
        if values:
            best[dataset, metric] = max(values) if higher_is_better(metric) else min(values)
    trials = results.trials
    params = ["preset", "pixel_weight", "perceptual_weight", "adv_weight", "seed"]
    if (trials["stage"] == schema.STAGE_PRETRAIN).any():  # a two-stage run: say which row is which
        params.insert(1, "stage")
    params += [c for c in ("g_updates", "selection") if trials[c].drop_nulls().len()] + ["status"]
    out_rows = []
    for trial in trials.iter_rows(named=True):
        cells = []
        for dataset, metric in columns:
            row = by_key.get((trial["trial_id"], dataset))
            value = row[metric] if row else None
            if _is_number(value):
                is_best = (dataset, metric) in best and value == best[dataset, metric]
                cells.append(Cell(_fmt(value, metric), best=is_best, sort=repr(float(value))))
            elif row is None:
                cells.append(Cell(MISSING, f"trial failed: {_first_line(trial['error'])}"
                                  if trial["status"] == "failed" else f"no scores for {dataset}", missing=True))
            else:
                cells.append(Cell(MISSING, _missing_title(metric), missing=True))
        out_rows.append({"trial": trial, "params": [_param_cell(trial, p) for p in params], "cells": cells})
    footnotes = []
    if any(c.missing and c.title and c.title.endswith("Missing metrics at the top") for r in out_rows
           for c in r["cells"]):
        footnotes.append(f"{MISSING} where a metric was not computed: why is said once, under Missing metrics.")
    if any(t["status"] == "failed" for t in trials.iter_rows(named=True)):
        footnotes.append(f"{MISSING} on a failed trial: it has no scores (see Failed and stopped trials).")
    if "stage" in params:
        footnotes.append("A pretraining's perceptual and adversarial weights are blank: it uses the pixel loss only.")
    return SummaryTable(params, metrics, columns, out_rows, footnotes)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------------------- missing metrics, once


def _where(datasets: list[str], all_datasets: list[str], n_trials: int, of_trials: int) -> str:
    place = "every dataset" if set(datasets) >= set(all_datasets) else ", ".join(datasets)
    who = "every trial" if n_trials >= of_trials else f"{n_trials} of {of_trials} trials"
    return f"{place}, {who}"


def missing_metrics(results: Results) -> list[str]:
    """Each missing metric and why, once per reason: the one place the page says it (near the top)."""
    had = results.present.get(schema.SCORES_FILE, frozenset()) | results.present.get(schema.SUMMARY_FILE,
                                                                                      frozenset())
    if not had:
        return ["No scores: these results have neither scores.parquet nor summary.parquet."]
    summary = results.summary
    recorded = results.run.get("metrics_missing") if isinstance(results.run.get("metrics_missing"), dict) else {}
    of_trials = summary["trial_id"].n_unique()
    out = []
    for metric in schema.METRICS:
        name = long_name(metric)
        if metric not in had:
            out.append(f"{name}: not recorded: these results have no {metric} column (they were written before it "
                       "was scored).")
            continue
        lacking = summary.filter(pl.col(metric).is_null() | pl.col(metric).is_nan())
        if not lacking.height:
            continue
        reason_column = f"{metric}_missing"
        reasons = (lacking[reason_column] if reason_column in lacking.columns
                   else pl.Series([None] * lacking.height, dtype=pl.Utf8))
        lacking = lacking.with_columns(reasons.fill_null(str(recorded.get(metric) or "no reason recorded"))
                                       .alias("_why"))
        for (why,), part in lacking.group_by(["_why"], maintain_order=True):
            datasets = part["dataset"].unique(maintain_order=True).to_list()
            where = _where(datasets, results.datasets, part["trial_id"].n_unique(), of_trials)
            out.append(f"{name}: missing on {where}: {why}")
    return out


def perception_metrics(results: Results) -> dict[str, str | None]:
    """Each dataset's perception axis: LPIPS where it was measured, else NIQE, else none."""
    chosen: dict[str, str | None] = {}
    names = set(results.datasets) | set(results.summary["dataset"].drop_nulls().to_list())
    if results.study_versions is not None:
        names |= set(results.study_versions["dataset"].drop_nulls().to_list())
    for dataset in names:
        part = results.summary.filter(pl.col("dataset") == dataset)
        chosen[dataset] = next((m for m in PERCEPTION_ORDER if m in results.metrics
                                and part[m].drop_nulls().drop_nans().len()), None)
    return chosen


# -------------------------------------------------------------------------------------------- summaries


def _mean_by(frame: pl.DataFrame, key: str, metric: str) -> list[tuple[str, float]]:
    means = (frame.filter(pl.col(metric).is_not_null() & pl.col(metric).is_not_nan())
             .group_by(key).agg(pl.col(metric).mean()).sort(metric, descending=higher_is_better(metric)))
    return [(str(k), float(v)) for k, v in means.iter_rows()]


def auto_summary(results: Results) -> str:
    """One paragraph, generated from the data: best by PSNR and by each perception metric, versions ranked."""
    joined = results.summary.join(results.trials.select("trial_id", "label", "status", "version"), on="trial_id")
    n_trials = results.trials.filter(pl.col("status") != BASELINE).height
    sentences = [f"{n_trials} trials on {len(results.datasets)} dataset(s) ({', '.join(results.datasets)})."]
    trained = joined.filter(pl.col("status") != BASELINE)
    ranked_by = [m for m in results.metrics if m != "ssim"]
    for metric in ranked_by:
        unit = METRIC_UNITS[metric]
        ranked = _mean_by(trained, "trial_id", metric)
        baseline = _mean_by(joined.filter(pl.col("status") == BASELINE), "label", metric)
        scored = f"{baseline[0][0]} scores {_fmt(baseline[0][1], metric)}{unit}" if baseline else ""
        if ranked:
            trial_id, value = ranked[0]
            best = "highest" if higher_is_better(metric) else "lowest"
            text = (f"Best by {METRIC_NAMES[metric]}: {results.label(trial_id)} ({best} mean over datasets, "
                    f"{_fmt(value, metric)}{unit})")
            sentences.append(text + (f"; {scored}." if scored else "."))
        elif scored:
            sentences.append(f"{METRIC_NAMES[metric]}: {scored} (mean over datasets).")
        else:
            sentences.append(f"No trial has {METRIC_NAMES[metric]} (see Missing metrics).")
    for metric in ranked_by:
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
    rows_out = []
    for r in results.scores.sort("dataset", "image", "trial_id").iter_rows(named=True):
        cells = []
        for m in results.metrics:
            if _is_number(r[m]):
                cells.append(Cell(_fmt(r[m], m), sort=repr(float(r[m]))))
            else:
                cells.append(Cell(MISSING, _missing_title(m), missing=True))
        rows_out.append({"dataset": r["dataset"], "image": r["image"],
                         "trial": labels.get(r["trial_id"], r["trial_id"]), "cells": cells})
    return rows_out


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


def _share(value: object) -> str | None:
    return f"{100 * value:.1f} %" if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value) and 0 <= value <= 1 else None


def _show_overhead(value: object) -> str:
    """run.json's `overhead`: the share of wall time outside training steps and scoring (a number or a
    mapping with a `share`)."""
    share = _share(value)
    if share is not None:
        return f"{share} of the wall time outside training steps and scoring"
    if isinstance(value, dict) and _share(value.get("share")) is not None:
        rest = {k: v for k, v in value.items() if k != "share"}
        return (f"{_share(value['share'])} of the wall time outside training steps and scoring"
                + (f"\n{_show(rest)}" if rest else ""))
    return _show(value)


# run.json keys a newer harness adds, shown when present (never required), in this order
RUN_EXTRAS = {"validation": _show, "overhead": _show_overhead, "pretrain_cache": _show,
              # the missing metrics' reasons are said once, near the top
              "metrics_missing": lambda v: "see Missing metrics, near the top" if v else _show(v)}


def run_metadata(results: Results) -> dict:
    run = results.run
    fields = [(name, _show(run.get(name))) for name in schema.RUN_FIELDS if name != "protocol"]
    fields += [(name, show(run[name])) for name, show in RUN_EXTRAS.items() if name in run]
    fields += [(k, _show(v)) for k, v in run.items() if k not in schema.RUN_FIELDS and k not in RUN_EXTRAS]
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
    return {"fields": fields, "protocol": protocol_rows, "trials": trials, "total_device_hours": f"{total:.4f}",
            "warnings": warnings}


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
        fig = figures.perception_distortion(results.summary, results.trials, dataset, metric) if metric else None
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


def study(results: Results, perception: dict[str, str | None] | None = None) -> StudySection | None:
    return study_section(results.study, results.study_versions, results.study_profile, results.trials,
                         results.datasets, present=results.present.get(schema.STUDY_FILE),
                         perception=perception if perception is not None else perception_metrics(results),
                         metrics=results.metrics, dose=results.study_dose)



def build_report(results_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Write the report of `results_dir` to `out_dir` (default `results_dir/report`); returns index.html.

    Raises `results.io.ResultsError` (naming the file) for an unreadable or malformed results file and for an
    output folder that cannot be written."""
    results = load_results(Path(results_dir))
    default = (results.root / schema.REPORT_INDEX).parent
    out = io.check_writable(Path(out_dir) if out_dir is not None else default)
    try:
        return _build(results, out)
    except OSError as err:  # a full disk, or permissions changed under us
        where = err.filename or out
        raise io.ResultsError(f"{where}: cannot write the report ({err.strerror or err})") from err


def _build(results: Results, out: Path) -> Path:
    perception = perception_metrics(results)
    drawn = charts(results, perception)
    trials = list(results.trials.iter_rows(named=True))
    page = _environment().get_template("report.html").render(
        title=f"enhance-this report: {results.root.name}",
        study=study(results, perception),
        pareto=pareto_section(results.root),  # a Pareto search's front (reports.pareto_section), else None
        missing=missing_metrics(results),
        problems=results.problems,
        plotly_js=_write_plotlyjs(out),
        plotly_template=figures.template_json(),
        summary=summary_table(results),
        metrics=results.metrics,
        metric_names=METRIC_NAMES,
        higher_is_better=schema.HIGHER_IS_BETTER,
        paragraph=auto_summary(results),
        planes=drawn.planes,
        curves=drawn.curves,
        trial_curves=drawn.trials,
        comparisons=visual_comparisons(results, out),
        crop_display=CROP_DISPLAY,
        image_rows=image_score_rows(results),
        meta=run_metadata(results),
        failed=[t for t in trials if t["status"] == "failed"],
        stopped=[t for t in trials if t["status"] == "stopped"],
        has_history=results.history is not None,
    )
    index = out / Path(schema.REPORT_INDEX).name
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
