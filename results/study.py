"""The study's statistics, computed from a results folder: `compute_study(results_dir)`.

It answers the original study's comparison (v1 -> v2 -> v3, then RaGAN and ESRGAN) with measured values:

- paired differences between consecutive versions (v2 - v1, v3 - v2, ragan - v3, esrgan - ragan), between each GAN
  stage and the pretraining it started from (`v3 - srresnet-pretrain`, unequal budgets: descriptive), between each
  GAN stage and its equal-budget control (`v3 - srresnet-continued`) and between each ladder arm and its 0 arm
  (`results.dose`), over (seed, image) pairs (`study.parquet`); a ladder's trend in `study_dose.parquet`
  (`results.dose`), Holm-adjusted in the same family. The interval is a t interval from a two-way crossed
  random-effects model of the differences (training seed x image, ANOVA estimates, Satterthwaite degrees of freedom:
  `results.stats`, which cites its sources), so it covers seed-to-seed and image-to-image variation and keeps its
  coverage at 3 seeds. Each comparison has a two-sided t test; the verdict uses its p-value Holm-adjusted over the
  study's family for that metric (every comparison on every dataset). Each row also gives the minimum difference the
  study could detect (`mdd`, 80 % power at alpha 0.05), the probability of improvement over seeds, the estimated
  variance components, whether the two sides had equal training budgets and what sources of variation the interval
  includes;
- per-version means and standard deviations over seeds (`study_versions.parquet`);
- per-version configuration facts and GAN stability measured from the training history
  (`study_profile.parquet`).

Power for the next study (`harness.study --dry-run --variance-from DIR`): `variance_components_of(DIR)` gives
the components each comparison measured, `results.stats.mdd` / `seeds_needed` turn them into a minimum
detectable difference or a seed count, and `plan(DIR, ...)` does both for every comparison.

Table layouts are in `results.schema` (STUDY_*). Torch-free: numpy and polars only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from results import dose, io, schema, stats
from results.rows import budget_flag, json_list, source_trial, trial_version

log = logging.getLogger(__name__)

# D(real) - D(fake) (`d_gap` in new histories) above this means a collapsed discriminator (G gets no useful
# gradient); defined in results.schema, where the divergence stopper reads it too, so both measure the same thing.
COLLAPSE_GAP = schema.COLLAPSE_GAP
# stops.json reasons (and trials' stop_reason) that are divergence stops, as the stopper writes them
DIVERGENCE_PREFIXES = ("diverged", "discriminator collapse")
# The study's progression; consecutive pairs are compared (when both are present).
STUDY_ORDER = ("v1", "v2", "v3", "ragan", "esrgan")
SELECTED_ON_TEST = "selected-on-test"  # the trials' flag when a run validated on a set it is scored on
METRICS = tuple(schema.HIGHER_IS_BETTER)
CI_LEVEL = stats.CI_LEVEL
ALPHA = stats.ALPHA  # for p_holm -> distinguishable, and mdd
POWER = stats.POWER
KIND_STEP = "version step"
KIND_PRETRAIN = "GAN stage vs its pretraining"
USED_STATUSES = (schema.STATUS_OK, schema.STATUS_STOPPED, schema.STATUS_BASELINE)
VERDICT_A, VERDICT_B, VERDICT_NONE = "a better", "b better", "not distinguishable"
VERDICT_ONE_SEED, VERDICT_NO_DATA = "one seed", "no data"
VERDICT_NO_VARIATION = "no variation"  # every pair differs by the same non-zero amount: no test applies


# ------------------------------------------------------------------------------------------- loading


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


def _config_json(text: str | None) -> dict:
    try:
        parsed = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _used(trials: pl.DataFrame) -> pl.DataFrame:
    return trials.filter(pl.col("status").is_in(USED_STATUSES))


def _metrics(data: StudyInput) -> list[str]:
    return [m for m in METRICS if m in data.scores.columns]


def _datasets(data: StudyInput) -> list[str]:
    """In the order the scores list them (the order the run scored them)."""
    return data.scores["dataset"].drop_nulls().unique(maintain_order=True).to_list()


def _missing_reason(data: StudyInput, trial_ids: Iterable[str], dataset: str, metric: str) -> str:
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


def _values(data: StudyInput, pairs: Sequence[tuple[str, int]], dataset: str, metric: str) -> pl.DataFrame:
    """(seed, image, value) of the given (trial_id, seed) pairs on one dataset; a trial may appear with several
    seeds (a pretraining shared by several GAN seeds)."""
    mapping = pl.DataFrame({"trial_id": [t for t, _ in pairs], "seed": [s for _, s in pairs]},
                           schema={"trial_id": pl.Utf8, "seed": pl.Int64})
    return (data.scores.filter(pl.col("dataset") == dataset)
            .join(mapping, on="trial_id", how="inner")
            .select("seed", "image", pl.col(metric).alias("value")))


def _usable(values: pl.DataFrame) -> pl.DataFrame:
    return values.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())


def paired_grids(a: pl.DataFrame, b: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Two long frames (seed, image, value) as aligned (seeds, images) grids, NaN where a value is missing.

    Null and non-finite values are left out. Several values for one (seed, image) on a side (several trials of a
    version with the same seed) are averaged."""
    def side(frame: pl.DataFrame) -> pl.DataFrame:
        return _usable(frame).group_by("seed", "image").agg(pl.col("value").mean())

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


