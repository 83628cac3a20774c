"""Synthetic results folders (exactly per `results.schema`) for the report tests, and the report speed benchmark.

The tests use `write_synthetic_results` (a sweep: XSS, failed-trial and browser cases) and
`write_synthetic_study` (a study: pretrainings, GAN stages from them, seeds, study tables). Test-only: it
lives outside the shipped `reports` package on purpose (it carries HTML/JS payloads).

Speed benchmark: `python tests/reports/reports_synthetic.py` writes 50 trials x 3 datasets with ~100-step
histories and a few images, builds the report and prints how long the build took (`--help` for sizes).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageFilter

from results import schema

PRESETS = ("v1", "v2", "v3", "ragan", "esrgan")
HOSTILE_LABEL = "<script>window.__xss=1</script>"
HOSTILE_IMAGE = '<img src=x onerror="window.__xss=2">'
HOSTILE_ERROR = "<img src=x onerror=\"window.__xss=3\"> RuntimeError: & friends"
LPIPS_REASON = "LPIPS weights (AlexNet v0.1) unavailable: no pyiqa cache on this machine"
FAILED_ERROR = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
STOP_REASON = "ASHA: PSNR below median at step 50"


def _frame(rows: list[dict], columns: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema.polars_schema(columns))


def _hr_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, textured test image (uint8 HWC) so crops and PSNR have something to show."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * xx + rng.uniform(0, 3)), np.cos(5 * yy + rng.uniform(0, 3)),
                     np.sin(4 * (xx + yy))], axis=-1)
    texture = rng.normal(0, 0.25, (size, size, 3))
    img = 0.5 + 0.35 * base + texture * (xx[..., None] > 0.5)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _save(path: Path, img: np.ndarray | Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(path)


def _history(trial_id: str, steps: int, rng: np.random.Generator, stop_at: int | None) -> list[dict]:
    warmup = max(1, steps * 3 // 10)
    last = stop_at if stop_at is not None else steps
    rows = []
    for step in range(1, last + 1):
        gan = step > warmup
        pixel = 0.1 * np.exp(-step / 40) + 0.01 + rng.normal(0, 0.002)
        row = {name: None for name in schema.HISTORY_COLUMNS}
        row.update(trial_id=trial_id, step=step, phase="gan" if gan else "warmup", loss_pixel=pixel,
                   lr_g=1e-4, images_per_s=float(rng.uniform(40, 60)))
        if gan:
            d_real = float(np.clip(0.7 + rng.normal(0, 0.05), 0, 1))
            d_fake = float(np.clip(0.3 + rng.normal(0, 0.05), 0, 1))
            row.update(loss_perceptual=0.5 + rng.normal(0, 0.02), loss_adv_g=0.7 + rng.normal(0, 0.05),
                       loss_d_real=-np.log(d_real), loss_d_fake=-np.log(1 - d_fake), d_real=d_real, d_fake=d_fake)
            row["loss_g"] = pixel + 6e-3 * row["loss_perceptual"] + 1e-3 * row["loss_adv_g"]
        else:
            row["loss_g"] = pixel
        if step % 10 == 0:
            row.update(val_psnr=24 + 3 * (1 - np.exp(-step / 30)) + rng.normal(0, 0.1), val_ssim=0.75)
        rows.append(row)
    return rows


def write_synthetic_results(
    folder: Path,
    n_trials: int,
    datasets: Sequence[str],
    with_failed: bool = True,
    missing_lpips: bool = True,
    hostile_names: bool = False,
    *,
    niqe: bool = True,
    history_steps: int = 100,
    images_per_dataset: int = 2,
    image_size: int = 48,
    seed: int = 0,
) -> Path:
    """Write a results folder: a bicubic baseline plus `n_trials` trained trials, per `results.schema`.

    With `with_failed` the last trial failed (no scores, no images) and, when there are three or more
    trials, the one before it was stopped early. With `missing_lpips` LPIPS is null (with its reason) on
    the last dataset; without `niqe` there is no NIQE column at all (a folder from before NIQE). With
    `hostile_names` one trial label, one image name, one flag and the error carry HTML/JS payloads that set
    `window.__xss` if they ever run.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scale = 4
    trials: list[dict] = [{
        "trial_id": "bicubic", "label": "bicubic", "preset": "bicubic", "pixel_weight": None,
        "perceptual_weight": None, "adv_weight": None, "seed": None, "status": "baseline", "error": None,
        "stop_reason": None, "steps": 0, "wall_s": 0.5, "device_hours": 0.5 / 3600, "flags": "[]",
        "config_json": None,
    }]
    for i in range(n_trials):
        preset = PRESETS[i % len(PRESETS)]
        adv = [1e-3, 5e-3, 1e-2][i % 3]
        status, error, stop_reason = "ok", None, None
        if with_failed and i == n_trials - 1:
            status, error = "failed", HOSTILE_ERROR if hostile_names else FAILED_ERROR
        elif with_failed and n_trials >= 3 and i == n_trials - 2:
            status, stop_reason = "stopped", STOP_REASON
        label = HOSTILE_LABEL if hostile_names and i == 0 else f"{preset} adv={adv:g} #{i}"
        flags = ["untrained-perceptual-vgg19"] if i % 4 == 1 else []
        if hostile_names and i == 0:
            flags.append("<b onmouseover=window.__xss=4>flag</b>")
        config = {"preset": preset, "loss": {"adv_weight": adv, "perceptual_weight": 6e-3}, "seed": i}
        trials.append({
            "trial_id": f"trial_{i:03d}", "label": label, "preset": preset, "pixel_weight": 1.0,
            "perceptual_weight": 6e-3, "adv_weight": adv, "seed": i, "status": status, "error": error,
            "stop_reason": stop_reason, "steps": history_steps // 2 if status == "stopped" else history_steps,
            "wall_s": float(rng.uniform(60, 120)), "device_hours": float(rng.uniform(60, 120)) / 3600,
            "flags": json.dumps(flags), "config_json": json.dumps(config),
        })

    image_names = [f"img_{k:02d}" for k in range(images_per_dataset)]
    if hostile_names and image_names:
        image_names[0] = HOSTILE_IMAGE
    images = folder / schema.IMAGES_DIR
    hr_images: dict[tuple[str, str], np.ndarray] = {}
    for dataset in datasets:
        for name in image_names:
            hr = _hr_image(rng, image_size)
            hr_images[dataset, name] = hr
            _save(images / schema.HR_DIR / dataset / f"{name}.png", hr)

    scores, summary, history = [], [], []
    for t_index, trial in enumerate(trials):
        if trial["status"] == "failed":
            continue
        baseline = trial["status"] == "baseline"
        quality = 0.0 if baseline else 0.5 + 0.02 * t_index
        for d_index, dataset in enumerate(datasets):
            lpips_missing = missing_lpips and d_index == len(datasets) - 1
            rows = []
            for name in image_names:
                hr = hr_images[dataset, name]
                if baseline:
                    small = Image.fromarray(hr).resize((image_size // scale,) * 2, Image.Resampling.BICUBIC)
                    sr_img = small.resize((image_size,) * 2, Image.Resampling.BICUBIC)
                else:
                    noisy = hr.astype(np.float64) + rng.normal(0, 8 - 4 * quality, hr.shape)
                    sr_img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)
                _save(images / trial["trial_id"] / dataset / f"{name}.png", sr_img)
                rows.append({
                    "trial_id": trial["trial_id"], "dataset": dataset, "image": name, "scale": scale,
                    "psnr": 26.0 + 2 * quality + rng.normal(0, 0.3), "ssim": 0.78 + 0.05 * quality,
                    "lpips": None if lpips_missing else 0.40 - 0.25 * quality + rng.normal(0, 0.01),
                    "niqe": 7.0 - 2 * quality + rng.normal(0, 0.05),
                })
            scores.extend(rows)
            if not rows:
                continue
            summary.append({
                "trial_id": trial["trial_id"], "dataset": dataset, "scale": scale, "num_images": len(rows),
                "psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
                "lpips": None if lpips_missing else float(np.mean([r["lpips"] for r in rows])),
                "lpips_missing": LPIPS_REASON if lpips_missing else None,
                "niqe": float(np.mean([r["niqe"] for r in rows])), "niqe_missing": None,
            })
        if not baseline:
            stop_at = history_steps // 2 if trial["status"] == "stopped" else None
            history.extend(_history(trial["trial_id"], history_steps, rng, stop_at))

    # A failed trial still reports the steps it made before failing.
    for trial in trials:
        if trial["status"] == "failed":
            history.extend(_history(trial["trial_id"], history_steps, rng, max(1, history_steps // 5)))

    without = () if niqe else ("niqe", "niqe_missing")
    _frame(trials, schema.TRIAL_COLUMNS).write_parquet(folder / schema.TRIALS_FILE)
    scores_frame = _frame(scores, schema.SCORE_COLUMNS)
    scores_frame.drop([c for c in without if c in scores_frame.columns]).write_parquet(folder / schema.SCORES_FILE)
    summary_frame = _frame(summary, schema.SUMMARY_COLUMNS)
    summary_frame = summary_frame.drop([c for c in without if c in summary_frame.columns])
    summary_frame.write_parquet(folder / schema.SUMMARY_FILE)
    (folder / schema.SUMMARY_JSON).write_text(json.dumps(summary_frame.to_dicts(), indent=1))
    if history_steps > 0:
        _frame(history, schema.HISTORY_COLUMNS).write_parquet(folder / schema.HISTORY_FILE)
    run = {
        "kind": "sweep", "command": "python -m harness.sweep --synthetic", "git_commit": "0123456789abcdef",
        "hostname": "synthetic-host", "hardware": "CPU: 2 cores (x86_64)", "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T01:00:00Z", "wall_s": 3600.0, "scale": scale, "datasets": list(datasets),
        "protocol": {"psnr": "Y (BT.601, 16-235), crop=scale, float64, 8-bit", "ssim": "Y, gaussian 11x11 s=1.5",
                     "lpips": "alex v0.1 (pyiqa lpips), inputs in [0, 1]"},
    }
    (folder / schema.RUN_FILE).write_text(json.dumps(run, indent=2))
    return folder


# dB above bicubic, LPIPS and NIQE per version (a pretraining has the best PSNR, a GAN stage the best perception)
STUDY_PSNR = {"bicubic": 0.0, "v1": 0.3, "srresnet-pretrain": 1.6, "v2": 1.2, "v3": 0.9, "ragan": 1.0,
              "rrdb-pretrain": 1.8, "esrgan": 1.1}
STUDY_LPIPS = {"bicubic": 0.40, "v1": 0.36, "srresnet-pretrain": 0.33, "v2": 0.30, "v3": 0.24, "ragan": 0.23,
               "rrdb-pretrain": 0.31, "esrgan": 0.20}
STUDY_NIQE = {"bicubic": 7.5, "v1": 7.0, "srresnet-pretrain": 6.6, "v2": 6.1, "v3": 5.2, "ragan": 5.0,
              "rrdb-pretrain": 6.4, "esrgan": 4.6}
HOSTILE_FLAG = "<img src=x onerror=window.__xss=5>"
HOSTILE_REASON = "<script>window.__xss=6</script> LPIPS weights missing"
NIQE_REASON = "NIQE parameters unavailable: no pyiqa cache and no niqe_pris_params.npz under the data root"
STUDY_STOP = "discriminator collapse: D(real)-D(fake) > 0.98 for 3 reports (step 16)"
VALIDATION = {"split": "held-out", "source": "train/T91", "images": ["t91_007.png", "t91_042.png"],
              "rule": "content hash"}
PRETRAIN_CACHE = {"srresnet-pretrain": "cache hit: <run>/trials/srresnet-pretrain"}
FAMILY = {"esrgan": "rrdb"}  # generator family per preset (the others: srresnet)
OLD_PRETRAIN_PRESET = {"srresnet": "v2", "rrdb": "esrgan"}  # what folders before the names called them
# study.parquet's columns before verdicts were Holm-adjusted (an old-layout folder has exactly these)
OLD_STUDY_COLUMNS = ("comparison", "kind", "dataset", "metric", "a", "b", "n", "n_seeds", "n_images", "mean_diff",
                     "ci_low", "ci_high", "ci_level", "n_resamples", "bootstrap_seed", "higher_is_better",
                     "excludes_zero", "verdict", "note")
NEW_TRIAL_COLUMNS = ("g_updates", "images_seen", "selection")
NEW_HISTORY_COLUMNS = ("loss_adv_raw", "d_gap")
ADV_WEIGHT = 5e-3


def _family(preset: str) -> str:
    return FAMILY.get(preset, "srresnet")


def _study_config(preset: str, stage: str, steps: int) -> dict:
    """A resolved config (the keys of `srgan.config.ExperimentConfig`) shaped like the tiny presets."""
    gan = stage == "gan"
    perceptual = preset in ("v3", "ragan", "esrgan") and gan
    return {
        "name": f"{preset}-tiny" if gan else f"{preset}-tiny-pretrain", "scale": 4,
        "generator": {"arch": "rrdbnet" if _family(preset) == "rrdb" else "srresnet", "num_blocks": 2,
                      "num_features": 16},
        "loss": {"pixel_type": "mse" if preset == "v1" else "l1", "perceptual_weight": 1.0 if perceptual else 0.0,
                 "perceptual_layer": "conv5_4", "perceptual_weights": "untrained",
                 "adv_type": "relativistic" if preset in ("ragan", "esrgan") else "vanilla", "adv_weight": ADV_WEIGHT},
        "data": {"patch_size": 96 if preset == "v1" else 128, "batch_size": 4,
                 "train_dirs": ["train/T91"] if preset == "v1" else ["train/T91", "train/BSD200"],
                 "degradation": "naive" if preset == "v1" else "matlab"},
        "train": {"warmup_steps": steps if stage == "pretrain" else 0, "gan_steps": steps if gan else 0,
                  "log_every": 2, "val_every": 10, "seed": 0},
    }


def _study_history(trial_id: str, version: str, steps: int, rng: np.random.Generator, *, collapse: int = 0,
                   stop_at: int | None = None) -> list[dict]:
    rows = []
    pretrain = version.endswith("-pretrain")
    base = 24.0 + 2 * STUDY_PSNR[version]
    for step in range(2, (stop_at or steps) + 1, 2):
        row = {name: None for name in schema.HISTORY_COLUMNS}
        row.update(trial_id=trial_id, step=step, phase="warmup" if pretrain else "gan",
                   loss_pixel=0.05 + rng.normal(0, 0.002), lr_g=5e-4, images_per_s=float(rng.uniform(40, 60)))
        if not pretrain:
            collapsed = step > (stop_at or steps) - 2 * collapse
            d_real = 0.999 if collapsed else float(np.clip(0.7 + rng.normal(0, 0.05), 0, 1))
            d_fake = 0.01 if collapsed else float(np.clip(0.3 + rng.normal(0, 0.05), 0, 1))
            raw = 0.7 + rng.normal(0, 0.05)
            row.update(d_real=d_real, d_fake=d_fake, loss_adv_g=ADV_WEIGHT * raw, loss_adv_raw=raw,
                       d_gap=d_real - d_fake, loss_d_real=-np.log(d_real), loss_d_fake=-np.log(1 - d_fake))
        row["loss_g"] = row["loss_pixel"]
        if step % 10 == 0:
            row["val_psnr"] = base + rng.normal(0, 0.05) + (0.0 if pretrain else -0.03 * step / steps)
        rows.append(row)
    return rows


def write_synthetic_study(
    folder: Path,
    *,
    presets: Sequence[str] = PRESETS,
    seeds: Sequence[int] = (0, 1, 2),
    datasets: Sequence[str] = ("Set5", "Set14"),
    images_per_dataset: int = 3,
    image_size: int = 48,
    missing_lpips: bool = False,
    missing_niqe: bool = False,
    hostile: bool = False,
    steps: int = 40,
    compute: bool = True,
    shared_pretrain: bool = False,
    equal_budget: bool = False,
    selected_on_test: bool = False,
    layout: str = "new",
    seed: int = 0,
) -> Path:
    """A study's results folder: bicubic, per seed an SRResNet pretraining (`srresnet-pretrain`) and an RRDB
    one (`rrdb-pretrain`), the GAN stages started from them (v1 single-stage, `steps` updates, unless
    `equal_budget` gives it the two-stage versions' 2 x `steps`), scores (PSNR, SSIM, LPIPS, NIQE), histories,
    images and stops.json (RaGAN's last seed stopped for a collapsed D); then, with `compute`, the study tables.

    With `missing_lpips` / `missing_niqe` that metric is null everywhere (with its reason); with `hostile` a
    flag and the LPIPS reason carry HTML/JS payloads; with `shared_pretrain` one pretraining per generator
    (the first seed's) starts the GAN stages of every seed; with `selected_on_test` every trial is flagged
    `selected-on-test`. `layout="old"` writes the folder as the harness did before pretrainings had names and
    verdicts were adjusted: pretrainings `pretrain-<hex>` with preset v2/esrgan, no g_updates, NIQE, d_gap or
    loss_adv_raw columns, and study.parquet with only `OLD_STUDY_COLUMNS` (bootstrap verdicts)."""
    from results import study

    if layout not in ("new", "old"):
        raise ValueError(f"layout must be 'new' or 'old', got {layout!r}")
    old = layout == "old"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scale = 4
    trials: list[dict] = [{name: None for name in schema.TRIAL_COLUMNS} | {
        "trial_id": "bicubic", "label": "bicubic", "preset": "bicubic", "status": "baseline", "stage": "baseline",
        "steps": 0, "wall_s": 0.5, "device_hours": 0.5 / 3600, "flags": "[]"}]
    versions = {"bicubic": "bicubic"}
    stops = {}
    flags_all = ["selected-on-test"] if selected_on_test else []
    pretraining_id: dict[tuple[str, int], str] = {}
    for s in seeds:
        pre_seed = seeds[0] if shared_pretrain else s
        for family in ("srresnet", "rrdb"):
            users = [p for p in presets if _family(p) == family and p != "v1"]
            if not users or pre_seed != s:
                continue
            name = f"{family}-pretrain"
            trial_id = name if shared_pretrain else f"{name}-seed{s}"
            if old:
                trial_id = f"pretrain-{family[:4]}{s:08x}"  # 12 characters after the dash, like a pretrain_key
            pretraining_id[family, s] = trial_id
            versions[trial_id] = name
            row = _study_trial(trial_id, OLD_PRETRAIN_PRESET[family] if old else name, s, "pretrain", None, steps,
                               rng, flags_all, g_updates=steps, old=old)
            trials.append(row)
        for preset in presets:
            trial_id = f"{preset}_s{s}"
            versions[trial_id] = preset
            init_from = None if preset == "v1" else pretraining_id[_family(preset), pre_seed]
            flags = ["untrained-perceptual-vgg19"] if preset in ("v3", "ragan", "esrgan") else []
            if hostile and preset == "v3":
                flags.append(HOSTILE_FLAG)
            updates = 2 * steps if preset != "v1" or equal_budget else steps
            row = _study_trial(trial_id, preset, s, "gan", init_from, updates if preset == "v1" else steps, rng,
                               flags + flags_all, g_updates=updates, old=old)
            if preset == "ragan" and s == seeds[-1]:
                row.update(status="stopped", stop_reason=STUDY_STOP, steps=steps // 2)
                stops[trial_id] = STUDY_STOP
            trials.append(row)

    images = folder / schema.IMAGES_DIR
    names = [f"img_{k:02d}" for k in range(images_per_dataset)]
    hr_images = {}
    for dataset in datasets:
        for name in names:
            hr_images[dataset, name] = hr = _hr_image(rng, image_size)
            _save(images / schema.HR_DIR / dataset / f"{name}.png", hr)
    image_effect = {key: rng.normal(0, 1.0) for key in hr_images}
    reason = HOSTILE_REASON if hostile else LPIPS_REASON
    scores, summary, history = [], [], []
    for trial in trials:
        trial_id, version = trial["trial_id"], versions[trial["trial_id"]]
        gain = STUDY_PSNR[version]
        for dataset in datasets:
            rows = []
            for name in names:
                hr = hr_images[dataset, name]
                if trial["seed"] == seeds[0] or trial["status"] == "baseline":  # crops for one seed per version
                    noisy = hr.astype(np.float64) + rng.normal(0, 10 - 3 * gain, hr.shape)
                    _save(images / trial_id / dataset / f"{name}.png", np.clip(noisy, 0, 255).astype(np.uint8))
                seed_effect = 0.0 if trial["seed"] is None else 0.05 * (trial["seed"] - 1)
                psnr = 26.0 + gain + image_effect[dataset, name] + seed_effect + rng.normal(0, 0.08)
                rows.append({"trial_id": trial_id, "dataset": dataset, "image": name, "scale": scale, "psnr": psnr,
                             "ssim": 0.75 + 0.02 * gain + rng.normal(0, 0.003),
                             "lpips": None if missing_lpips else STUDY_LPIPS[version] + rng.normal(0, 0.01),
                             "niqe": None if missing_niqe else STUDY_NIQE[version] + rng.normal(0, 0.05)})
            scores += rows
            summary.append({"trial_id": trial_id, "dataset": dataset, "scale": scale, "num_images": len(rows),
                            "psnr": float(np.mean([r["psnr"] for r in rows])),
                            "ssim": float(np.mean([r["ssim"] for r in rows])),
                            "lpips": None if missing_lpips else float(np.mean([r["lpips"] for r in rows])),
                            "lpips_missing": reason if missing_lpips else None,
                            "niqe": None if missing_niqe else float(np.mean([r["niqe"] for r in rows])),
                            "niqe_missing": NIQE_REASON if missing_niqe else None})
        if trial["stage"] != "baseline":
            stopped = trial["status"] == "stopped"
            history += _study_history(trial_id, version, steps, rng, collapse=3 if stopped else 0,
                                      stop_at=steps // 2 if stopped else None)

    _write_tables(folder, trials, scores, summary, history, old=old)
    (folder / schema.STOPS_FILE).write_text(json.dumps(stops, indent=1))
    run = {
        "kind": "study", "command": "python -m harness.study --size tiny (synthetic)",
        "git_commit": "0123456789abcdef",
        "hostname": "synthetic-host", "hardware": "CPU: 2 cores (x86_64)", "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:10:00Z", "wall_s": 600.0, "scale": scale, "datasets": list(datasets),
        "protocol": {"psnr": "Y (BT.601, 16-235), crop=scale, float64, 8-bit"},
    }
    if not old:
        run.update(validation=VALIDATION, overhead=0.12, pretrain_cache=PRETRAIN_CACHE)
    (folder / schema.RUN_FILE).write_text(json.dumps(run, indent=2))
    if compute:
        study.compute_study(folder)
        if old:
            to_old_layout(folder)
    return folder


def _study_trial(trial_id: str, preset: str, seed: int, stage: str, init_from: str | None, steps: int,
                 rng: np.random.Generator, flags: Sequence[str], *, g_updates: int, old: bool) -> dict:
    pretraining = stage == "pretrain"
    label = f"{preset}{'' if preset.endswith('-pretrain') or not pretraining else '-pretrain'} seed {seed}"
    row = {name: None for name in schema.TRIAL_COLUMNS}
    row.update(trial_id=trial_id, label=label, preset=preset, seed=seed, status="ok", stage=stage, init_from=init_from,
               steps=steps, wall_s=float(rng.uniform(20, 40)), device_hours=float(rng.uniform(20, 40)) / 3600,
               flags=json.dumps(list(flags)), config_json=json.dumps(_study_config(
                   OLD_PRETRAIN_PRESET.get(preset.removesuffix("-pretrain"), preset) if pretraining else preset,
                   stage, steps)),
               pixel_weight=1.0)
    if old:  # the old rows: a pretraining showed its preset's weights, and there was no budget record
        row.update(adv_weight=ADV_WEIGHT, perceptual_weight=1.0 if preset != "v1" else 0.0)
    else:
        row.update(adv_weight=None if pretraining else ADV_WEIGHT, g_updates=g_updates, images_seen=4 * g_updates,
                   selection="final", perceptual_weight=None if pretraining else
                   (1.0 if preset in ("v3", "ragan", "esrgan") else 0.0))
    return row


def _write_tables(folder: Path, trials: list[dict], scores: list[dict], summary: list[dict], history: list[dict], *,
                  old: bool) -> None:
    frames = {
        schema.TRIALS_FILE: _frame(trials, schema.TRIAL_COLUMNS),
        schema.SCORES_FILE: _frame(scores, schema.SCORE_COLUMNS),
        schema.SUMMARY_FILE: _frame(summary, schema.SUMMARY_COLUMNS),
        schema.HISTORY_FILE: _frame(history, schema.HISTORY_COLUMNS),
    }
    for name, extra in ((schema.SCORES_FILE, {"niqe": pl.Float64}), (schema.SUMMARY_FILE,
                        {"niqe": pl.Float64, "niqe_missing": pl.Utf8}),
                        (schema.HISTORY_FILE, {c: pl.Float64 for c in NEW_HISTORY_COLUMNS})):
        rows = {schema.SCORES_FILE: scores, schema.SUMMARY_FILE: summary, schema.HISTORY_FILE: history}[name]
        for column, kind in extra.items():  # columns the schema may not list yet: written from the rows
            if column not in frames[name].columns:
                frames[name] = frames[name].with_columns(pl.Series(column, [r.get(column) for r in rows], dtype=kind))
    if old:  # a folder from before these columns existed lacks them entirely
        dropped = {schema.TRIALS_FILE: NEW_TRIAL_COLUMNS, schema.SCORES_FILE: ("niqe",),
                   schema.SUMMARY_FILE: ("niqe", "niqe_missing"), schema.HISTORY_FILE: NEW_HISTORY_COLUMNS}
        frames = {name: frame.drop([c for c in dropped[name] if c in frame.columns]) for name, frame in frames.items()}
    for name, frame in frames.items():
        frame.write_parquet(folder / name)
    (folder / schema.SUMMARY_JSON).write_text(json.dumps(frames[schema.SUMMARY_FILE].to_dicts(), indent=1))


# ------------------------------------------------------------------------------- study tables, either layout


def to_old_layout(folder: Path) -> None:
    """Rewrite study.parquet as `results.study` wrote it before verdicts were Holm-adjusted: only
    `OLD_STUDY_COLUMNS`, verdicts from the raw interval in the old words, the bootstrap's settings."""
    path = folder / schema.STUDY_FILE
    study = pl.read_parquet(path)
    old = study.with_columns(
        pl.when(pl.col("n") == 0).then(pl.lit("no data"))
        .when(~pl.col("excludes_zero").fill_null(False)).then(pl.lit("not distinguishable from zero"))
        .when((pl.col("ci_low") > 0) == pl.col("higher_is_better")).then(pl.lit("a better"))
        .otherwise(pl.lit("b better")).alias("verdict"),
        *[pl.lit(value, dtype=pl.Int64).alias(name) for name, value in (("n_resamples", 500), ("bootstrap_seed", 0))
          if name not in study.columns])
    old.select(OLD_STUDY_COLUMNS).write_parquet(path)


def main(argv: Sequence[str] | None = None) -> None:
    from reports.build import build_report

    parser = argparse.ArgumentParser(description="Time the report build on a synthetic 50-trial results folder.")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write here instead of a temporary folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "results"
        start = time.perf_counter()
        write_synthetic_results(folder, args.trials, args.datasets, history_steps=args.steps,
                                images_per_dataset=args.images, image_size=96)
        written = time.perf_counter() - start
        start = time.perf_counter()
        index = build_report(folder)
        built = time.perf_counter() - start
        print(f"synthetic results ({args.trials} trials x {len(args.datasets)} datasets, {args.steps} steps, "
              f"{args.images} images each): written in {written:.1f} s")
        print(f"report built in {built:.2f} s -> {index}")


if __name__ == "__main__":
    main()
