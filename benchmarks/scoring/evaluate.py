"""Score an upscaler on the benchmark sets with the papers' protocol, for a results folder (`results/schema.py`).

    scores = evaluate_model(net_g, ["set5", "set14"], 4)                 # one row per (dataset, image)
    scores, summary = score_trial(net_g, "t0", ["set5"], 4)     # + means per dataset
    results.io.write_results(out, scores=scores, summary=summary, run=run_info(...))

A model is any nn.Module or callable mapping (1, 3, h, w) RGB in [0, 1] to (1, 3, h*s, w*s); the baselines
are `baseline("bicubic", scale)` (MATLAB-compatible imresize) and `baseline("nearest", scale)`. nn.Modules run
through `srgan.upscale.upscale`, tiled for LR images larger than `tile` pixels on a side. Every image gets the
full-reference metrics (PSNR, SSIM, LPIPS) against its HR and the no-reference NIQE of the SR alone
(`benchmarks.scoring.scorers`). SR images made elsewhere are scored the same way by `benchmarks.scoring.images`;
the command line, `python -m benchmarks.evaluate`, is `benchmarks.scoring.cli`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import nn

from benchmarks.scoring import metrics as M
from benchmarks.scoring import prepared
from benchmarks.scoring.scorers import MAX_NAMED, default_device, keep_images, load_scorers, scores_frame, wants
from results import provenance, schema
from srgan.resize import imresize
from srgan.upscale import DEFAULT_TILE, check_finite_output, upscale

log = logging.getLogger(__name__)

Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "niqe")
# DEFAULT_TILE (srgan.upscale, 512 LR px): whole-image inference below it (all of Set5/Set14/BSD100), tiles above it
# Tiles overlap by the generator's receptive radius (`srgan.upscale.receptive_radius`) unless told otherwise,
# so tiled scores equal untiled ones for every preset.


# ------------------------------------------------------------------------------------------- baselines


def bicubic(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB `imresize(lq, s, 'bicubic')` (the papers' bicubic baseline), on (B, 3, h, w)."""
    return imresize(lq, scale=scale)


def nearest(lq: torch.Tensor, scale: int) -> torch.Tensor:
    return lq.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


BASELINES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {"bicubic": bicubic, "nearest": nearest}


