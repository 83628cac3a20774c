"""A loss weight's dose-response and the GAN stages' equal-budget controls, from a study's trials and scores.

**The ladder.** A ladder runs one recipe (v2's: L1 + adversarial) at several values of one loss weight
(`ladder_key`, e.g. `loss.adv_weight`), 0 included, every arm from the same pretraining per seed and on the same
budget. Its trend is the least-squares slope of the metric against log10(weight) over the non-zero arms, per
decade of the weight, computed as a linear contrast inside each (seed, image) cell:

    slope[s, i] = sum_k c_k y[k, s, i],   c_k = (x_k - mean x) / sum_j (x_j - mean x)^2,   x_k = log10(w_k).

The contrast's coefficients sum to zero, so everything a seed or an image shares across arms (the pretraining of
a seed, an image's difficulty) cancels, and what remains (arm x seed and arm x image variation, residual) is the
two-way crossed layout `results.stats.seed_image_t` models: the slope's interval is that interval, the training
seed is the unit of replication, and its coverage is the one measured there (checked again for the ladder by
simulation in tests/results/test_results_dose.py: 1,000 null ladders of 3 seeds x 5 images, arms 0.01 / 0.1 / 1
(and 0.001 / ... / 1): 5.4 % (5.4 %) exclude zero when arm x seed variation dominates, 5.4 % (4.8 %) when arm x
image variation does; at the issue's probe, -0.7 dB per decade, the power is 80 % (98 %) at an arm x seed sd of
0.3 dB and 13 % (19 %) at the 1.3 dB the probe's two seeds disagreed by at weight 0.1, as the non-central t says).

The 0 arm has no logarithm. It enters the study as the reference of ordinary paired comparisons (each arm minus
the 0 arm, equal budget, in study.parquet), not the slope: putting it at some made-up position on the log axis
would invent a dose, and with an intercept the slope over the non-zero arms does not depend on it anyway.
The slope is the exchange rate ("each x10 of the weight changes PSNR by ..."); the arm rows say whether the term
does anything at each dose.

**The controls.** A GAN version's control is its pretraining continued with the pixel loss alone for the GAN
stage's generator updates (`srresnet-continued`, `rrdb-continued`): a GAN trial is paired, seed by seed, with the
control its row names (trials.parquet's `control`; in a folder without that column, the control that started from
the same pretraining trial with the same seed); the difference is the effect of the adversarial (and perceptual)
terms at an equal budget. These rows carry the study's claims about the GAN stage. One run can have several roles
(harness.sweeps.arms): v2's 0 arm is its control and its own trial is an arm at v2's weight; such a pair is compared
once.

Tables: `study_dose.parquet` (`schema.STUDY_DOSE_COLUMNS`); the comparisons go into study.parquet through
`results.study`. Torch-free: numpy and polars only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from results import schema, stats
from results.rows import budget_flag, source_trial

KIND_CONTROL = "GAN stage vs its equal-budget control"
KIND_ARM = "ladder arm vs its 0 arm"
CONTROL_SUFFIX = "-continued"  # a control's version: "<family>-continued"
# trials.parquet columns the ladder and the controls add; older folders lack them (read as nulls)
LADDER_COLUMNS = {"version": pl.Utf8, "control": pl.Utf8, "ladder_recipe": pl.Utf8, "ladder_key": pl.Utf8,
                  "ladder_value": pl.Float64}
METHOD_TREND = ("least-squares slope per decade of the weight over the non-zero arms, a contrast inside each "
                "(seed, image) cell; " + stats.METHOD)
TREND_UP, TREND_DOWN, TREND_NONE = "rises with the weight", "falls with the weight", "not distinguishable"
USED_STATUSES = (schema.STATUS_OK, schema.STATUS_STOPPED)


# ------------------------------------------------------------------------------------------- the trend


def slope_contrast(weights: Sequence[float]) -> np.ndarray:
    """The coefficients c_k of the least-squares slope of y on log10(w) (per decade); needs two or more distinct
    positive weights."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or (w <= 0).any() or not np.isfinite(w).all():
        raise ValueError(f"a slope per decade needs positive, finite weights, got {list(weights)}")
    x = np.log10(w)
    centred = x - x.mean()
    sxx = float((centred ** 2).sum())
    if sxx == 0:
        raise ValueError(f"a slope needs at least two distinct weights, got {list(weights)}")
    return centred / sxx


