"""Synthetic results folders (exactly per `benchmarks.schema`) and the report speed benchmark.

`python -m reports.speed` writes 50 trials x 3 datasets with ~100-step histories and a few images, builds
the report and prints how long the build took. The tests use `write_synthetic_results` for the XSS,
failed-trial and browser cases.
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
    history_steps: int = 100,
    images_per_dataset: int = 2,
    image_size: int = 48,
    seed: int = 0,
) -> Path:
    """Write a results folder: a bicubic baseline plus `n_trials` trained trials, per `benchmarks.schema`.

    With `with_failed` the last trial failed (no scores, no images) and, when there are three or more
    trials, the one before it was stopped early. With `missing_lpips` LPIPS is null (with its reason) on
    the last dataset. With `hostile_names` one trial label, one image name, one flag and the error carry
    HTML/JS payloads that set `window.__xss` if they ever run.
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
                })
            scores.extend(rows)
            if not rows:
                continue
            summary.append({
                "trial_id": trial["trial_id"], "dataset": dataset, "scale": scale, "num_images": len(rows),
                "psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
                "lpips": None if lpips_missing else float(np.mean([r["lpips"] for r in rows])),
                "lpips_missing": LPIPS_REASON if lpips_missing else None,
            })
        if not baseline:
            stop_at = history_steps // 2 if trial["status"] == "stopped" else None
            history.extend(_history(trial["trial_id"], history_steps, rng, stop_at))

    # A failed trial still reports the steps it made before failing.
    for trial in trials:
        if trial["status"] == "failed":
            history.extend(_history(trial["trial_id"], history_steps, rng, max(1, history_steps // 5)))

    _frame(trials, schema.TRIAL_COLUMNS).write_parquet(folder / schema.TRIALS_FILE)
    _frame(scores, schema.SCORE_COLUMNS).write_parquet(folder / schema.SCORES_FILE)
    summary_frame = _frame(summary, schema.SUMMARY_COLUMNS)
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


def main(argv: Sequence[str] | None = None) -> None:
    from reports.build import build_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
