"""What the study reads: a results folder's trials, scores, summary, history and stops (`load_study_input`), and
the lookups every study table shares (the trials a study uses, a side's scores, paired seed x image grids).

Torch-free: numpy and polars only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from results import dose, io, schema
from results.rows import trial_version

METRICS = tuple(schema.HIGHER_IS_BETTER)
USED_STATUSES = (schema.STATUS_OK, schema.STATUS_STOPPED, schema.STATUS_BASELINE)


@dataclass
class StudyInput:
    trials: pl.DataFrame  # with `version` and a non-null `seed` (-1 for none)
    scores: pl.DataFrame
    summary: pl.DataFrame
    history: pl.DataFrame
    stops: dict[str, str]


def load_study_input(results_dir: str | Path) -> StudyInput:
    """The tables the study reads, with each trial's `version` (`results.rows.trial_version`: as its row was
    written). A trial listed twice in trials.parquet, or an image scored twice, is an error naming the file."""
    root = Path(results_dir)
    trials = io.read_table(root / schema.TRIALS_FILE, schema.TRIAL_COLUMNS, unique=("trial_id",))
    scores = io.read_table(root / schema.SCORES_FILE, schema.SCORE_COLUMNS,
                           unique=("trial_id", "dataset", "scale", "image"))
    summary = io.read_table(root / schema.SUMMARY_FILE, schema.SUMMARY_COLUMNS, required=False)
    history = io.read_table(root / schema.HISTORY_FILE, schema.HISTORY_COLUMNS, required=False)
    stops = io.read_json(root / schema.STOPS_FILE, required=False) or {}
    if not isinstance(stops, dict):
        raise io.ResultsError(f"{root / schema.STOPS_FILE}: expected a JSON object of trial_id -> reason")
    # Columns newer than some results folders (read_table adds the schema's; these may be newer than it).
    trials = _with_columns(trials, {"g_updates": pl.Int64, "selection": pl.Utf8})
    # A sweep without stages (before two-stage training): baselines are baselines, the rest GAN runs.
    stage = (pl.when(pl.col("stage").is_not_null()).then(pl.col("stage"))
             .when(pl.col("status") == schema.STATUS_BASELINE).then(pl.lit(schema.STAGE_BASELINE))
             .otherwise(pl.lit(schema.STAGE_GAN)))
    trials = dose.with_ladder_columns(trials.with_columns(stage.alias("stage"), pl.col("seed").fill_null(-1)))
    trials = trials.with_columns(pl.Series("version", [trial_version(r) for r in trials.iter_rows(named=True)],
                                           dtype=pl.Utf8))
    if history is None:
        history = pl.DataFrame(schema=schema.polars_schema(schema.HISTORY_COLUMNS))
    history = _with_columns(history, {"loss_adv_raw": pl.Float64, "d_gap": pl.Float64})
    if summary is None:
        summary = pl.DataFrame(schema=schema.polars_schema(schema.SUMMARY_COLUMNS))
    return StudyInput(trials, scores, summary, history, {str(k): str(v) for k, v in stops.items()})


def _with_columns(frame: pl.DataFrame, columns: dict[str, Any]) -> pl.DataFrame:
    return frame.with_columns([pl.lit(None, dtype=kind).alias(name) for name, kind in columns.items()
                               if name not in frame.columns])


def used_trials(trials: pl.DataFrame) -> pl.DataFrame:
    return trials.filter(pl.col("status").is_in(USED_STATUSES))


def metrics_of(data: StudyInput) -> list[str]:
    return [m for m in METRICS if m in data.scores.columns]


def datasets_of(data: StudyInput) -> list[str]:
    """In the order the scores list them (the order the run scored them)."""
    return data.scores["dataset"].drop_nulls().unique(maintain_order=True).to_list()


def missing_reason(data: StudyInput, trial_ids: Iterable[str], dataset: str, metric: str) -> str:
    ids = list(trial_ids)
    if not ids:
        return "no trial"
    column = f"{metric}_missing"
    if column in data.summary.columns:
        reasons = (data.summary.filter(pl.col("trial_id").is_in(ids) & (pl.col("dataset") == dataset))[column]
                   .drop_nulls().unique().sort().to_list())
        if reasons:
            return "; ".join(reasons)
    has_rows = data.scores.filter(pl.col("trial_id").is_in(ids) & (pl.col("dataset") == dataset)).height > 0
    return f"{metric} not computed" if has_rows else f"no scores on {dataset}"


def scores_of(data: StudyInput, pairs: Sequence[tuple[str, int]], dataset: str, metric: str) -> pl.DataFrame:
    """(seed, image, value) of the given (trial_id, seed) pairs on one dataset; a trial may appear with several
    seeds (a pretraining shared by several GAN seeds)."""
    mapping = pl.DataFrame({"trial_id": [t for t, _ in pairs], "seed": [s for _, s in pairs]},
                           schema={"trial_id": pl.Utf8, "seed": pl.Int64})
    return (data.scores.filter(pl.col("dataset") == dataset)
            .join(mapping, on="trial_id", how="inner")
            .select("seed", "image", pl.col(metric).alias("value")))


def usable(values: pl.DataFrame) -> pl.DataFrame:
    return values.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())


def paired_grids(a: pl.DataFrame, b: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Two long frames (seed, image, value) as aligned (seeds, images) grids, NaN where a value is missing.

    Null and non-finite values are left out. Several values for one (seed, image) on a side (several trials of a
    version with the same seed) are averaged."""
    def side(frame: pl.DataFrame) -> pl.DataFrame:
        return usable(frame).group_by("seed", "image").agg(pl.col("value").mean())

    joined = side(a).join(side(b), on=["seed", "image"], how="inner", suffix="_b")
    seeds = sorted(joined["seed"].unique().to_list())
    images = sorted(joined["image"].unique().to_list())
    grid_a = np.full((len(seeds), len(images)), np.nan)
    grid_b = grid_a.copy()
    s_index = {s: k for k, s in enumerate(seeds)}
    i_index = {im: k for k, im in enumerate(images)}
    for seed, image, va, vb in joined.select("seed", "image", "value", "value_b").iter_rows():
        grid_a[s_index[seed], i_index[image]] = va
        grid_b[s_index[seed], i_index[image]] = vb
    return grid_a, grid_b, seeds, images