# ----------------------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    kind: str
    a_trials: tuple[tuple[str, int], ...]  # (trial_id, seed)
    b_trials: tuple[tuple[str, int], ...]  # (trial_id, the seed of the a trial it is paired with)
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.a} - {self.b}"


def comparisons(trials: pl.DataFrame) -> list[Comparison]:
    """Consecutive versions present (v2 - v1, ...), then each GAN version against the pretraining(s) its trials
    started from, each GAN trial paired with its own (one per seed, or one shared by every seed)."""
    used = _used(trials)
    gan = used.filter(~dose.compared_by_dose(used)).filter(pl.col("stage") == schema.STAGE_GAN)
    by_version: dict[str, list[tuple[str, int]]] = {}
    for row in gan.iter_rows(named=True):
        by_version.setdefault(row["version"], []).append((row["trial_id"], row["seed"]))
    out = []
    for b, a in zip(STUDY_ORDER, STUDY_ORDER[1:], strict=False):
        if a in by_version and b in by_version:
            out.append(Comparison(a, b, KIND_STEP, tuple(by_version[a]), tuple(by_version[b])))
    known = {r["trial_id"]: r for r in used.iter_rows(named=True)}
    ordered = [v for v in STUDY_ORDER if v in by_version] + sorted(set(by_version) - set(STUDY_ORDER))
    for version in ordered:
        pairs: dict[str, list[tuple[str, int, str]]] = {}  # pretraining version -> (gan trial, seed, source)
        unknown = set()
        for row in gan.filter(pl.col("version") == version).iter_rows(named=True):
            if row["init_from"] is None:
                continue
            source = source_trial(row["init_from"], known)
            if source not in known or known[source]["stage"] != schema.STAGE_PRETRAIN:
                unknown.add(source)
                continue
            pairs.setdefault(known[source]["version"], []).append((row["trial_id"], row["seed"], source))
        if not pairs and not unknown:
            continue  # single-stage (v1)
        missing = (f"init_from is not a scored pretraining trial: {', '.join(sorted(unknown))}" if unknown else "")
        if not pairs:
            out.append(Comparison(version, "pretraining", KIND_PRETRAIN, (), (), missing))
        for pre_version, triples in sorted(pairs.items()):
            sources = sorted({s for _, _, s in triples})
            note = f"b is the pretraining this GAN stage started from ({', '.join(sources)})"
            out.append(Comparison(version, pre_version, KIND_PRETRAIN, tuple((t, s) for t, s, _ in triples),
                                  tuple((src, s) for _, s, src in triples),
                                  "; ".join(x for x in (note, missing) if x)))
    controls = dose.control_pairings(trials)
    extra = controls + dose.arm_pairings(trials, already={(p.a, p.b) for p in controls})
    return out + [Comparison(p.a, p.b, p.kind, p.a_trials, p.b_trials, p.note) for p in extra]



# ---------------------------------------------------------------------------------- one comparison row


@dataclass(frozen=True)
class Measured:
    """What one (comparison, dataset, metric) measured, before the family's Holm adjustment."""

    result: stats.SeedImageT | None
    p_improve: float | None
    mdd: float | None
    notes: tuple[str, ...] = field(default=())


