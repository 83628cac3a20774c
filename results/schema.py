"""The results schema: file names, columns, statuses and metrics shared by writers (benchmarks, harness) and
readers (reports).

This module is the one place the on-disk contract lives. It imports nothing heavy (no torch, no Ray), so
`reports` can use it. A results folder (a sweep, or one `benchmarks.evaluate` run) looks like:

    RESULTS/
      run.json                 RUN_FIELDS: what ran, where, when, the metric protocol
      trials.parquet           TRIAL_COLUMNS, one row per trial (a baseline such as bicubic is a trial too)
      scores.parquet           SCORE_COLUMNS, one row per (trial, dataset, image)
      summary.parquet          SUMMARY_COLUMNS, one row per (trial, dataset): means over images
      summary.json             the same summary as JSON records
      history.parquet          HISTORY_COLUMNS, one row per (trial, reported step) — absent for evaluate-only
      images/<trial_id>/<dataset>/<image>.png   SR outputs kept for visual comparison (8-bit PNG)
      images/_hr/<dataset>/<image>.png          the matching HR (mod-cropped) images
      trials/<trial_id>/...    per-trial folders (config.json, history, checkpoints)

Missing values are nulls, never made-up numbers; a metric that could not be computed has its reason in
`SUMMARY_COLUMNS`' `<metric>_missing` column (e.g. "lpips_missing").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RUN_FILE = "run.json"
TRIALS_FILE = "trials.parquet"
SCORES_FILE = "scores.parquet"
SUMMARY_FILE = "summary.parquet"
SUMMARY_JSON = "summary.json"
HISTORY_FILE = "history.parquet"
IMAGES_DIR = "images"
REPORT_INDEX = "report/index.html"  # the HTML report `python -m reports.build` writes by default
# run.json: {"with": the scoring's digest, "weights": {trial_id: sha256 of its scored generator file}} (harness.sweeps.
# scored): what a resume needs to keep a model's scores rather than score it again
RUN_SCORED = "scored"
HR_DIR = "_hr"  # images/_hr/<dataset>/<image>.png
TRIALS_DIR = "trials"

SWEEP_STATE = "sweep.json"  # a sweep's own argv and start time (what --resume replays)
STOPS_FILE = "stops.json"  # {trial_id: why the divergence stopper stopped it}
TUNE_DIR = "tune"  # Ray Tune's experiment state of the GAN trials
PRETRAIN_TUNE_DIR = "tune_pretrain"  # ... and of the shared pretrainings

# A collapsed discriminator: D(real) - D(fake) above COLLAPSE_GAP (sigmoid outputs) for COLLAPSE_PATIENCE reports
# in a row stops a trial (harness/sweeps/stopper.py); the study measures the share of GAN reports above the same gap.
COLLAPSE_GAP = 0.98
COLLAPSE_PATIENCE = 3

# trials.parquet `status`
STATUS_OK, STATUS_FAILED, STATUS_STOPPED, STATUS_BASELINE = "ok", "failed", "stopped", "baseline"
# trials.parquet `stage`: a PSNR-oriented pretraining, a GAN run (from a pretraining, or from scratch for the
# single-stage v1), or a baseline that was not trained
STAGE_PRETRAIN, STAGE_GAN, STAGE_BASELINE = "pretrain", "gan", "baseline"
# trials.parquet `flags` (and study.parquet's `selection`): the run validated on a set it is scored on, which only
# the explicit --allow-selection-on-test permits (harness.run.validation)
SELECTED_ON_TEST = "selected-on-test"
# trials.parquet `flags`: the perceptual loss ran on untrained (random) VGG19 features, the explicit --vgg-fallback
# (srgan.checkpoint writes it too: srgan imports no other layer)
UNTRAINED_VGG = "untrained-perceptual-vgg19"


@dataclass(frozen=True)
class Metric:
    """What a metric's number means (as pyiqa describes its metrics)."""

    name: str
    higher_is_better: bool
    lower: float  # the range of the score
    upper: float
    needs_weights: bool  # a learned metric: needs downloaded network weights
    unit: str = ""
    full_reference: bool = True  # compares SR with its HR; False: scores the SR image alone (no-reference)
    needs: str = ""  # the files it needs beyond the images (weights, a parameter file); "" for none


