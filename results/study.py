"""The study's statistics, computed from a results folder: `compute_study(results_dir)`.

It answers the original study's comparison (v1 -> v2 -> v3, then RaGAN and ESRGAN) with measured values:

- paired differences between consecutive versions (v2 - v1, v3 - v2, ragan - v3, esrgan - ragan) and between
  each GAN stage and the pretraining it started from (`v3 - v3-pretrain`), over (image, seed) pairs, with a
  two-level bootstrap confidence interval (`paired_bootstrap`);
- per-version means and standard deviations over seeds (`study_versions.parquet`);
- per-version configuration facts and GAN stability measured from the training history
  (`study_profile.parquet`).

Table layouts are in `results.schema` (STUDY_*). Torch-free: numpy and polars only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from results import io, schema
from results.rows import json_list

log = logging.getLogger(__name__)

# D(real) - D(fake) above this means a collapsed discriminator (G gets no useful gradient); defined in
# results.schema, where the divergence stopper (harness/stopper.py) reads it too, so both measure the same thing.
COLLAPSE_GAP = schema.COLLAPSE_GAP
# stops.json reasons (and trials' stop_reason) that are divergence stops, as the stopper writes them
DIVERGENCE_PREFIXES = ("diverged", "discriminator collapse")
# The study's progression; consecutive pairs are compared (when both are present).
STUDY_ORDER = ("v1", "v2", "v3", "ragan", "esrgan")
PRETRAIN_SUFFIX = "-pretrain"
METRICS = tuple(schema.HIGHER_IS_BETTER)
N_RESAMPLES = 2000
CI_LEVEL = 0.95
BOOTSTRAP_SEED = 0
KIND_STEP = "version step"
KIND_PRETRAIN = "GAN stage vs its pretraining"
USED_STATUSES = (schema.STATUS_OK, schema.STATUS_STOPPED, schema.STATUS_BASELINE)


# ------------------------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class PairedCI:
    """Mean of a - b over the pairs and its bootstrap interval."""

    mean_diff: float
    ci_low: float
    ci_high: float
    n: int  # pairs with both values
    n_seeds: int
    n_images: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def _grid(values: np.ndarray | Sequence) -> np.ndarray:
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim == 1:
        grid = grid[None, :]
    if grid.ndim != 2:
        raise ValueError(f"paired values must be (seeds, images), got shape {grid.shape}")
    return grid


def paired_bootstrap(a: np.ndarray | Sequence, b: np.ndarray | Sequence, *, n_resamples: int = N_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED, ci: float = CI_LEVEL) -> PairedCI:
    """The mean of `a - b` and a percentile bootstrap interval that resamples seeds and images.

    `a` and `b` are (seeds, images) grids of paired values (a 1-D array is one seed); NaN marks a missing
    value, and a pair with either value missing is left out. Each resample draws the seeds with replacement
    and, independently, the images with replacement, and takes the mean of the differences over the drawn
    seeds x images grid (a two-level cluster bootstrap: both the seed-to-seed and the image-to-image
    variation enter the interval). The draws are, in this order,
    `rng = np.random.default_rng(seed)`, `rng.integers(0, S, (n_resamples, S))` for the seeds and
    `rng.integers(0, I, (n_resamples, I))` for the images, over the seeds and images that have at least one
    pair; the interval is `np.quantile` of the resampled means at (1 - ci) / 2 and (1 + ci) / 2.
    """
    a_grid, b_grid = _grid(a), _grid(b)
    if a_grid.shape != b_grid.shape:
        raise ValueError(f"a and b must have the same shape, got {a_grid.shape} and {b_grid.shape}")
    if not 0 < ci < 1 or n_resamples < 1:
        raise ValueError(f"need 0 < ci < 1 and n_resamples >= 1, got ci={ci}, n_resamples={n_resamples}")
    diff = a_grid - b_grid
    present = np.isfinite(diff)
    diff = diff[present.any(axis=1)][:, present.any(axis=0)]  # seeds and images with at least one pair
    present = np.isfinite(diff)
    n = int(present.sum())
    if n == 0:
        return PairedCI(math.nan, math.nan, math.nan, 0, 0, 0)
    n_seeds, n_images = diff.shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, (n_resamples, n_seeds))
    image_draws = rng.integers(0, n_images, (n_resamples, n_images))
    # How often each seed / image was drawn in each resample; the mean over the drawn grid is then
    # sum_s sum_i cs[s] ci[i] d[s, i] / sum_s sum_i cs[s] ci[i] present[s, i].
    seed_counts = _counts(seed_draws, n_seeds)
    image_counts = _counts(image_draws, n_images)
    total = ((seed_counts @ np.where(present, diff, 0.0)) * image_counts).sum(axis=1)
    weight = ((seed_counts @ present.astype(np.float64)) * image_counts).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / weight
    means = means[np.isfinite(means)]  # a draw of only missing cells (possible when pairs are sparse)
    low, high = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return PairedCI(float(diff[present].mean()), float(low), float(high), n, n_seeds, n_images)


def _counts(draws: np.ndarray, size: int) -> np.ndarray:
    rows = np.arange(draws.shape[0])[:, None] * size
    return np.bincount((rows + draws).ravel(), minlength=draws.shape[0] * size).reshape(-1, size).astype(np.float64)


def paired_grids(a: pl.DataFrame, b: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Two long frames (seed, image, value) as aligned (seeds, images) grids, NaN where a value is missing.

    Several values for one (seed, image) on a side (several trials of a version with the same seed) are
    averaged."""
    def side(frame: pl.DataFrame) -> pl.DataFrame:
        return (frame.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
                .group_by("seed", "image").agg(pl.col("value").mean()))

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


