"""Read a results folder for the report, and check that its tables agree with each other.

Every table is conformed to `results.schema` (missing columns become nulls), but which columns each file
really had is kept (`Results.present`): a study table written before a column existed says so instead of
showing nulls as if they were measured. A table that lists one key twice (a trial, an image) is an error
naming the file. A summary.parquet that disagrees with scores.parquet is replaced by the means recomputed
from the scores (the per-image rows are what was measured; the summary is derived from them), and the page
says which rows disagreed (`Results.problems`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from results import io, schema
from results.rows import trial_version

BASELINE = schema.STATUS_BASELINE

# Columns without which a table means nothing; the others may be absent (they read as nulls).
REQUIRED_COLUMNS = {
    schema.TRIALS_FILE: ("trial_id",),
    schema.SCORES_FILE: ("trial_id", "dataset", "image"),
    schema.SUMMARY_FILE: ("trial_id", "dataset"),
    schema.HISTORY_FILE: ("trial_id", "step"),
    schema.STUDY_FILE: ("comparison", "dataset", "metric", "a", "b", "n", "mean_diff", "ci_low", "ci_high"),
    schema.STUDY_VERSIONS_FILE: ("version", "dataset", "metric", "mean"),
    schema.STUDY_PROFILE_FILE: ("version", "stage"),
    schema.STUDY_DOSE_FILE: ("recipe", "key", "dataset", "metric", "slope", "ci_low", "ci_high"),
}
# The rows' keys: a key seen twice means the table contradicts itself (a trial counted twice).
UNIQUE_KEYS = {
    schema.TRIALS_FILE: ("trial_id",),
    schema.SCORES_FILE: ("trial_id", "dataset", "image"),
    schema.SUMMARY_FILE: ("trial_id", "dataset"),
    schema.STUDY_FILE: ("comparison", "dataset", "metric"),
    schema.STUDY_VERSIONS_FILE: ("version", "dataset", "metric"),
    schema.STUDY_PROFILE_FILE: ("version",),
    schema.STUDY_DOSE_FILE: ("recipe", "key", "dataset", "metric"),
}
# study.parquet as `results.study` writes it since verdicts are Holm-adjusted (issue 17); these extend
# `schema.STUDY_COLUMNS` (which wins where both name a column), so a table of either age conforms.
STUDY_CONTRACT = {
    "method": "str",  # how the interval and p-value were computed
    "df": "f64",  # degrees of freedom of the t reference
    "p_value": "f64",
    "p_holm": "f64",  # Holm-adjusted across the metric's family of comparisons
    "distinguishable": "bool",  # p_holm < 0.05
    "p_improve": "f64",  # P(a random seed of a beats a random seed of b), Agarwal et al. 2021
    "mdd": "f64",  # minimum difference detectable at 80 % power with the measured variance
    "sd_seed": "f64",
    "sd_image": "f64",
    "sd_resid": "f64",
    "budget": "str",  # "unequal-budget" | "unknown" | null
    "g_updates_a": "i64",
    "g_updates_b": "i64",
    "selection": "str",  # "selected-on-test" | null
    "variance_sources": "str",
}
STUDY_COLUMNS = {**STUDY_CONTRACT, **schema.STUDY_COLUMNS}
SUMMARY_TOLERANCE = 1e-9  # relative and absolute: the summary is a float64 mean of the same numbers


@dataclass
class Results:
    root: Path
    run: dict
    trials: pl.DataFrame  # with `version` (what the study calls it) added
    scores: pl.DataFrame
    summary: pl.DataFrame
    history: pl.DataFrame | None
    datasets: list[str]
    study: pl.DataFrame | None = None  # the study tables, when `results.study.compute_study` wrote them
    study_versions: pl.DataFrame | None = None
    study_profile: pl.DataFrame | None = None
    study_dose: pl.DataFrame | None = None  # a ladder's trends (results.dose), when the study ran one
    present: dict[str, frozenset[str]] = field(default_factory=dict)  # file name -> the columns it had
    problems: list[str] = field(default_factory=list)  # tables that disagreed, and what the report did

    def label(self, trial_id: str) -> str:
        return self.labels.get(trial_id, trial_id)

    @property
    def labels(self) -> dict[str, str]:
        return {r["trial_id"]: r["label"] or r["trial_id"] for r in self.trials.iter_rows(named=True)}

    @property
    def metrics(self) -> list[str]:
        """The schema's metrics that the scores or the summary have a column for (schema order)."""
        had = self.present.get(schema.SCORES_FILE, frozenset()) | self.present.get(schema.SUMMARY_FILE, frozenset())
        if not had:
            return list(schema.METRICS)
        return [m for m in schema.METRICS if m in had]


def _read(path: Path, columns: dict[str, str], *, required: bool,
          present: dict[str, frozenset[str]]) -> pl.DataFrame | None:
    """A parquet file conformed to `columns` (missing ones become nulls, extras are kept); raises `ResultsError`
    naming the file when it cannot be read, lacks a required column or repeats a key."""
    if path.exists():
        try:
            had = frozenset(pl.read_parquet_schema(path))
        except (OSError, pl.exceptions.PolarsError) as err:
            raise io.ResultsError(f"{path}: not a readable parquet file ({err})") from err
        lacking = [c for c in REQUIRED_COLUMNS.get(path.name, ()) if c not in had]
        if lacking:
            raise io.ResultsError(f"{path}: required column(s) missing: {', '.join(lacking)}")
        present[path.name] = had
    return io.read_table(path, columns, required=required, unique=UNIQUE_KEYS.get(path.name, ()))