def _measure(data: StudyInput, comp: Comparison, dataset: str, metric: str, ci: float) -> tuple[Measured, str]:
    """The statistics of one row, and why it has no data ("" when it has)."""
    higher = schema.HIGHER_IS_BETTER[metric]
    a_values = _values(data, comp.a_trials, dataset, metric)
    b_values = _values(data, comp.b_trials, dataset, metric)
    notes = []
    dropped = sum(v.filter(pl.col("value").is_not_null() & ~pl.col("value").is_finite()).height
                  for v in (a_values, b_values))
    if dropped:
        notes.append(f"{dropped} non-finite score(s) left out")
    for side, values in (("a", a_values), ("b", b_values)):
        repeated = _usable(values).group_by("seed", "image").len().filter(pl.col("len") > 1).height
        if repeated and (side == "a" or comp.kind == KIND_STEP):
            notes.append(f"{side}: several trials share a seed; their values are averaged")
    grid_a, grid_b, seeds, images = paired_grids(a_values, b_values)
    with np.errstate(over="ignore", invalid="ignore"):
        overflowed = int((~np.isfinite(grid_a - grid_b) & np.isfinite(grid_a) & np.isfinite(grid_b)).sum())
    if overflowed:
        notes.append(f"{overflowed} difference(s) beyond the float range left out")
    result = stats.seed_image_t(grid_a, grid_b, ci=ci) if grid_a.size else None
    if result is None:
        reason = "not computed: every difference is beyond the float range" if overflowed else _no_pairs_reason(
            data, comp, dataset, metric, a_values, b_values)
        return Measured(None, None, None, tuple(notes)), reason
    if result.dropped_seeds or result.dropped_images:
        left = ([f"seed {seeds[k]}" for k in result.dropped_seeds]
                + [f"image {images[k]}" for k in result.dropped_images])
        notes.append(f"left out for missing pairs (the interval needs a complete seeds x images grid): "
                     f"{', '.join(left)}")
    p_improve = mdd = None
    if result.n_seeds >= 2:
        rows, cols = np.ix_(result.seeds, result.images)
        p_improve = stats.probability_of_improvement(grid_a[rows, cols].mean(axis=1), grid_b[rows, cols].mean(axis=1),
                                                     higher_is_better=higher)
        mdd = stats.mdd(result.components, result.n_seeds, result.n_images, alpha=ALPHA, power=POWER)
    return Measured(result, p_improve, mdd, tuple(notes)), ""


def _no_pairs_reason(data: StudyInput, comp: Comparison, dataset: str, metric: str, a_values: pl.DataFrame,
                     b_values: pl.DataFrame) -> str:
    if not comp.a_trials or not comp.b_trials:
        return "no pairs"
    if not _usable(a_values).height:
        return f"{comp.a}: {_missing_reason(data, [t for t, _ in comp.a_trials], dataset, metric)}"
    if not _usable(b_values).height:
        return f"{comp.b}: {_missing_reason(data, [t for t, _ in comp.b_trials], dataset, metric)}"
    return "no (image, seed) pair scored on both sides"


def _budget(data: StudyInput, comp: Comparison) -> dict[str, Any]:
    """g_updates of each side (the largest where a side's trials differ) and the budget flag."""
    by_id = {r["trial_id"]: r["g_updates"] for r in data.trials.iter_rows(named=True)}
    sides = [[by_id.get(t) for t, _ in trials] for trials in (comp.a_trials, comp.b_trials)]
    if not sides[0] or not sides[1]:
        return {"budget": None, "g_updates_a": None, "g_updates_b": None}
    if any(v is None for side in sides for v in side):
        return {"budget": "unknown", "g_updates_a": None, "g_updates_b": None}
    return {"budget": budget_flag([v for side in sides for v in side]), "g_updates_a": max(sides[0]),
            "g_updates_b": max(sides[1])}


def _selection(data: StudyInput, comp: Comparison) -> str | None:
    ids = {t for t, _ in comp.a_trials + comp.b_trials}
    flags = data.trials.filter(pl.col("trial_id").is_in(list(ids)))["flags"].to_list()
    return SELECTED_ON_TEST if any(SELECTED_ON_TEST in json_list(f) for f in flags) else None


def variance_sources(data: StudyInput, comp: Comparison) -> str:
    """One line: the sources of variation the comparison's interval includes (before a row's own limits: one
    seed, one image)."""
    by_id = {r["trial_id"]: r for r in data.trials.iter_rows(named=True)}
    pretrain_seeds: dict[str, set[int]] = {}  # pretraining trial -> the seeds that use it
    for trial_id, seed in comp.a_trials + comp.b_trials:
        row = by_id.get(trial_id)
        if row is None:
            continue
        source = trial_id if row["stage"] == schema.STAGE_PRETRAIN else source_trial(row["init_from"], by_id)
        if source is not None:
            pretrain_seeds.setdefault(source, set()).add(seed)
    if not pretrain_seeds:
        return "training seed and image"
    seeds = {s for _, s in comp.a_trials + comp.b_trials}
    base = "training seed of the GAN stage and image"
    if all(len(used) == 1 for used in pretrain_seeds.values()):
        return f"{base}; one pretraining per seed (included)"
    if all(used == seeds for used in pretrain_seeds.values()):
        return f"{base}; pretraining shared by all seeds (one run: its variance is not included)"
    return (f"{base}; {len(pretrain_seeds)} pretraining runs for {len(seeds)} seeds (partly shared: their "
            f"variance is only partly included)")