METRICS = {
    m.name: m
    for m in (
        Metric("psnr", higher_is_better=True, lower=0.0, upper=math.inf, needs_weights=False, unit="dB"),
        Metric("ssim", higher_is_better=True, lower=-1.0, upper=1.0, needs_weights=False),
        Metric("lpips", higher_is_better=False, lower=0.0, upper=math.inf, needs_weights=True,
               needs="weights: torchvision AlexNet (ImageNet) + LPIPS v0.1 linear heads"),
        # NIQE (Mittal et al. 2013) is a distance between two Gaussians' fits: >= 0, unbounded above
        Metric("niqe", higher_is_better=False, lower=0.0, upper=math.inf, needs_weights=False,
               full_reference=False, needs="parameter file: NIQE's pristine-image model (mu 1x36, cov 36x36)"),
    )
}
# Reports mark the best per column with this.
HIGHER_IS_BETTER = {name: m.higher_is_better for name, m in METRICS.items()}

# run.json keys
RUN_FIELDS = (
    "kind",  # "sweep" | "evaluate"
    "command",  # the command line that produced the folder
    "git_commit",  # or null
    "hostname",
    "hardware",  # e.g. "CPU: 2 cores (x86_64)" or "GPU: 1x NVIDIA H100"
    "started_at",  # ISO 8601 UTC
    "finished_at",
    "wall_s",
    "scale",
    "datasets",  # list of dataset names scored
    "protocol",  # dict, see benchmarks.scoring.metrics.protocol()
)

# trials.parquet: status is STATUS_* ("stopped": early-stopped by ASHA or a divergence stopper); flags is a JSON
# list of strings (e.g. ["untrained-perceptual-vgg19"]).
TRIAL_COLUMNS = {
    "trial_id": "str",
    "label": "str",  # human-readable, e.g. "v3 adv=5e-3"
    "preset": "str",
    "pixel_weight": "f64",
    "perceptual_weight": "f64",
    "adv_weight": "f64",
    "seed": "i64",
    "status": "str",
    "stage": "str",  # STAGE_*: "pretrain" | "gan" | "baseline"
    "init_from": "str",  # trial_id (or path) of the pretraining a GAN stage started from, else null
    "error": "str",  # null unless failed
    "stop_reason": "str",  # null unless stopped
    "steps": "i64",
    # The compute behind the scored weights, pretraining included (comparisons of unequal budgets are flagged):
    "g_updates": "i64",  # generator optimiser steps
    "images_seen": "i64",  # HR training patches (batch x steps, summed over the stages)
    "selection": "str",  # which weights were scored: "final" (EMA where the recipe has it) | "best-val"
    "wall_s": "f64",
    "device_hours": "f64",  # wall time x devices (GPUs, or CPU workers) used by the trial
    "flags": "str",
    "config_json": "str",  # the resolved ExperimentConfig as JSON (null for baselines)
    # The trial's role in a study, written by the harness when the row is made (harness.sweeps.arms; null in folders
    # written before): its study version ("v2", "srresnet-pretrain", "srresnet-continued", "v2@adv_weight=0.1",
    # "bicubic"), the version of its equal-budget control (pair by seed), and the ladder arm it is, if any.
    "version": "str",
    "control": "str",
    "ladder_recipe": "str",  # the preset whose recipe the ladder varies ("v2")
    "ladder_key": "str",  # the config key it varies ("loss.adv_weight")
    "ladder_value": "f64",  # this arm's value (0.0 for the 0 arm, which is the control)
}

SCORE_COLUMNS = {
    "trial_id": "str",
    "dataset": "str",
    "image": "str",
    "scale": "i64",
    "psnr": "f64",
    "ssim": "f64",
    "lpips": "f64",  # null when LPIPS weights were unavailable
    "niqe": "f64",  # no-reference; null when its parameter file was unavailable or the image too small
}

SUMMARY_COLUMNS = {
    "trial_id": "str",
    "dataset": "str",
    "scale": "i64",
    "num_images": "i64",
    "psnr": "f64",
    "ssim": "f64",
    "lpips": "f64",
    "lpips_missing": "str",  # reason LPIPS is null, else null
    "niqe": "f64",
    "niqe_missing": "str",  # reason NIQE is null, else null
}

# history.parquet: every reported step of every trial. Losses are nulls in the phases that lack them.
HISTORY_COLUMNS = {
    "trial_id": "str",
    "step": "i64",
    "phase": "str",  # "warmup" | "gan"
    "loss_pixel": "f64",
    "loss_perceptual": "f64",
    "loss_adv_g": "f64",
    "loss_g": "f64",
    "loss_d_real": "f64",
    "loss_d_fake": "f64",
    "d_real": "f64",
    "d_fake": "f64",
    # Comparable across versions (histories written before them lack both: null). loss_adv_raw: the adversarial G
    # loss before its weight (loss_adv_g / adv_weight). d_gap: mean sigmoid(D(real)) - mean sigmoid(D(fake)); for
    # a relativistic D, D_Ra's: mean sigmoid(C(real) - mean C(fake)) - mean sigmoid(C(fake) - mean C(real)).
    "loss_adv_raw": "f64",
    "d_gap": "f64",  # above COLLAPSE_GAP: a collapsed discriminator
    "lr_g": "f64",
    "images_per_s": "f64",
    "val_psnr": "f64",  # null on steps without validation
    "val_ssim": "f64",
}