def load_results(results_dir: Path | str) -> Results:
    root = Path(results_dir)
    if not root.is_dir():
        raise io.ResultsError(f"{root}: not a results folder (no such directory)")
    run = io.read_json(root / schema.RUN_FILE, required=False) or {}
    if not isinstance(run, dict):
        raise io.ResultsError(f"{root / schema.RUN_FILE}: expected a JSON object, got {type(run).__name__}")
    present: dict[str, frozenset[str]] = {}
    trials = _read(root / schema.TRIALS_FILE, schema.TRIAL_COLUMNS, required=True, present=present)
    assert trials is not None
    scores = _read(root / schema.SCORES_FILE, schema.SCORE_COLUMNS, required=False, present=present)
    summary = _read(root / schema.SUMMARY_FILE, schema.SUMMARY_COLUMNS, required=False, present=present)
    history = _read(root / schema.HISTORY_FILE, schema.HISTORY_COLUMNS, required=False, present=present)
    scores = scores if scores is not None else pl.DataFrame(schema=schema.polars_schema(schema.SCORE_COLUMNS))
    problems: list[str] = []
    written = summary is not None
    if summary is None:
        summary = pl.DataFrame(schema=schema.polars_schema(schema.SUMMARY_COLUMNS))
    if scores.height:
        summary, problems = reconcile_summary(summary, scores, summary_path=root / schema.SUMMARY_FILE,
                                              scores_path=root / schema.SCORES_FILE)
        problems = problems if written else []  # no summary.parquet: its means are the scores', nothing disagrees
    # Baselines first, then the trials in the order the sweep wrote them.
    trials = trials.with_row_index("_order").sort(pl.col("status") != BASELINE, "_order").drop("_order")
    trials = trials.with_columns(pl.Series("version", [trial_version(r) for r in trials.iter_rows(named=True)],
                                           dtype=pl.Utf8))
    listed = run.get("datasets")
    datasets = [str(d) for d in listed] if isinstance(listed, list) else []
    datasets += sorted(set(summary["dataset"].drop_nulls().to_list()) - set(datasets))
    return Results(
        root, run, trials, scores, summary, history, datasets,
        study=_read(root / schema.STUDY_FILE, STUDY_COLUMNS, required=False, present=present),
        study_versions=_read(root / schema.STUDY_VERSIONS_FILE, schema.STUDY_VERSION_COLUMNS, required=False,
                             present=present),
        study_profile=_read(root / schema.STUDY_PROFILE_FILE, schema.STUDY_PROFILE_COLUMNS, required=False,
                            present=present),
        study_dose=_read(root / schema.STUDY_DOSE_FILE, schema.STUDY_DOSE_COLUMNS, required=False, present=present),
        present=present, problems=problems)


# ---------------------------------------------------------------------------------------------- summary


def _same(a: object, b: object) -> bool:
    a_null = a is None or (isinstance(a, float) and math.isnan(a))
    b_null = b is None or (isinstance(b, float) and math.isnan(b))
    if a_null or b_null:
        return a_null and b_null
    return math.isclose(float(a), float(b), rel_tol=SUMMARY_TOLERANCE, abs_tol=SUMMARY_TOLERANCE)


def _shown(value: object) -> str:
    return "null" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def reconcile_summary(summary: pl.DataFrame, scores: pl.DataFrame, *, summary_path: Path,
                      scores_path: Path) -> tuple[pl.DataFrame, list[str]]:
    """The summary with its means and image counts recomputed from the scores wherever the scores have the
    (trial, dataset); the `<metric>_missing` reasons are kept from the summary. Returns it and, when the
    summary disagreed with the scores, one sentence saying where."""
    metrics = [m for m in schema.METRICS if m in scores.columns and m in summary.columns]
    computed = (scores.group_by("trial_id", "dataset", maintain_order=True)
                .agg(pl.len().cast(pl.Int64).alias("num_images"), pl.col("scale").first().alias("_scale"),
                     *[pl.col(m).mean() for m in metrics]))
    given = {(r["trial_id"], r["dataset"]): r for r in summary.iter_rows(named=True)}
    disagree: list[str] = []
    out = []
    for row in computed.iter_rows(named=True):
        key = (row["trial_id"], row["dataset"])
        old = given.pop(key, None)
        if old is None:
            disagree.append(f"{key[0]}/{key[1]}: no summary row")
            old = {name: None for name in summary.columns} | {"trial_id": key[0], "dataset": key[1]}
        else:
            for column in ("num_images", *metrics):
                if not _same(old[column], row[column]):
                    disagree.append(f"{key[0]}/{key[1]} {column} {_shown(old[column])} in the summary, "
                                    f"{_shown(row[column])} from the images")
                    break
        new = dict(old)
        new.update({m: row[m] for m in metrics}, num_images=row["num_images"])
        new["scale"] = old["scale"] if old["scale"] is not None else row["_scale"]
        out.append(new)
    unscored = list(given.values())  # kept as written: the scores have no image for them
    for old in unscored:
        disagree.append(f"{old['trial_id']}/{old['dataset']}: no image in {scores_path.name}")
    frame = pl.DataFrame(out + unscored, schema=summary.schema) if out or unscored else summary
    if not disagree:
        return frame, []
    shown = "; ".join(disagree[:3]) + (f"; and {len(disagree) - 3} more" if len(disagree) > 3 else "")
    return frame, [f"{summary_path} disagrees with {scores_path} on {len(disagree)} (trial, dataset) row(s) "
                   f"({shown}). The report shows the means recomputed from the per-image scores (rows without "
                   "images are kept as the summary has them)."]