# ------------------------------------------------------------------------------------------- loading


@dataclass
class StudyInput:
    trials: pl.DataFrame  # with `version` and a non-null `seed`
    scores: pl.DataFrame
    summary: pl.DataFrame
    history: pl.DataFrame
    stops: dict[str, str]


def load_study_input(results_dir: str | Path) -> StudyInput:
    """The tables the study reads, with each trial's `version`: its preset, `<preset>-pretrain` for a
    pretraining (a pretraining's preset is its generator family's first preset: "v2" for SRResNet)."""
    root = Path(results_dir)
    trials = io.read_table(root / schema.TRIALS_FILE, schema.TRIAL_COLUMNS)
    scores = io.read_table(root / schema.SCORES_FILE, schema.SCORE_COLUMNS)
    summary = io.read_table(root / schema.SUMMARY_FILE, schema.SUMMARY_COLUMNS, required=False)
    history = io.read_table(root / schema.HISTORY_FILE, schema.HISTORY_COLUMNS, required=False)
    stops = io.read_json(root / schema.STOPS_FILE, required=False) or {}
    if not isinstance(stops, dict):
        raise io.ResultsError(f"{root / schema.STOPS_FILE}: expected a JSON object of trial_id -> reason")
    # A sweep without stages (before two-stage training): baselines are baselines, the rest GAN runs.
    stage = (pl.when(pl.col("stage").is_not_null()).then(pl.col("stage"))
             .when(pl.col("status") == schema.STATUS_BASELINE).then(pl.lit(schema.STAGE_BASELINE))
             .otherwise(pl.lit(schema.STAGE_GAN)))
    trials = trials.with_columns(stage.alias("stage"), pl.col("seed").fill_null(-1))
    name = pl.coalesce("preset", "label", pl.lit("?"))
    trials = trials.with_columns(
        pl.when(pl.col("stage") == schema.STAGE_PRETRAIN).then(name + PRETRAIN_SUFFIX).otherwise(name).alias("version"))
    if history is None:
        history = pl.DataFrame(schema=schema.polars_schema(schema.HISTORY_COLUMNS))
    if summary is None:
        summary = pl.DataFrame(schema=schema.polars_schema(schema.SUMMARY_COLUMNS))
    return StudyInput(trials, scores, summary, history, {str(k): str(v) for k, v in stops.items()})


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