def _row_sources(base: str, result: stats.SeedImageT | None) -> str | None:
    if result is None:
        return None
    if result.n_seeds < 2:
        return "none at the seed level (one seed)"
    if result.n_images < 2:
        return base.replace(" and image", "") + "; one image: image-to-image variation not included"
    return base


def comparison_rows(data: StudyInput, *, ci: float = CI_LEVEL) -> list[dict[str, Any]]:
    """study.parquet's rows (`schema.STUDY_COLUMNS`), Holm-adjusted per metric over every comparison and dataset."""
    rows = []
    for comp in comparisons(data.trials):
        budget = _budget(data, comp)
        selection = _selection(data, comp)
        sources = variance_sources(data, comp)
        for dataset in _datasets(data):
            for metric in _metrics(data):
                measured, no_data = _measure(data, comp, dataset, metric, ci)
                row = _row(comp, dataset, metric, measured, no_data, ci)
                row.update(budget, selection=selection, variance_sources=_row_sources(sources, measured.result))
                rows.append(row)
    _adjust(rows)
    return rows


def _row(comp: Comparison, dataset: str, metric: str, measured: Measured, no_data: str, ci: float) -> dict[str, Any]:
    higher = schema.HIGHER_IS_BETTER[metric]
    row: dict[str, Any] = {"comparison": comp.name, "kind": comp.kind, "dataset": dataset, "metric": metric,
                           "a": comp.a, "b": comp.b, "ci_level": ci, "higher_is_better": higher,
                           "n": 0, "n_seeds": 0, "n_images": 0, "verdict": VERDICT_NO_DATA}
    notes = [no_data, *measured.notes]
    r = measured.result
    if r is not None:
        sd_seed, sd_image, sd_resid = r.components.sd()
        row.update(n=r.n, n_seeds=r.n_seeds, n_images=r.n_images, mean_diff=r.mean_diff, ci_low=r.ci_low,
                   ci_high=r.ci_high, method=r.method, df=r.df, p_value=r.p_value, excludes_zero=r.excludes_zero,
                   p_improve=measured.p_improve, mdd=measured.mdd, sd_seed=sd_seed, sd_image=sd_image,
                   sd_resid=sd_resid, verdict=None)
        if r.n_seeds < 2:
            row["verdict"] = VERDICT_ONE_SEED
            notes.append("one seed: no seed-level interval (the training seed is the unit of replication; an "
                         "interval needs at least 2)")
        elif r.n_images < 2:
            notes.append("one image: the interval covers seed-to-seed variation only")
        if r.no_variation:
            row["verdict"] = VERDICT_NO_VARIATION
            notes.append(f"no variation between the pairs: every pair differs by {r.mean_diff:+.6g}, so no test "
                         "applies (no p-value) and nothing measures how the difference varies with other seeds or "
                         "images")
        elif r.df is None and r.ci_low is not None:
            notes.append("no variation between the pairs: the interval has zero width")
        bad = [name for name in ("mean_diff", "ci_low", "ci_high", "df", "p_value", "mdd", "p_improve", "sd_seed",
                                 "sd_image", "sd_resid")
               if isinstance(row.get(name), float) and not math.isfinite(row[name])]
        if bad:
            for name in ("mean_diff", "ci_low", "ci_high", "df", "p_value", "excludes_zero", "mdd", "p_improve",
                         "sd_seed", "sd_image", "sd_resid"):
                row[name] = None
            row["verdict"] = VERDICT_NO_DATA
            notes.append(f"not computed: non-finite {', '.join(bad)}")
    notes.append(comp.note)
    row["note"] = "; ".join(n for n in notes if n) or None
    return row


def _adjust(rows: list[dict[str, Any]]) -> None:
    """p_holm within each metric's family, then `distinguishable` and the verdict from it (a ladder's trend row,
    which has a slope instead of a mean difference, gets its verdict from `dose.trend_verdicts`)."""
    for metric in dict.fromkeys(r["metric"] for r in rows):
        family = [r for r in rows if r["metric"] == metric]
        for r, adjusted in zip(family, stats.holm([r.get("p_value") for r in family]), strict=True):
            r["p_holm"] = adjusted
            if adjusted is None:
                r["distinguishable"] = None
                continue
            r["distinguishable"] = adjusted < ALPHA
            if "mean_diff" not in r:
                continue
            if not r["distinguishable"]:
                r["verdict"] = VERDICT_NONE
            else:
                r["verdict"] = VERDICT_A if (r["mean_diff"] > 0) == r["higher_is_better"] else VERDICT_B