def ladder_trend(values: np.ndarray, weights: Sequence[float], *,
                 ci: float = stats.CI_LEVEL) -> stats.SeedImageT | None:
    """The slope per decade of a metric over a ladder's non-zero arms with its seed x image t interval.

    `values`: (arms, seeds, images), arm k at `weights[k]` (> 0), NaN where a value is missing: a cell missing on
    any arm is missing from the contrast, and `results.stats.complete_grid` drops lines until the grid is
    complete. None when no (seed, image) cell has every arm."""
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim != 3 or grid.shape[0] != len(weights):
        raise ValueError(f"values must be (arms, seeds, images) with one arm per weight, got shape {grid.shape} "
                         f"for {len(weights)} weights")
    c = slope_contrast(weights)
    with np.errstate(invalid="ignore", over="ignore"):
        contrast = np.tensordot(c, grid, axes=1)  # (S, I); NaN wherever an arm lacks the cell
    return stats.seed_image_t(contrast, np.zeros_like(contrast), ci=ci)


# -------------------------------------------------------------------------------------- the trials


@dataclass(frozen=True)
class Arm:
    recipe: str
    key: str
    value: float
    version: str  # the arm's name in study.parquet: its trials' version ("v2@adv_weight=0.1", "v2" for the arm
    # that is the recipe's own trial, "srresnet-continued" for the 0 arm that is the control)
    trials: tuple[tuple[str, int], ...]  # (trial_id, seed)


def arm_name(recipe: str, key: str, value: float) -> str:
    """"v2@adv_weight=0.1": the recipe and the weight's last name, as the harness names an arm's own trials (the
    key's full name is in study_dose)."""
    return f"{recipe}@{key.rsplit('.', 1)[-1]}={value:g}"


def with_ladder_columns(trials: pl.DataFrame) -> pl.DataFrame:
    return trials.with_columns([pl.lit(None, dtype=kind).alias(name) for name, kind in LADDER_COLUMNS.items()
                                if name not in trials.columns])


def is_control(row: dict) -> bool:
    """An equal-budget control: the pretraining continued with the pixel loss ("srresnet-continued")."""
    return str(row.get("version") or "").endswith(CONTROL_SUFFIX)


def is_arm(row: dict) -> bool:
    return row.get("ladder_key") is not None and row.get("ladder_value") is not None


def is_arm_only(row: dict) -> bool:
    """A ladder arm that is nothing else: neither the recipe's own trial (v2, at v2's weight) nor the control."""
    return is_arm(row) and not is_control(row) and row.get("version") != row.get("ladder_recipe")


def compared_by_dose(trials: pl.DataFrame) -> pl.Series:
    """The trials that are only ladder arms, or equal-budget controls: only this module's pairings compare them."""
    return pl.Series([is_arm_only(r) or is_control(r) for r in trials.iter_rows(named=True)], dtype=pl.Boolean)


def arms_only(trials: pl.DataFrame) -> pl.Series:
    return pl.Series([is_arm_only(r) for r in trials.iter_rows(named=True)], dtype=pl.Boolean)


def ladders(trials: pl.DataFrame) -> dict[tuple[str, str], list[Arm]]:
    """{(recipe, key): arms in weight order} of the used trials that are ladder arms."""
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for row in trials.filter(pl.col("status").is_in(USED_STATUSES)).iter_rows(named=True):
        if not is_arm(row) or not math.isfinite(row["ladder_value"]):
            continue
        recipe = row.get("ladder_recipe") or row.get("preset") or "?"
        groups.setdefault((recipe, row["ladder_key"], float(row["ladder_value"])), []).append(row)
    out: dict[tuple[str, str], list[Arm]] = {}
    for (recipe, key, value), rows in sorted(groups.items(), key=lambda kv: kv[0]):
        version = rows[0].get("version") or arm_name(recipe, key, value)
        out.setdefault((recipe, key), []).append(
            Arm(recipe, key, value, version, tuple((r["trial_id"], r["seed"]) for r in rows)))
    return out


@dataclass(frozen=True)
class Pairing:
    """A comparison for study.parquet (results.study wraps it in its `Comparison`)."""

    a: str
    b: str
    kind: str
    a_trials: tuple[tuple[str, int], ...]
    b_trials: tuple[tuple[str, int], ...]
    note: str = ""