def _values(data: StudyInput, trial_seeds: dict[str, int], dataset: str, metric: str) -> pl.DataFrame:
    """(seed, image, value) of the given trials on one dataset; `trial_seeds` maps trial_id -> seed to use."""
    mapping = pl.DataFrame({"trial_id": list(trial_seeds), "seed": list(trial_seeds.values())},
                           schema={"trial_id": pl.Utf8, "seed": pl.Int64})
    return (data.scores.filter(pl.col("dataset") == dataset)
            .join(mapping, on="trial_id", how="inner")
            .select("seed", "image", pl.col(metric).alias("value")))


# ----------------------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    kind: str
    a_trials: dict[str, int]  # trial_id -> seed
    b_trials: dict[str, int]  # trial_id -> the seed of the a trial it is paired with
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.a} - {self.b}"


def comparisons(trials: pl.DataFrame) -> list[Comparison]:
    """Consecutive versions present (v2 - v1, ...), then each GAN version against its own pretraining."""
    used = _used(trials)
    gan = used.filter(pl.col("stage") == schema.STAGE_GAN)
    by_version: dict[str, dict[str, int]] = {}
    for row in gan.iter_rows(named=True):
        by_version.setdefault(row["version"], {})[row["trial_id"]] = row["seed"]
    out = []
    for b, a in zip(STUDY_ORDER, STUDY_ORDER[1:], strict=False):
        if a in by_version and b in by_version:
            out.append(Comparison(a, b, KIND_STEP, by_version[a], by_version[b]))
    known = {r["trial_id"]: r for r in used.iter_rows(named=True)}
    ordered = [v for v in STUDY_ORDER if v in by_version] + sorted(set(by_version) - set(STUDY_ORDER))
    for version in ordered:
        a_trials, b_trials, sources, unknown = {}, {}, set(), set()
        for row in gan.filter(pl.col("version") == version).iter_rows(named=True):
            source = row["init_from"]
            if source is None:
                continue
            if source not in known or known[source]["stage"] != schema.STAGE_PRETRAIN:
                unknown.add(source)
                continue
            a_trials[row["trial_id"]] = row["seed"]
            b_trials[source] = row["seed"]
            sources.add(known[source]["version"])
        if not a_trials and not unknown:
            continue  # single-stage (v1)
        note = (f"b is the pretraining this GAN stage started from ({', '.join(sorted(sources))})" if sources
                else "")
        if unknown:
            note += ("; " if note else "") + (f"init_from is not a scored pretraining trial: "
                                              f"{', '.join(sorted(unknown))}")
        # A pretraining shared by several seeds is paired with each of them (`_b_values`).
        out.append(Comparison(version, f"{version}{PRETRAIN_SUFFIX}", KIND_PRETRAIN, a_trials, b_trials, note))
    return out


def _pretrain_pairs(data: StudyInput, comp: Comparison) -> dict[str, list[int]]:
    """pretraining trial -> the seeds of the GAN trials that started from it."""
    pairs: dict[str, list[int]] = {}
    for row in data.trials.filter(pl.col("trial_id").is_in(list(comp.a_trials))).iter_rows(named=True):
        pairs.setdefault(row["init_from"], []).append(row["seed"])
    return pairs


def _b_values(data: StudyInput, comp: Comparison, dataset: str, metric: str) -> pl.DataFrame:
    if comp.kind != KIND_PRETRAIN:
        return _values(data, comp.b_trials, dataset, metric)
    frames = []
    for source, seeds in _pretrain_pairs(data, comp).items():
        for seed in seeds:
            frames.append(_values(data, {source: seed}, dataset, metric))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"seed": pl.Int64, "image": pl.Utf8,
                                                                 "value": pl.Float64})