# ------------------------------------------------------------------------------------ power for the next study


@dataclass(frozen=True)
class MeasuredComponents:
    """The variance components one comparison measured, with the design it measured them on."""

    comparison: str
    dataset: str
    metric: str
    components: stats.Components
    n_seeds: int
    n_images: int
    mean_diff: float


def variance_components_of(results_dir: str | Path) -> dict[tuple[str, str, str], MeasuredComponents]:
    """{(comparison, dataset, metric): components} of a previous study, recomputed from its trials and scores
    (so a study folder from before study.parquet had the components works too). Rows without data are absent."""
    data = load_study_input(results_dir)
    out = {}
    for comp in comparisons(data.trials):
        for dataset in _datasets(data):
            for metric in _metrics(data):
                measured, _ = _measure(data, comp, dataset, metric, CI_LEVEL)
                r = measured.result
                if r is not None and math.isfinite(r.mean_diff):
                    out[comp.name, dataset, metric] = MeasuredComponents(comp.name, dataset, metric, r.components,
                                                                         r.n_seeds, r.n_images, r.mean_diff)
    return out


def plan(results_dir: str | Path, *, n_seeds: int, n_images: int | None = None, target_diff: float | None = None,
         alpha: float = ALPHA, power: float = POWER) -> list[dict[str, Any]]:
    """For every comparison of a previous study: the minimum detectable difference at `n_seeds` (x `n_images`,
    default: as many as it measured), and with `target_diff` the seeds needed to detect that difference.

    Each row: comparison, dataset, metric, n_seeds, n_images, sd_seed, sd_image, sd_resid, measured_diff, mdd,
    target_diff, seeds_needed, note (why a value is missing)."""
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    rows = []
    for key, m in variance_components_of(results_dir).items():
        images = n_images if n_images is not None else m.n_images
        sd_seed, sd_image, sd_resid = m.components.sd()
        value = stats.mdd(m.components, n_seeds, images, alpha=alpha, power=power)
        needed = (stats.seeds_needed(m.components, target_diff, images, alpha=alpha, power=power)
                  if target_diff is not None else None)
        note = None
        if m.components.seed is None:
            note = "the previous study had one seed: its seed-to-seed variance is unknown"
        elif n_seeds < 2:
            note = "one seed: no seed-level test"
        elif value is None:
            note = "the previous study had one image: the image variance is unknown"
        elif target_diff is not None and needed is None:
            note = "not reached within 10,000 seeds"
        rows.append({"comparison": key[0], "dataset": key[1], "metric": key[2], "n_seeds": n_seeds,
                     "n_images": images, "sd_seed": sd_seed, "sd_image": sd_image, "sd_resid": sd_resid,
                     "measured_diff": m.mean_diff, "mdd": value, "target_diff": target_diff,
                     "seeds_needed": needed, "note": note})
    return rows


# ---------------------------------------------------------------------------------- version aggregates


def version_rows(data: StudyInput) -> list[dict[str, Any]]:
    """Mean +- std over seeds (of the mean over images per seed) for every version, dataset and metric."""
    used = _used(data.trials)
    rows = []
    for version in _ordered_versions(used):
        part = used.filter(pl.col("version") == version)
        trial_seeds = list(zip(part["trial_id"].to_list(), part["seed"].to_list(), strict=True))
        stage = part["stage"][0]
        for dataset in _datasets(data):
            for metric in _metrics(data):
                values = _usable(_values(data, trial_seeds, dataset, metric))
                row = {"version": version, "stage": stage, "dataset": dataset, "metric": metric,
                       "n_trials": part.height}
                if values.height == 0:
                    row.update(n_seeds=0, n_images=0, mean=None, std=None,
                               missing=_missing_reason(data, part["trial_id"].to_list(), dataset, metric))
                else:
                    per_seed = values.group_by("seed").agg(pl.col("value").mean())["value"].to_numpy()
                    row.update(n_seeds=len(per_seed), n_images=values["image"].n_unique(),
                               mean=float(per_seed.mean()), low=float(per_seed.min()), high=float(per_seed.max()),
                               std=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None, missing=None)
                rows.append(row)
    return rows


