"""The results schema: file names and columns shared by writers (benchmarks, harness) and readers (reports).

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

RUN_FILE = "run.json"
TRIALS_FILE = "trials.parquet"
SCORES_FILE = "scores.parquet"
SUMMARY_FILE = "summary.parquet"
SUMMARY_JSON = "summary.json"
HISTORY_FILE = "history.parquet"
IMAGES_DIR = "images"
HR_DIR = "_hr"  # images/_hr/<dataset>/<image>.png
TRIALS_DIR = "trials"

# Metrics and their direction. Reports mark the best per column with this.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False}

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
    "protocol",  # dict, see benchmarks.metrics.protocol()
)

# trials.parquet: status is "ok" | "failed" | "stopped" (early-stopped by ASHA or a divergence stopper)
# | "baseline"; flags is a JSON list of strings (e.g. ["untrained-perceptual-vgg19"]).
TRIAL_COLUMNS = {
    "trial_id": "str",
    "label": "str",  # human-readable, e.g. "v3 adv=5e-3"
    "preset": "str",
    "pixel_weight": "f64",
    "perceptual_weight": "f64",
    "adv_weight": "f64",
    "seed": "i64",
    "status": "str",
    "error": "str",  # null unless failed
    "stop_reason": "str",  # null unless stopped
    "steps": "i64",
    "wall_s": "f64",
    "device_hours": "f64",  # wall time x devices (GPUs, or CPU workers) used by the trial
    "flags": "str",
    "config_json": "str",  # the resolved ExperimentConfig as JSON (null for baselines)
}

SCORE_COLUMNS = {
    "trial_id": "str",
    "dataset": "str",
    "image": "str",
    "scale": "i64",
    "psnr": "f64",
    "ssim": "f64",
    "lpips": "f64",  # null when LPIPS weights were unavailable
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
    "lr_g": "f64",
    "images_per_s": "f64",
    "val_psnr": "f64",  # null on steps without validation
    "val_ssim": "f64",
}


def polars_schema(columns: dict[str, str]) -> dict:
    """The columns as a polars schema (imports polars lazily)."""
    import polars as pl

    kinds = {"str": pl.Utf8, "f64": pl.Float64, "i64": pl.Int64}
    return {name: kinds[kind] for name, kind in columns.items()}