def comparison_rows(data: StudyInput, *, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                    ci: float = CI_LEVEL) -> list[dict[str, Any]]:
    rows = []
    for comp in comparisons(data.trials):
        for dataset in _datasets(data):
            for metric in _metrics(data):
                higher = schema.HIGHER_IS_BETTER[metric]
                row = {"comparison": comp.name, "kind": comp.kind, "dataset": dataset, "metric": metric,
                       "a": comp.a, "b": comp.b, "ci_level": ci, "n_resamples": n_resamples, "bootstrap_seed": seed,
                       "higher_is_better": higher, "note": comp.note or None}
                a_values = _values(data, comp.a_trials, dataset, metric)
                b_values = _b_values(data, comp, dataset, metric)
                grid_a, grid_b, _, _ = paired_grids(a_values, b_values)
                result = paired_bootstrap(grid_a, grid_b, n_resamples=n_resamples, seed=seed, ci=ci)
                if result.n == 0:
                    reason = _no_pairs_reason(data, comp, dataset, metric, a_values, b_values)
                    row.update(n=0, n_seeds=0, n_images=0, mean_diff=None, ci_low=None, ci_high=None,
                               excludes_zero=None, verdict="no data",
                               note="; ".join(x for x in (reason, comp.note) if x))
                else:
                    row.update(n=result.n, n_seeds=result.n_seeds, n_images=result.n_images,
                               mean_diff=result.mean_diff, ci_low=result.ci_low, ci_high=result.ci_high,
                               excludes_zero=result.excludes_zero, verdict=_verdict(result, higher))
                rows.append(row)
    return rows


def _no_pairs_reason(data: StudyInput, comp: Comparison, dataset: str, metric: str, a_values: pl.DataFrame,
                     b_values: pl.DataFrame) -> str:
    def has(values: pl.DataFrame) -> bool:
        return values.filter(pl.col("value").is_not_null() & pl.col("value").is_finite()).height > 0

    if not has(a_values):
        return f"{comp.a}: {_missing_reason(data, comp.a_trials, dataset, metric)}"
    if not has(b_values):
        return f"{comp.b}: {_missing_reason(data, comp.b_trials, dataset, metric)}"
    return "no (image, seed) pair scored on both sides"


def _verdict(result: PairedCI, higher_is_better: bool) -> str:
    if not result.excludes_zero:
        return "not distinguishable from zero"
    a_higher = result.ci_low > 0
    return "a better" if a_higher == higher_is_better else "b better"


# ---------------------------------------------------------------------------------- version aggregates


def version_rows(data: StudyInput) -> list[dict[str, Any]]:
    """Mean +- std over seeds (of the mean over images per seed) for every version, dataset and metric."""
    used = _used(data.trials)
    rows = []
    versions = _ordered_versions(used)
    for version in versions:
        part = used.filter(pl.col("version") == version)
        trial_seeds = dict(zip(part["trial_id"].to_list(), part["seed"].to_list(), strict=True))
        stage = part["stage"][0]
        for dataset in _datasets(data):
            for metric in _metrics(data):
                values = _values(data, trial_seeds, dataset, metric).filter(
                    pl.col("value").is_not_null() & pl.col("value").is_finite())
                row = {"version": version, "stage": stage, "dataset": dataset, "metric": metric,
                       "n_trials": part.height}
                if values.height == 0:
                    row.update(n_seeds=0, n_images=0, mean=None, std=None,
                               missing=_missing_reason(data, trial_seeds, dataset, metric))
                else:
                    per_seed = values.group_by("seed").agg(pl.col("value").mean())["value"].to_numpy()
                    row.update(n_seeds=len(per_seed), n_images=values["image"].n_unique(),
                               mean=float(per_seed.mean()),
                               std=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None, missing=None)
                rows.append(row)
    return rows


def _ordered_versions(trials: pl.DataFrame) -> list[str]:
    """Baselines, then the study's order with each pretraining before the first version that uses it."""
    present = trials["version"].unique().to_list()
    baselines = sorted(trials.filter(pl.col("stage") == schema.STAGE_BASELINE)["version"].unique().to_list())
    order = []
    for name in STUDY_ORDER:
        order += [f"{name}{PRETRAIN_SUFFIX}", name]
    known = [v for v in order if v in present and v not in baselines]
    return baselines + known + sorted(set(present) - set(known) - set(baselines))