# The study tables (`results.study.compute_study`), beside the others in a study's results folder.
# `version` is a preset ("v3"), a pretraining's ("srresnet-pretrain", "rrdb-pretrain"), or a baseline's ("bicubic").
STUDY_FILE = "study.parquet"  # STUDY_COLUMNS: one row per (comparison, dataset, metric)
STUDY_JSON = "study.json"
STUDY_VERSIONS_FILE = "study_versions.parquet"  # STUDY_VERSION_COLUMNS: per (version, dataset, metric)
STUDY_VERSIONS_JSON = "study_versions.json"
STUDY_PROFILE_FILE = "study_profile.parquet"  # STUDY_PROFILE_COLUMNS: per version, config facts + stability
STUDY_PROFILE_JSON = "study_profile.json"
STUDY_DOSE_FILE = "study_dose.parquet"  # STUDY_DOSE_COLUMNS: per (recipe, ladder key, dataset, metric)
STUDY_DOSE_JSON = "study_dose.json"

# The study's progression; consecutive versions present are compared (v2 - v1, v3 - v2, ...).
STUDY_ORDER = ("v1", "v2", "v3", "ragan", "esrgan")
# study.parquet `kind` of a comparison (results.dose adds the equal-budget control's and the ladder arm's)
KIND_STEP = "version step"
KIND_PRETRAIN = "GAN stage vs its pretraining"

STUDY_COLUMNS = {
    "comparison": "str",  # "v3 - v2", "v3 - srresnet-pretrain"
    "kind": "str",  # KIND_STEP | KIND_PRETRAIN | results.dose's KIND_CONTROL | KIND_ARM
    "dataset": "str",
    "metric": "str",
    "a": "str",
    "b": "str",
    "n": "i64",  # (seed, image) pairs used
    "n_seeds": "i64",
    "n_images": "i64",
    "mean_diff": "f64",  # mean of a - b over the pairs; null when there is no data (see note)
    "ci_low": "f64",  # t interval (`method`); null with one seed (no seed-level interval) or no data
    "ci_high": "f64",
    "ci_level": "f64",  # 0.95
    "method": "str",  # how the interval was made (results.stats: seed x image random effects, Satterthwaite t)
    "df": "f64",  # its Satterthwaite degrees of freedom
    "p_value": "f64",  # two-sided t test of mean_diff = 0
    "p_holm": "f64",  # p_value Holm-adjusted over the metric's family (every comparison, every dataset)
    "distinguishable": "bool",  # p_holm < 0.05; null without a test
    "verdict": "str",  # from p_holm: "a better" | "b better" | "not distinguishable" | "one seed" | "no data" |
    # "no variation" (every pair differs by one non-zero constant: no p-value, no test)
    "excludes_zero": "bool",  # the raw (unadjusted) interval lies entirely on one side of 0
    "p_improve": "f64",  # P(a random seed of a beats one of b on the dataset mean), ties 1/2 (Agarwal et al. 2021)
    "mdd": "f64",  # the smallest true difference this design detects with 80 % power (alpha 0.05, two-sided)
    "sd_seed": "f64",  # the variance components' standard deviations (ANOVA estimates, negative ones set to 0)
    "sd_image": "f64",
    "sd_resid": "f64",
    "budget": "str",  # "unequal-budget" (g_updates differ > 1 %) | "unknown" (g_updates missing) | null (equal)
    "g_updates_a": "i64",  # generator updates behind each side's scored weights (the largest of its trials)
    "g_updates_b": "i64",
    "selection": "str",  # "selected-on-test" when a trial on either side was selected on a scored set, else null
    "variance_sources": "str",  # one line: the sources of variation the interval includes
    "higher_is_better": "bool",  # the metric's direction
    "note": "str",  # why the row has no data or no interval, what was left out, what b is
}

STUDY_VERSION_COLUMNS = {
    "version": "str",
    "stage": "str",  # STAGE_*
    "dataset": "str",
    "metric": "str",
    "n_trials": "i64",
    "n_seeds": "i64",
    "n_images": "i64",
    "mean": "f64",  # mean over seeds of (mean over images per seed)
    "std": "f64",  # sample std over seeds (ddof 1); null with one seed
    "low": "f64",  # the lowest and highest seed's mean over images (the seed range the PD plane draws)
    "high": "f64",
    "missing": "str",  # why mean is null
}