def baseline(name: str, scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    fn = BASELINES[name]
    return lambda lq: fn(lq, scale)


# ------------------------------------------------------------------------------------------- scoring


def _score(model: Model, datasets: Sequence[str], scale: int, *, data_root: str | Path | None,
           metrics: Sequence[str], device: torch.device | None, trial_id: str, color: M.Color,
           tile: int | None, overlap: int | None, save_images: bool | Collection[str] | None,
           images_dir: str | Path | None, progress: bool, crop: int | None) -> tuple[pl.DataFrame, dict[str, str]]:
    device = device or default_device()
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    if save_images and images_dir is None:
        raise ValueError("save_images needs images_dir")
    scorers = load_scorers(metrics, device, crop=scale if crop is None else crop, color=color,
                           data_root=data_root, reference=True)
    # read, moved to the device and the HR side of PSNR/SSIM computed once per process (every model of a sweep)
    images = prepared.benchmark_images(datasets, scale, data_root, device=device, crop=scorers.crop, color=color,
                                       reference="psnr" in metrics or "ssim" in metrics)
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    for image in tqdm(images, desc=f"{trial_id} x{scale}", unit="img", disable=not progress):
        dataset, pair, lq = image.dataset, image.pair, image.lq  # lq: (1, 3, h, w)
        source = pair.lq_path or pair.gt_path
        if isinstance(model, nn.Module):
            sr = upscale(model, lq, scale, tile=tile, overlap=overlap, name=f"{trial_id} on {source}")
        else:
            with torch.inference_mode():
                sr = model(lq)
            check_finite_output(sr, f"{trial_id} on {source}")
            sr = sr.clamp(0, 1)
        gt = image.gt  # (1, 3, h*s, w*s)
        if sr.shape != gt.shape:
            raise ValueError(f"{trial_id}: output {tuple(sr.shape)} for {pair.lq_path or pair.gt_path} does not "
                             f"match the HR {tuple(gt.shape)} (is the model x{scale}?)")
        base = {"trial_id": trial_id, "dataset": dataset, "image": pair.name, "scale": scale}
        rows.append(scorers.row(sr, gt, base, f"{dataset}/{pair.name}", image.reference))
        if wants(save_images, dataset, pair.name):
            keep_images(sr, pair.gt, Path(images_dir), trial_id, dataset, pair.name)
    return scores_frame(rows, metrics), scorers.reasons()


def warm_up(datasets: Sequence[str], scale: int, *, data_root: str | Path | None = None,
            metrics: Sequence[str] = DEFAULT_METRICS, device: str | torch.device | None = None,
            color: M.Color = "ycbcr_bt601", crop: int | None = None) -> None:
    """Read what scoring models with these arguments reads once per process (`score_trial`: the benchmark images,
    pyiqa's NIQE code), so a scoring process does it before its first model. A problem is left to the scoring,
    which names it."""
    device = torch.device(device) if device else default_device()
    with contextlib.suppress(ValueError, OSError, M.MetricUnavailable):
        if "niqe" in metrics:
            import pyiqa.archs.niqe_arch  # noqa: F401  (pyiqa's import: about a second)
        prepared.benchmark_images(datasets, scale, data_root, device=device, crop=scale if crop is None else crop,
                                  color=color, reference="psnr" in metrics or "ssim" in metrics)


def evaluate_model(model: Model, datasets: Sequence[str], scale: int, *, data_root: str | Path | None = None,
                   metrics: Sequence[str] = DEFAULT_METRICS, device: str | torch.device | None = None,
                   trial_id: str = "model", color: M.Color = "ycbcr_bt601", tile: int | None = DEFAULT_TILE,
                   overlap: int | None = None, progress: bool = True, crop: int | None = None) -> pl.DataFrame:
    """Scores per (dataset, image): columns `schema.SCORE_COLUMNS` (+ any extra pyiqa metric by name).

    A metric whose weights are unavailable is null (the reason is logged; `score_trial` returns it). `crop`: the
    border crop (default: the scale)."""
    scores, _ = _score(model, datasets, scale, data_root=data_root, metrics=metrics,
                       device=torch.device(device) if device else None, trial_id=trial_id, color=color, tile=tile,
                       overlap=overlap, save_images=None, images_dir=None, progress=progress, crop=crop)
    return scores


def summarise(scores: pl.DataFrame, missing: dict[str, str]) -> pl.DataFrame:
    """Means per (trial, dataset): `schema.SUMMARY_COLUMNS` plus `<metric>_missing` for every null metric.

    A metric null on any image of a dataset is null for the dataset (a mean over some of its images is not the
    set's score); its `<metric>_missing` says why. An SR identical to its HR has an infinite PSNR, so its set's mean
    PSNR is infinite too: that is warned, naming the images, and the summary's `psnr_infinite` says how many images
    of each set were."""
    metric_cols = [c for c in scores.columns if c not in ("trial_id", "dataset", "image", "scale")]
    means = [pl.when(pl.col(c).is_null().any()).then(None).otherwise(pl.col(c).mean()).alias(c) for c in metric_cols]
    if "psnr" in scores.columns and (infinite := scores.filter(pl.col("psnr").is_infinite())).height:
        named = [f"{r['dataset']}/{r['image']}" for r in infinite.head(MAX_NAMED).iter_rows(named=True)]
        log.warning("%d image(s) identical to their HR (PSNR inf, so their set's mean PSNR is inf): %s%s",
                    infinite.height, ", ".join(named), " ..." if infinite.height > MAX_NAMED else "")
        means.append(pl.col("psnr").is_infinite().sum().cast(pl.Int64).alias("psnr_infinite"))
    summary = (
        scores.group_by(["trial_id", "dataset", "scale"], maintain_order=True)
        .agg(pl.len().cast(pl.Int64).alias("num_images"), *means)
    )
    for col in metric_cols:
        if f"{col}_missing" in schema.SUMMARY_COLUMNS or col in missing:
            reason = missing.get(col, "not computed")
            summary = summary.with_columns(
                pl.when(pl.col(col).is_null()).then(pl.lit(reason)).otherwise(None).cast(pl.Utf8)
                .alias(f"{col}_missing"))
    first = list(schema.SUMMARY_COLUMNS)
    return summary.select(first + [c for c in summary.columns if c not in first])


def missing_reasons(summary: pl.DataFrame) -> dict[str, str]:
    """{metric: reason} for every metric that is null in a summary (from its `<metric>_missing` columns)."""
    out = {}
    for col in summary.columns:
        if col.endswith("_missing"):
            reasons = [r for r in summary[col].unique().to_list() if r is not None]
            if reasons:
                out[col.removesuffix("_missing")] = "; ".join(reasons)
    return out


def score_trial(model: Model, trial_id: str, datasets: Sequence[str], scale: int, *,
                data_root: str | Path | None = None, device: str | torch.device | None = None,
                metrics: Sequence[str] = DEFAULT_METRICS, save_images: bool | Collection[str] | None = None,
                images_dir: str | Path | None = None, color: M.Color = "ycbcr_bt601",
                tile: int | None = DEFAULT_TILE, overlap: int | None = None,
                progress: bool = True, crop: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score one trial: (scores, summary); a null metric's reason is in the summary's `<metric>_missing`.

    `save_images`: True for all images, or names ("baby", "set5/baby", or a whole "set5") whose SR goes to
    `images_dir/<trial_id>/<dataset>/<image>.png` (and the HR once to `images_dir/_hr/<dataset>/`); a write that
    fails (a full disk) raises `OutputError` naming the file."""
    scores, missing = _score(model, datasets, scale, data_root=data_root, metrics=metrics,
                             device=torch.device(device) if device else None, trial_id=trial_id, color=color,
                             tile=tile, overlap=overlap, save_images=save_images, images_dir=images_dir,
                             progress=progress, crop=crop)
    return scores, summarise(scores, missing)


# ------------------------------------------------------------------------------------------ provenance


def device_hardware(device: str | torch.device | None = None) -> str:
    """`results.provenance.hardware` for a torch device (GPU names are asked of torch)."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return provenance.hardware([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    return provenance.hardware()


def run_info(*, device: str | torch.device | None = None, **fields: Any) -> dict:
    """The run.json payload of a scoring run (`results.provenance.run_info` with this machine's hardware)."""
    return provenance.run_info(hardware=device_hardware(device), **fields)


