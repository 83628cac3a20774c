"""The top of the report: each missing metric said once with its reason (`missing_metrics`), each dataset's
perception axis (`perception_metrics`: LPIPS where measured, else NIQE), and one paragraph generated from the data
(`auto_summary`).
"""

from __future__ import annotations

import polars as pl

from reports.load import Results
from reports.text import METRIC_NAMES, METRIC_UNITS, PERCEPTION_ORDER, higher_is_better, long_name
from reports.text import fmt as _fmt
from results import schema

BASELINE = schema.STATUS_BASELINE


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