STUDY_PROFILE_COLUMNS = {
    "version": "str",
    "stage": "str",
    "n_trials": "i64",  # trials with scores or history (ok or stopped)
    "seeds": "str",  # JSON list
    "varies": "str",  # JSON list of config keys that differ between the version's trials (null: none)
    "arch": "str",
    "patch_size": "i64",
    "batch_size": "i64",
    "train_data": "str",  # training folders, comma-separated
    "degradation": "str",
    "warmup_steps": "i64",  # pixel-only steps inside the trial itself
    "gan_steps": "i64",
    "pretrained_from": "str",  # the pretraining version a GAN stage started from
    "pretrain_steps": "i64",  # that pretraining's steps
    "pixel_type": "str",
    "perceptual_weight": "f64",
    "perceptual_layer": "str",
    "perceptual_features": "str",  # "imagenet" | "untrained"
    "adv_type": "str",
    "adv_weight": "f64",
    "log_every": "i64",
    "val_every": "i64",
    "val_points": "f64",  # validations recorded per trial (mean)
    "logged": "str",  # history columns with data, comma-separated
    "flags": "str",  # JSON list, the union over the version's trials
    "gan_reports": "i64",  # GAN-stage history rows with the discriminator's gap (d_gap, or D(real) and D(fake))
    "collapse_reports": "i64",  # of which the gap > collapse_gap
    "collapse_share": "f64",  # collapse_reports / gan_reports
    "collapse_share_max": "f64",  # the worst trial's share
    "collapse_gap": "f64",
    "collapse_source": "str",  # "d_gap" | "d_real - d_fake (older history; ...)": what the gap was
    "adv_loss_std": "f64",  # std of the unweighted adversarial G loss over the GAN stage's last half, mean over trials
    "adv_loss_std_sd": "f64",  # its std over trials
    "adv_loss_source": "str",  # "loss_adv_raw" | "loss_adv_g / adv_weight (older history)"
    "psnr_drift": "f64",  # val PSNR at the end of the GAN stage minus at its start, mean over trials
    "psnr_drift_sd": "f64",
    "drift_from": "str",  # what "its start" was
    "divergence_stops": "i64",  # trials stopped or failed for divergence (stops.json, stop_reason or error)
    "stopped": "i64",
    "failed": "i64",
}


# A loss weight's dose-response (`results.dose`): the trend of a metric over a ladder's arms (same recipe,
# pretraining per seed and budget; one weight `key` varied, 0 included).
STUDY_DOSE_COLUMNS = {
    "recipe": "str",  # the preset the ladder varies ("v2")
    "key": "str",  # the varied config key ("loss.adv_weight")
    "dataset": "str",
    "metric": "str",
    "weights": "str",  # JSON list of the arms' values, ascending (0 included when the ladder has it)
    "n_arms": "i64",
    "zero_arm": "bool",  # the ladder has a 0 arm (its reference in study.parquet's arm rows)
    "slope": "f64",  # the metric's change per decade (x10) of the weight: least-squares over the non-zero arms
    "ci_low": "f64",  # its t interval over (seed, image) (`method`); null with one seed or no data
    "ci_high": "f64",
    "ci_level": "f64",
    "method": "str",
    "df": "f64",
    "p_value": "f64",  # two-sided t test of slope = 0
    "p_holm": "f64",  # Holm-adjusted in the study's family for the metric (with study.parquet's comparisons)
    "distinguishable": "bool",  # p_holm < 0.05
    "verdict": "str",  # "rises with the weight" | "falls with the weight" | "not distinguishable" | "one seed" | ...
    "n_seeds": "i64",
    "n_images": "i64",
    "mdd": "f64",  # the smallest slope this design detects with 80 % power
    "sd_seed": "f64",  # the slope contrast's variance components (standard deviations)
    "sd_image": "f64",
    "sd_resid": "f64",
    "arm_means": "str",  # JSON list per arm (order of `weights`): mean over seeds of the mean over images
    "arm_low": "str",  # ... the lowest seed's mean (null for an arm without scores)
    "arm_high": "str",  # ... the highest seed's mean
    "budget": "str",  # "unequal-budget" | "unknown" | null (every arm's g_updates equal)
    "higher_is_better": "bool",
    "note": "str",
}


def polars_schema(columns: dict[str, str]) -> dict:
    """The columns as a polars schema (imports polars lazily)."""
    import polars as pl

    kinds = {"str": pl.Utf8, "f64": pl.Float64, "i64": pl.Int64, "bool": pl.Boolean}
    return {name: kinds[kind] for name, kind in columns.items()}
