"""A synthetic study with equal-budget controls and a loss-weight ladder, for the dose tests (results and reports).

`add_ladder(folder)` extends a folder written by reports_synthetic.py's `write_synthetic_study` (then recompute
the study tables) the way the harness does (issue 25): per seed a control `srresnet-continued` / `rrdb-continued`
(the pretraining continued with the pixel loss for the GAN stage's generator updates) and the arms of a ladder of
`loss.adv_weight` on v2's recipe, from the same pretraining per seed, with the same budget. Each arm's score is
known: the 0 arm is the control's value per (seed, image), a non-zero arm adds `slope` per decade above the point
one decade below the lowest weight (`slope` x (log10(w / lowest) + 1)), plus arm x seed noise (`sd_seed`) and
residual noise (`sd_resid`), scaled per metric (`NOISE`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from results import schema

LADDER_KEY = "loss.adv_weight"
WEIGHTS = (0.0, 0.01, 0.1, 1.0)
SLOPES = {"psnr": -0.7, "ssim": -0.01, "lpips": 0.02, "niqe": 3.0}  # per decade of the weight
CONTROL_GAIN = {"psnr": 0.1, "ssim": 0.002, "lpips": -0.005, "niqe": 0.2}  # control vs its pretraining
NOISE = {"psnr": 1.0, "ssim": 0.01, "lpips": 0.01, "niqe": 1.0}  # the noise's scale per metric (x the sds)
FAMILIES = {"srresnet": "v2", "rrdb": "esrgan"}  # a control's family and the GAN version that sets its budget


def _row(base: dict, **changes: object) -> dict:
    row = dict(base)
    row.update(changes)
    return row


def add_ladder(folder: Path, *, weights: Sequence[float] = WEIGHTS, slopes: dict[str, float] | None = None,
               sd_seed: float = 0.05, sd_resid: float = 0.02, v2_arm: float | None = None, seed: int = 1) -> Path:
    """Append the controls and the ladder's arms to the folder's trials, scores and summary, with the columns and
    names of /tmp/brief/interface-25.md: the 0 arm is the control `srresnet-continued` (one run, both roles); with
    `v2_arm` the study's v2 trials are the arm at that weight (their scores replaced by the ladder's)."""
    slopes = SLOPES if slopes is None else slopes
    rng = np.random.default_rng(seed)
    trials = pl.read_parquet(folder / schema.TRIALS_FILE).to_dicts()
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    summary = pl.read_parquet(folder / schema.SUMMARY_FILE).to_dicts()
    metrics = [m for m in schema.METRICS if m in scores.columns]
    lowest = min(w for w in [*weights, *([v2_arm] if v2_arm else [])] if w > 0)
    ladder = {"ladder_recipe": "v2", "ladder_key": LADDER_KEY}
    for row in trials:
        row.update({name: None for name in ("version", "control", "ladder_recipe", "ladder_key", "ladder_value")})
        if row["stage"] == schema.STAGE_GAN and row["preset"] != "v1":
            row["control"] = f"{'rrdb' if row['preset'] == 'esrgan' else 'srresnet'}{'-continued'}"
        if v2_arm is not None and row["preset"] == "v2":
            row.update(ladder, ladder_value=float(v2_arm))
    new_trials, new_scores, replaced = [], [], []
    for pre in [t for t in trials if t["stage"] == schema.STAGE_PRETRAIN]:
        family = pre["trial_id"].split("-")[0]
        partner = next((t for t in trials if t["preset"] == FAMILIES[family] and t["seed"] == pre["seed"]), None)
        if partner is None:
            continue
        flags = json.dumps([f for f in json.loads(partner["flags"] or "[]") if f != "untrained-perceptual-vgg19"])
        base = _row(partner, label=None, status="ok", stop_reason=None, control=None, flags=flags,
                    ladder_recipe=None, ladder_key=None, ladder_value=None)
        control_id = f"{family}-continued_s{pre['seed']}"
        control = _row(base, trial_id=control_id, label=f"{family}-continued seed {pre['seed']}",
                       preset=f"{family}-continued", version=f"{family}-continued", adv_weight=0.0,
                       perceptual_weight=0.0, init_from=pre["trial_id"])
        if family == "srresnet" and 0.0 in weights:
            control.update(ladder, ladder_value=0.0)  # the ladder's 0 arm IS the control
        new_trials.append(control)
        pre_scores = scores.filter(pl.col("trial_id") == pre["trial_id"])
        control_scores = pre_scores.with_columns(pl.lit(control_id).alias("trial_id"), *[
            (pl.col(m) + CONTROL_GAIN[m] + NOISE[m] * pl.Series(rng.normal(0, sd_resid, pre_scores.height))).alias(m)
            for m in metrics])
        new_scores.append(control_scores)
        if family != "srresnet":
            continue
        arms = [w for w in weights if w > 0] + ([v2_arm] if v2_arm is not None else [])
        seed_noise = rng.normal(0, sd_seed, len(arms))
        for k, weight in enumerate(arms):
            trial_id = partner["trial_id"] if weight == v2_arm else f"v2-ladder-{weight:g}_s{pre['seed']}"
            if weight != v2_arm:
                new_trials.append(_row(base, trial_id=trial_id, label=f"v2 adv_weight={weight:g} seed {pre['seed']}",
                                       preset="v2", version=f"v2@adv_weight={weight:g}", control="srresnet-continued",
                                       adv_weight=float(weight), init_from=pre["trial_id"], **ladder,
                                       ladder_value=float(weight)))
            else:
                replaced.append(trial_id)
            # the 0 arm is the control's recipe; the lowest non-zero weight sits one decade above it
            decades = math.log10(weight / lowest) + 1
            new_scores.append(control_scores.with_columns(pl.lit(trial_id).alias("trial_id"), *[
                (pl.col(m) + slopes[m] * decades + NOISE[m] * (seed_noise[k] + pl.Series(
                    rng.normal(0, sd_resid, control_scores.height)))).alias(m) for m in metrics]))
    every = pl.DataFrame(trials + new_trials, infer_schema_length=None)
    every.write_parquet(folder / schema.TRIALS_FILE)
    scores = pl.concat([scores.filter(~pl.col("trial_id").is_in(replaced)), *new_scores], how="vertical_relaxed")
    scores.write_parquet(folder / schema.SCORES_FILE)
    changed = [t["trial_id"] for t in new_trials] + replaced
    means = scores.filter(pl.col("trial_id").is_in(changed)).group_by("trial_id", "dataset", maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("num_images"), pl.col("scale").first(), *[pl.col(m).mean() for m in metrics])
    reasons = {(r["dataset"], m): r[f"{m}_missing"] for r in summary for m in ("lpips", "niqe")
               if r.get(f"{m}_missing")}  # a metric missing on a dataset is missing for the new trials too
    summary = [r for r in summary if r["trial_id"] not in replaced]
    summary += [r | {f"{m}_missing": reasons.get((r["dataset"], m)) if r[m] is None else None
                     for m in ("lpips", "niqe")} for r in means.to_dicts()]
    pl.DataFrame(summary, infer_schema_length=None).select(list(schema.SUMMARY_COLUMNS)).write_parquet(
        folder / schema.SUMMARY_FILE)
    return folder


def add_seeds(folder: Path, versions: Sequence[str], seeds: Sequence[int], *, sd: float = 0.3) -> None:
    """Further seeds of some versions (after `add_ladder`), as the harness's seed blocks add them for the ladder's
    top arm and 0 arm (harness.sweeps.arms): each a copy of the version's seed-0 trial with its own seed, id and
    scores (seed-0's, PSNR and NIQE plus noise)."""
    rng = np.random.default_rng(7)
    trials = pl.read_parquet(folder / schema.TRIALS_FILE)
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    new_trials, new_scores = [], []
    for version in versions:
        base = trials.filter((pl.col("version") == version) & (pl.col("seed") == 0)).to_dicts()[0]
        for seed in seeds:
            trial_id = f"{base['trial_id']}-more{seed}"
            new_trials.append({**base, "trial_id": trial_id, "seed": seed})
            own = scores.filter(pl.col("trial_id") == base["trial_id"])
            new_scores.append(own.with_columns(pl.lit(trial_id).alias("trial_id"), *[
                (pl.col(m) + pl.Series(rng.normal(0, sd, own.height))).alias(m)
                for m in ("psnr", "niqe") if m in own.columns]))
    pl.concat([trials, pl.DataFrame(new_trials, schema=trials.schema)]).write_parquet(folder / schema.TRIALS_FILE)
    pl.concat([scores, *new_scores], how="vertical_relaxed").write_parquet(folder / schema.SCORES_FILE)
    summary = pl.read_parquet(folder / schema.SUMMARY_FILE)  # each new trial's rows: its base's, with its own means
    means = pl.concat(new_scores, how="vertical_relaxed").group_by("trial_id", "dataset").agg(
        pl.col("psnr").mean(), pl.col("niqe").mean())
    copies = [summary.filter(pl.col("trial_id") == t["trial_id"].rsplit("-more", 1)[0]).with_columns(
        pl.lit(t["trial_id"]).alias("trial_id")) for t in new_trials]
    copies = pl.concat(copies).drop("psnr", "niqe").join(means, on=["trial_id", "dataset"]).select(summary.columns)
    pl.concat([summary, copies], how="vertical_relaxed").write_parquet(folder / schema.SUMMARY_FILE)