def _ordered_versions(trials: pl.DataFrame) -> list[str]:
    """Baselines, then the study's order with each pretraining (and its equal-budget control) before the first
    version that started from it."""
    present = trials["version"].unique().to_list()
    baselines = sorted(trials.filter(pl.col("stage") == schema.STAGE_BASELINE)["version"].unique().to_list())
    by_id = {r["trial_id"]: r for r in trials.iter_rows(named=True)}
    controls = {source_trial(r["init_from"], by_id): r["version"] for r in by_id.values() if dose.is_control(r)}
    order: list[str] = []
    for name in STUDY_ORDER:
        sources = trials.filter((pl.col("version") == name) & pl.col("init_from").is_not_null())["init_from"]
        for source in sources.to_list():
            source = source_trial(source, by_id)
            if source in by_id and by_id[source]["version"] not in order:
                order.append(by_id[source]["version"])
                order += [controls[source]] if controls.get(source) not in (None, *order) else []
        order.append(name)
    known = [v for v in order if v in present and v not in baselines]
    return baselines + known + sorted(set(present) - set(known) - set(baselines))


# --------------------------------------------------------------------------------- profile (facts, stability)


def _config(row: dict) -> dict:
    return _config_json(row["config_json"])


FACTS = {  # profile column -> (config section, key)
    "arch": ("generator", "arch"),
    "patch_size": ("data", "patch_size"),
    "batch_size": ("data", "batch_size"),
    "train_data": ("data", "train_dirs"),
    "degradation": ("data", "degradation"),
    "warmup_steps": ("train", "warmup_steps"),
    "gan_steps": ("train", "gan_steps"),
    "pixel_type": ("loss", "pixel_type"),
    "perceptual_weight": ("loss", "perceptual_weight"),
    "perceptual_layer": ("loss", "perceptual_layer"),
    "perceptual_features": ("loss", "perceptual_weights"),
    "adv_type": ("loss", "adv_type"),
    "adv_weight": ("loss", "adv_weight"),
    "log_every": ("train", "log_every"),
    "val_every": ("train", "val_every"),
}


def _facts(part: pl.DataFrame) -> dict[str, Any]:
    values: dict[str, list] = {name: [] for name in FACTS}
    for row in part.iter_rows(named=True):
        config = _config(row)
        for name, (section, key) in FACTS.items():
            value = (config.get(section) or {}).get(key) if isinstance(config.get(section), dict) else None
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            if value is not None and value not in values[name]:
                values[name].append(value)
    facts: dict[str, Any] = {name: found[0] if len(found) == 1 else None for name, found in values.items()}
    if facts["perceptual_weight"] == 0:  # no perceptual loss: its layer and features do not apply
        facts["perceptual_layer"] = facts["perceptual_features"] = None
    varies = sorted(name for name, found in values.items() if len(found) > 1)
    facts["varies"] = json.dumps(varies) if varies else None
    return facts


def _flags(part: pl.DataFrame) -> list[str]:
    flags: list[str] = []
    for value in part["flags"].to_list():
        for flag in json_list(value):
            if flag not in flags:
                flags.append(flag)
    return flags


# How the stability measures were taken (study_profile's adv_loss_source / collapse_source).
ADV_RAW = "loss_adv_raw"
ADV_FROM_WEIGHTED = "loss_adv_g / adv_weight (older history)"
GAP_LOGGED = "d_gap"
GAP_FROM_D = "d_real - d_fake (older history; for a relativistic D it can miss a saturated D_Ra)"


@dataclass(frozen=True)
class TrialStability:
    gan_reports: int
    collapse_reports: int
    adv_loss_std: float | None
    psnr_drift: float | None
    drift_from: str | None
    adv_source: str | None = None  # ADV_*: what adv_loss_std was measured on
    gap_source: str | None = None  # GAP_*: what the collapse reports were measured on


def _last_val(history: pl.DataFrame, phase: str | None = None) -> float | None:
    part = history if phase is None else history.filter(pl.col("phase") == phase)
    values = part.sort("step")["val_psnr"].drop_nulls().drop_nans()
    return float(values[-1]) if values.len() else None


def _adversarial_loss(gan: pl.DataFrame, adv_weight: float | None) -> tuple[pl.DataFrame, str | None]:
    """(step, loss) of the unweighted adversarial G loss: `loss_adv_raw`, or in histories that lack it the
    logged (weighted) `loss_adv_g` divided by the trial's adv_weight, so versions with different weights compare."""
    raw = gan.select("step", pl.col("loss_adv_raw").alias("loss")).drop_nulls().filter(pl.col("loss").is_finite())
    if raw.height:
        return raw, ADV_RAW
    if not adv_weight:  # None or 0: the weighted loss cannot be unweighted
        return raw, None
    weighted = gan.select("step", (pl.col("loss_adv_g") / adv_weight).alias("loss")).drop_nulls()
    weighted = weighted.filter(pl.col("loss").is_finite())
    return weighted, ADV_FROM_WEIGHTED if weighted.height else None