# --------------------------------------------------------------------------------- profile (facts, stability)


def _config(row: dict) -> dict:
    try:
        parsed = json.loads(row["config_json"]) if row["config_json"] else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


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


@dataclass(frozen=True)
class TrialStability:
    gan_reports: int
    collapse_reports: int
    adv_loss_std: float | None
    psnr_drift: float | None
    drift_from: str | None


def _last_val(history: pl.DataFrame, phase: str | None = None) -> float | None:
    part = history if phase is None else history.filter(pl.col("phase") == phase)
    values = part.sort("step")["val_psnr"].drop_nulls().drop_nans()
    return float(values[-1]) if values.len() else None


def trial_stability(history: pl.DataFrame, trial_id: str, pretrain_id: str | None, *,
                    gap: float = COLLAPSE_GAP) -> TrialStability:
    """Collapse reports, adversarial-loss spread and PSNR drift of one trial's GAN stage."""
    own = history.filter(pl.col("trial_id") == trial_id).sort("step")
    gan = own.filter(pl.col("phase") == "gan")
    d = gan.select("d_real", "d_fake").drop_nulls()
    collapse = int((d["d_real"] - d["d_fake"] > gap).sum()) if d.height else 0
    adv_std = None
    adv = gan.select("step", "loss_adv_g").drop_nulls().filter(pl.col("loss_adv_g").is_finite())
    if adv.height >= 2:
        first, last = gan["step"].min(), gan["step"].max()
        half = adv.filter(pl.col("step") >= first + (last - first) / 2)["loss_adv_g"].to_numpy()
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
    return TrialStability(d.height, collapse, adv_std, drift, drift_from if drift is not None else None)


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
    for version in _ordered_versions(_used(trials)):
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
        sources = [by_id[s] for s in part["init_from"].drop_nulls().unique().to_list() if s in by_id]
        row["pretrained_from"] = ", ".join(sorted({s["version"] for s in sources})) or None
        pre_steps = sorted({s["steps"] for s in sources if s["steps"] is not None})
        row["pretrain_steps"] = pre_steps[0] if len(pre_steps) == 1 else None
        if stage == schema.STAGE_GAN:
            row.update(_stability(data, part, every, gap))
        rows.append(row)
    return rows


def _stability(data: StudyInput, part: pl.DataFrame, every: pl.DataFrame, gap: float) -> dict[str, Any]:
    """Stability of a version's GAN stages: measured on its scored trials (`part`); divergence counted over all
    of them (`every`: a diverged run that left no checkpoint is a failed trial whose error says so)."""
    measured = [trial_stability(data.history, r["trial_id"], r["init_from"], gap=gap)
                for r in part.iter_rows(named=True)]
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
            "adv_loss_std": adv, "adv_loss_std_sd": adv_sd, "psnr_drift": drift, "psnr_drift_sd": drift_sd,
            "drift_from": "; ".join(froms) or None, "divergence_stops": stops}


# -------------------------------------------------------------------------------------------- writing


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pl.DataFrame:
    full = [{name: row.get(name) for name in columns} for row in rows]
    return pl.DataFrame(full, schema=schema.polars_schema(columns))


def _json_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return [{k: clean(v) for k, v in record.items()} for record in frame.to_dicts()]


def compute_study(results_dir: str | Path, *, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                  ci: float = CI_LEVEL) -> dict[str, Path]:
    """Write the study tables (parquet + JSON) into `results_dir`; returns {table name: parquet path}.

    Needs trials.parquet and scores.parquet; history.parquet and stops.json are used when present."""
    root = Path(results_dir)
    data = load_study_input(root)
    io.check_writable(root)
    tables = {
        "study": (comparison_rows(data, n_resamples=n_resamples, seed=seed, ci=ci), schema.STUDY_COLUMNS,
                  schema.STUDY_FILE, schema.STUDY_JSON),
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