def control_pairings(trials: pl.DataFrame) -> list[Pairing]:
    """Each GAN version against its equal-budget control, seed by seed: the control its rows name (`control`), or
    in a folder without that column the control that started from the same pretraining trial with the same seed.
    Ladder arms are compared with their 0 arm instead (`arm_pairings`)."""
    used = trials.filter(pl.col("status").is_in(USED_STATUSES))
    known = set(used["trial_id"].to_list())
    by_version: dict[tuple[str, int], str] = {}  # (control version, seed) -> trial
    by_source: dict[tuple[str | None, int], tuple[str, str]] = {}  # (pretraining, seed) -> (trial, version)
    for row in used.iter_rows(named=True):
        if is_control(row):
            by_version[row["version"], row["seed"]] = row["trial_id"]
            by_source[source_trial(row["init_from"], known), row["seed"]] = (row["trial_id"], row["version"])
    pairs: dict[tuple[str, str], list[tuple[str, int, str]]] = {}
    for row in used.filter(pl.col("stage") == schema.STAGE_GAN).iter_rows(named=True):
        if is_control(row) or is_arm_only(row):
            continue
        if row.get("control"):
            found = by_version.get((row["control"], row["seed"]))
            match = (found, row["control"]) if found is not None else None
        else:
            match = by_source.get((source_trial(row["init_from"], known), row["seed"])) if row["init_from"] else None
        if match is not None:
            pairs.setdefault((row["version"], match[1]), []).append((row["trial_id"], row["seed"], match[0]))
    return [Pairing(version, control, KIND_CONTROL, tuple((t, s) for t, s, _ in found),
                    tuple((c, s) for _, s, c in found),
                    "b is the same pretraining continued with the pixel loss alone for the same generator updates")
            for (version, control), found in pairs.items()]


def arm_pairings(trials: pl.DataFrame, *, already: set[tuple[str, str]] = frozenset()) -> list[Pairing]:
    """Each non-zero arm of every ladder against that ladder's 0 arm, paired by seed; an (a, b) in `already` (the
    recipe's own trial against its control, which is the 0 arm) is not repeated."""
    out = []
    for (recipe, key), arms in ladders(trials).items():
        zero = next((a for a in arms if a.value == 0), None)
        for arm in arms:
            if arm.value == 0 or (zero is not None and (arm.version, zero.version) in already):
                continue
            if zero is None:
                out.append(Pairing(arm.version, arm_name(recipe, key, 0.0), KIND_ARM, arm.trials, (),
                                   "the ladder has no 0 arm"))
                continue
            out.append(Pairing(arm.version, zero.version, KIND_ARM, arm.trials, zero.trials,
                               f"b is the ladder's 0 arm ({key} = 0): the same recipe, pretraining and budget"))
    return out


# ------------------------------------------------------------------------------------ study_dose rows


def _arm_values(scores: pl.DataFrame, arm: Arm, dataset: str, metric: str) -> pl.DataFrame:
    mapping = pl.DataFrame({"trial_id": [t for t, _ in arm.trials], "seed": [s for _, s in arm.trials]},
                           schema={"trial_id": pl.Utf8, "seed": pl.Int64})
    values = (scores.filter(pl.col("dataset") == dataset).join(mapping, on="trial_id", how="inner")
              .select("seed", "image", pl.col(metric).alias("value")))
    values = values.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
    return values.group_by("seed", "image").agg(pl.col("value").mean())


def arm_grid(scores: pl.DataFrame, arms: Sequence[Arm], dataset: str, metric: str) -> tuple[np.ndarray, list, list]:
    """(arms, seeds, images) over the union of seeds and images, NaN where an arm lacks a cell."""
    frames = [_arm_values(scores, arm, dataset, metric) for arm in arms]
    seeds = sorted({s for f in frames for s in f["seed"].to_list()})
    images = sorted({i for f in frames for i in f["image"].to_list()})
    grid = np.full((len(arms), len(seeds), len(images)), np.nan)
    s_index = {s: k for k, s in enumerate(seeds)}
    i_index = {im: k for k, im in enumerate(images)}
    for k, frame in enumerate(frames):
        for seed, image, value in frame.iter_rows():
            grid[k, s_index[seed], i_index[image]] = value
    return grid, seeds, images


def _budget(trials: pl.DataFrame, arms: Sequence[Arm]) -> str | None:
    ids = [t for arm in arms for t, _ in arm.trials]
    if "g_updates" not in trials.columns:
        return "unknown"
    updates = trials.filter(pl.col("trial_id").is_in(ids))["g_updates"].to_list()
    return budget_flag(updates) if updates else "unknown"