def trial_stability(history: pl.DataFrame, trial_id: str, pretrain_id: str | None, *, gap: float = COLLAPSE_GAP,
                    adv_weight: float | None = None) -> TrialStability:
    """Collapse reports, adversarial-loss spread and PSNR drift of one trial's GAN stage.

    Collapse: `d_gap` > gap (the discriminator's gap the engine logs: relativistic for a relativistic D), or for
    histories without it D(real) - D(fake). Spread: the std of the unweighted adversarial loss over the second half
    of the GAN stage (`_adversarial_loss`)."""
    own = history.filter(pl.col("trial_id") == trial_id).sort("step")
    gan = own.filter(pl.col("phase") == "gan")
    logged = gan["d_gap"].drop_nulls().drop_nans()
    if logged.len():
        gaps, gap_source = logged, GAP_LOGGED
    else:
        d = gan.select("d_real", "d_fake").drop_nulls()
        gaps, gap_source = d["d_real"] - d["d_fake"], (GAP_FROM_D if d.height else None)
    collapse = int((gaps > gap).sum()) if gaps.len() else 0
    adv_std = None
    adv, adv_source = _adversarial_loss(gan, adv_weight)
    if adv.height >= 2:
        first, last = gan["step"].min(), gan["step"].max()
        half = adv.filter(pl.col("step") >= first + (last - first) / 2)["loss"].to_numpy()
        adv_std = float(half.std(ddof=1)) if len(half) >= 2 else None
    gan_vals = gan["val_psnr"].drop_nulls().drop_nans()
    end = float(gan_vals[-1]) if gan_vals.len() else None
    start, drift_from = None, None
    if pretrain_id is not None and (pre := _last_val(history.filter(pl.col("trial_id") == pretrain_id))) is not None:
        start, drift_from = pre, "the pretraining's final validation"
    elif (warm := _last_val(own, "warmup")) is not None:
        start, drift_from = warm, "the end of the warmup"
    elif gan_vals.len() >= 2:
        start, drift_from = float(gan_vals[0]), "the first GAN-stage validation"
    drift = end - start if end is not None and start is not None else None
    return TrialStability(gaps.len(), collapse, adv_std, drift, drift_from if drift is not None else None,
                          adv_source if adv_std is not None else None, gap_source)


def _mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return None, None
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else None


def _is_divergence(reason: str | None) -> bool:
    return bool(reason) and str(reason).startswith(DIVERGENCE_PREFIXES)


def profile_rows(data: StudyInput, *, gap: float = COLLAPSE_GAP) -> list[dict[str, Any]]:
    """One row per version: its configuration facts and, for GAN stages, the measured stability."""
    trials = data.trials
    by_id = {r["trial_id"]: r for r in trials.iter_rows(named=True)}
    rows = []
    used = _used(trials)
    for version in _ordered_versions(used.filter(~dose.arms_only(used))):  # the ladder's own arms: study_dose
        every = trials.filter(pl.col("version") == version)
        part = _used(every)
        stage = part["stage"][0]
        row: dict[str, Any] = {"version": version, "stage": stage, "n_trials": part.height,
                               "seeds": json.dumps(sorted(s for s in set(part["seed"].to_list()) if s >= 0)),
                               **_facts(part), "flags": json.dumps(_flags(part)), "collapse_gap": gap,
                               "stopped": every.filter(pl.col("status") == schema.STATUS_STOPPED).height,
                               "failed": every.filter(pl.col("status") == schema.STATUS_FAILED).height}
        history = data.history.filter(pl.col("trial_id").is_in(part["trial_id"].to_list()))
        logged = [c for c in schema.HISTORY_COLUMNS if c not in ("trial_id", "step", "phase")
                  and history[c].drop_nulls().len() > 0]
        row["logged"] = ", ".join(logged) if logged else None
        val_points = [history.filter(pl.col("trial_id") == t)["val_psnr"].drop_nulls().len()
                      for t in part["trial_id"].to_list()]
        row["val_points"] = float(np.mean(val_points)) if history.height else None
        sources = [by_id[s] for s in {source_trial(s, by_id) for s in part["init_from"].drop_nulls().to_list()}
                   if s in by_id]
        row["pretrained_from"] = ", ".join(sorted({s["version"] for s in sources})) or None
        pre_steps = sorted({s["steps"] for s in sources if s["steps"] is not None})
        row["pretrain_steps"] = pre_steps[0] if len(pre_steps) == 1 else None
        if stage == schema.STAGE_GAN:
            row.update(_stability(data, part, every, gap, by_id))
        rows.append(row)
    return rows


def _adv_weight(row: dict) -> float | None:
    loss = _config(row).get("loss")
    weight = loss.get("adv_weight") if isinstance(loss, dict) else None
    weight = weight if isinstance(weight, int | float) else row.get("adv_weight")
    return float(weight) if weight is not None and math.isfinite(weight) else None


def _stability(data: StudyInput, part: pl.DataFrame, every: pl.DataFrame, gap: float,
               by_id: dict[str, dict]) -> dict[str, Any]:
    """Stability of a version's GAN stages: measured on its scored trials (`part`); divergence counted over all
    of them (`every`: a diverged run that left no checkpoint is a failed trial whose error says so)."""
    measured = [trial_stability(data.history, r["trial_id"], source_trial(r["init_from"], by_id), gap=gap,
                                adv_weight=_adv_weight(r)) for r in part.iter_rows(named=True)]
    reports = sum(m.gan_reports for m in measured)
    collapses = sum(m.collapse_reports for m in measured)
    shares = [m.collapse_reports / m.gan_reports for m in measured if m.gan_reports]
    adv, adv_sd = _mean_sd([m.adv_loss_std for m in measured])
    drift, drift_sd = _mean_sd([m.psnr_drift for m in measured])
    froms = sorted({m.drift_from for m in measured if m.drift_from})
    stops = 0
    for r in every.iter_rows(named=True):
        reasons = (data.stops.get(r["trial_id"]), r["stop_reason"], r["error"])
        stops += any(_is_divergence(reason) for reason in reasons)
    return {"gan_reports": reports, "collapse_reports": collapses,
            "collapse_share": collapses / reports if reports else None,
            "collapse_share_max": max(shares) if shares else None,
            "collapse_source": "; ".join(sorted({m.gap_source for m in measured if m.gap_source})) or None,
            "adv_loss_std": adv, "adv_loss_std_sd": adv_sd,
            "adv_loss_source": "; ".join(sorted({m.adv_source for m in measured if m.adv_source})) or None,
            "psnr_drift": drift, "psnr_drift_sd": drift_sd,
            "drift_from": "; ".join(froms) or None, "divergence_stops": stops}


# -------------------------------------------------------------------------------------------- writing


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pl.DataFrame:
    full = [{name: row.get(name) for name in columns} for row in rows]
    return pl.DataFrame(full, schema=schema.polars_schema(columns))


def _json_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return [{k: clean(v) for k, v in record.items()} for record in frame.to_dicts()]


def compute_study(results_dir: str | Path, *, ci: float = CI_LEVEL) -> dict[str, Path]:
    """Write the study tables (parquet + JSON) into `results_dir`; returns {table name: parquet path}.

    Needs trials.parquet and scores.parquet; history.parquet and stops.json are used when present."""
    root = Path(results_dir)
    data = load_study_input(root)
    io.check_writable(root)
    rows = comparison_rows(data, ci=ci)
    trend = dose.dose_rows(data.trials, data.scores, _datasets(data), _metrics(data), ci=ci)
    if trend:  # the trends join each metric's family: p_holm over the comparisons and the trends together
        _adjust(rows + trend)
        dose.trend_verdicts(trend)
    tables = {
        "study": (rows, schema.STUDY_COLUMNS, schema.STUDY_FILE, schema.STUDY_JSON),
        "dose": (trend, schema.STUDY_DOSE_COLUMNS, schema.STUDY_DOSE_FILE, schema.STUDY_DOSE_JSON),
        "versions": (version_rows(data), schema.STUDY_VERSION_COLUMNS, schema.STUDY_VERSIONS_FILE,
                     schema.STUDY_VERSIONS_JSON),
        "profile": (profile_rows(data), schema.STUDY_PROFILE_COLUMNS, schema.STUDY_PROFILE_FILE,
                    schema.STUDY_PROFILE_JSON),
    }
    paths = {}
    for name, (rows, columns, parquet_name, json_name) in tables.items():
        frame = _frame(rows, columns)
        paths[name] = io.write_table(root / parquet_name, frame)
        io.write_json(root / json_name, _json_records(frame))
    log.info("study tables written to %s", root)
    return paths