def dose_rows(trials: pl.DataFrame, scores: pl.DataFrame, datasets: Sequence[str], metrics: Sequence[str], *,
              ci: float = stats.CI_LEVEL) -> list[dict[str, Any]]:
    """study_dose.parquet's rows (`schema.STUDY_DOSE_COLUMNS`), before the family's Holm adjustment."""
    rows = []
    for (recipe, key), arms in ladders(with_ladder_columns(trials)).items():
        positive = [a for a in arms if a.value > 0]
        budget = _budget(trials, arms)
        for dataset in datasets:
            for metric in metrics:
                row: dict[str, Any] = {
                    "recipe": recipe, "key": key, "dataset": dataset, "metric": metric,
                    "weights": json.dumps([a.value for a in arms]), "n_arms": len(arms),
                    "zero_arm": any(a.value == 0 for a in arms), "ci_level": ci, "budget": budget,
                    "higher_is_better": schema.HIGHER_IS_BETTER[metric], "n_seeds": 0, "n_images": 0,
                    "verdict": "no data", **arm_summary(scores, arms, dataset, metric)}
                if len({a.value for a in positive}) < 2:
                    row["note"] = "fewer than two non-zero weights: no slope"
                    rows.append(row)
                    continue
                grid, _, _ = arm_grid(scores, positive, dataset, metric)
                result = ladder_trend(grid, [a.value for a in positive], ci=ci) if grid.size else None
                rows.append(_trend_row(row, result))
    return rows


def arm_summary(scores: pl.DataFrame, arms: Sequence[Arm], dataset: str, metric: str) -> dict[str, str]:
    """Every arm's mean over seeds of its per-seed mean over images, and the lowest and highest seed (JSON lists
    in the arms' order; null for an arm without scores): the ladder's points and seed ranges on the PD plane."""
    means, lows, highs = [], [], []
    for arm in arms:
        per_seed = _arm_values(scores, arm, dataset, metric).group_by("seed").agg(pl.col("value").mean())["value"]
        finite = per_seed.to_numpy()
        means.append(float(finite.mean()) if finite.size else None)
        lows.append(float(finite.min()) if finite.size else None)
        highs.append(float(finite.max()) if finite.size else None)
    return {"arm_means": json.dumps(means), "arm_low": json.dumps(lows), "arm_high": json.dumps(highs)}


def _trend_row(row: dict[str, Any], result: stats.SeedImageT | None) -> dict[str, Any]:
    if result is None:
        row["note"] = "no (seed, image) cell scored on every non-zero arm"
        return row
    sd_seed, sd_image, sd_resid = result.components.sd()
    mdd = stats.mdd(result.components, result.n_seeds, result.n_images) if result.n_seeds >= 2 else None
    row.update(slope=result.mean_diff, ci_low=result.ci_low, ci_high=result.ci_high, df=result.df,
               p_value=result.p_value, n_seeds=result.n_seeds, n_images=result.n_images, sd_seed=sd_seed,
               sd_image=sd_image, sd_resid=sd_resid, mdd=mdd, verdict=None,
               method=METHOD_TREND if result.n_images > 1 else f"{METHOD_TREND} (one image: over seeds only)")
    notes = []
    if result.n_seeds < 2:
        row["verdict"] = "one seed"
        notes.append("one seed: no seed-level interval")
    elif result.se == 0.0 and result.p_value is None:  # every cell's slope the same: no test applies
        row["verdict"] = "no variation"
        notes.append("no variation: every (seed, image) cell has the same slope, so no test applies")
    if result.dropped_seeds or result.dropped_images:
        notes.append(f"left out for cells missing on an arm: {len(result.dropped_seeds)} seed(s), "
                     f"{len(result.dropped_images)} image(s)")
    row["note"] = "; ".join(notes) or None
    return row


def trend_verdicts(rows: list[dict[str, Any]], *, alpha: float = stats.ALPHA) -> None:
    """The trend's verdict from its Holm-adjusted p-value (set by the study's family adjustment)."""
    for r in rows:
        if r.get("p_holm") is None:
            r["distinguishable"] = None
            continue
        r["distinguishable"] = r["p_holm"] < alpha
        r["verdict"] = (TREND_NONE if not r["distinguishable"] else TREND_UP if r["slope"] > 0 else TREND_DOWN)
