"""Score an upscaler on the benchmark sets and write a results folder (`benchmarks/schema.py`).

Python API:

    scores = evaluate_model(net_g, ["set5", "set14"], 4)                 # one row per (dataset, image)
    scores, summary = score_trial(net_g, "t0", ["set5"], 4)     # + means per dataset
    results.io.write_results(out, scores=scores, summary=summary, run=run_info(...))

A model is any nn.Module or callable mapping (1, 3, h, w) RGB in [0, 1] to (1, 3, h*s, w*s); the baselines
are `baseline("bicubic", scale)` (MATLAB-compatible imresize) and `baseline("nearest", scale)`. nn.Modules run
through `srgan.upscale.upscale`, tiled for LR images larger than `tile` pixels on a side.

CLI:

    python -m benchmarks.evaluate --baseline bicubic --datasets set5,set14 --scale 4 --out results/bicubic
    python -m benchmarks.evaluate --checkpoint runs/v3/ckpt --datasets set5 --scale 4 --out results/v3 --save-images
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import nn

from benchmarks import datasets as ds
from benchmarks import metrics as M
from results import io, provenance, rows, schema
from srgan.data import imresize, save_image
from srgan.upscale import check_finite_output, upscale

log = logging.getLogger(__name__)

Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]
DEFAULT_METRICS = ("psnr", "ssim", "lpips")
DEFAULT_TILE = 512  # LR px; whole-image inference below this (all of Set5/Set14/BSD100), tiles above it
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


# ----------------------------------------------------------------------------------------------- scoring


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_WARNED: set[str] = set()


def _load_extra_metrics(names: Sequence[str], device: torch.device) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Networks of the learned metrics (LPIPS, other pyiqa FR metrics); missing ones get their reason."""
    nets: dict[str, nn.Module] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name in ("psnr", "ssim"):
            continue
        try:
            nets[name] = M.load_learned(name, device=device)
        except M.MetricUnavailable as err:
            missing[name] = str(err)
            if name not in _WARNED:  # once per process, not once per trial of a sweep
                _WARNED.add(name)
                log.warning("%s will be null in the results: %s", name, err)
    return nets, missing


def _wants(save_images: bool | Collection[str] | None, dataset: str, image: str) -> bool:
    if save_images is None or save_images is False:
        return False
    if save_images is True:
        return True
    return image in save_images or f"{dataset}/{image}" in save_images or dataset in save_images


def _score(model: Model, datasets: Sequence[str], scale: int, *, data_root: str | Path | None,
           metrics: Sequence[str], device: torch.device | None, trial_id: str, color: M.Color,
           tile: int | None, overlap: int | None, save_images: bool | Collection[str] | None,
           images_dir: str | Path | None, progress: bool) -> tuple[pl.DataFrame, dict[str, str]]:
    device = device or _default_device()
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    if save_images and images_dir is None:
        raise ValueError("save_images needs images_dir")
    nets, missing = _load_extra_metrics(metrics, device)
    for name in ("psnr", "ssim", "lpips"):
        if name not in metrics:
            missing.setdefault(name, "not requested")
    pairs = [(name, pair) for name in datasets for pair in ds.load_pairs(name, scale, data_root)]
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    for dataset, pair in tqdm(pairs, desc=f"{trial_id} x{scale}", unit="img", disable=not progress):
        lq = pair.lq[None].to(device)  # (1, 3, h, w)
        source = pair.lq_path or pair.gt_path
        if isinstance(model, nn.Module):
            sr = upscale(model, lq, scale, tile=tile, overlap=overlap, name=f"{trial_id} on {source}")
        else:
            with torch.inference_mode():
                sr = model(lq)
            check_finite_output(sr, f"{trial_id} on {source}")
            sr = sr.clamp(0, 1)
        gt = pair.gt[None].to(device)  # (1, 3, h*s, w*s)
        if sr.shape != gt.shape:
            raise ValueError(f"{trial_id}: output {tuple(sr.shape)} for {pair.lq_path or pair.gt_path} does not "
                             f"match the HR {tuple(gt.shape)} (is the model x{scale}?)")
        row: dict[str, Any] = {"trial_id": trial_id, "dataset": dataset, "image": pair.name, "scale": scale}
        if "psnr" in metrics or "ssim" in metrics:
            psnr, ssim = M.psnr_ssim(sr, gt, crop=scale, color=color)
            row.update({m: float(v[0]) for m, v in (("psnr", psnr), ("ssim", ssim)) if m in metrics})
        for name, net in nets.items():
            row[name] = float(M.learned_score(sr, gt, net=net)[0])
        rows.append(row)
        if _wants(save_images, dataset, pair.name):
            root = Path(images_dir)
            save_image(sr, root / trial_id / dataset / f"{pair.name}.png")
            hr_path = root / schema.HR_DIR / dataset / f"{pair.name}.png"
            if not hr_path.exists():
                save_image(pair.gt, hr_path)
    extra = [m for m in metrics if m not in schema.SCORE_COLUMNS]
    columns = {**schema.polars_schema(schema.SCORE_COLUMNS), **{m: pl.Float64 for m in extra}}
    scores = pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=columns)
    return scores, missing


def evaluate_model(model: Model, datasets: Sequence[str], scale: int, *, data_root: str | Path | None = None,
                   metrics: Sequence[str] = DEFAULT_METRICS, device: str | torch.device | None = None,
                   trial_id: str = "model", color: M.Color = "ycbcr_bt601", tile: int | None = DEFAULT_TILE,
                   overlap: int | None = None, progress: bool = True) -> pl.DataFrame:
    """Scores per (dataset, image): columns `schema.SCORE_COLUMNS` (+ any extra pyiqa metric by name).

    A metric whose weights are unavailable is null (the reason is logged; `score_trial` returns it)."""
    scores, _ = _score(model, datasets, scale, data_root=data_root, metrics=metrics,
                       device=torch.device(device) if device else None, trial_id=trial_id, color=color, tile=tile,
                       overlap=overlap, save_images=None, images_dir=None, progress=progress)
    return scores


def summarise(scores: pl.DataFrame, missing: dict[str, str]) -> pl.DataFrame:
    """Means per (trial, dataset): `schema.SUMMARY_COLUMNS` plus `<metric>_missing` for every null metric."""
    metric_cols = [c for c in scores.columns if c not in ("trial_id", "dataset", "image", "scale")]
    summary = (
        scores.group_by(["trial_id", "dataset", "scale"], maintain_order=True)
        .agg(pl.len().cast(pl.Int64).alias("num_images"), *[pl.col(c).mean() for c in metric_cols])
    )
    for col in metric_cols:
        if col == "lpips" or col in missing:
            summary = summary.with_columns(pl.lit(missing.get(col), dtype=pl.Utf8).alias(f"{col}_missing"))
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
                progress: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score one trial: (scores, summary); a null metric's reason is in the summary's `<metric>_missing`.

    `save_images`: True for all images, or names ("baby", "set5/baby", or a whole "set5") whose SR goes to
    `images_dir/<trial_id>/<dataset>/<image>.png` (and the HR once to `images_dir/_hr/<dataset>/`)."""
    scores, missing = _score(model, datasets, scale, data_root=data_root, metrics=metrics,
                             device=torch.device(device) if device else None, trial_id=trial_id, color=color,
                             tile=tile, overlap=overlap, save_images=save_images, images_dir=images_dir,
                             progress=progress)
    return scores, summarise(scores, missing)


# ------------------------------------------------------------------------------------------ provenance


def device_hardware(device: str | torch.device | None = None) -> str:
    """`results.provenance.hardware` for a torch device (GPU names are asked of torch)."""
    device = torch.device(device) if device is not None else _default_device()
    if device.type == "cuda":
        return provenance.hardware([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
    return provenance.hardware()


def run_info(*, device: str | torch.device | None = None, **fields: Any) -> dict:
    """The run.json payload of a scoring run (`results.provenance.run_info` with this machine's hardware)."""
    return provenance.run_info(hardware=device_hardware(device), **fields)


# --------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description="Score an upscaler on benchmarks.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint folder (config.json + generator.safetensors), "
                        "or a published ESRGAN generator .pth (official or BasicSR layout)")
    source.add_argument("--baseline", choices=sorted(BASELINES), help="a built-in baseline instead of a model")
    p.add_argument("--datasets", default="set5,set14", help=f"comma-separated, from: {', '.join(ds.DATASETS)}")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--out", type=Path, required=True, help="results folder to write")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="psnr,ssim,lpips or other pyiqa FR names")
    p.add_argument("--color", default="ycbcr_bt601", choices=M.COLORS, help="Y convention (default: papers')")
    p.add_argument("--save-images", action="store_true", help="keep SR (and HR) PNGs under OUT/images/")
    p.add_argument("--data-root", type=Path, default=None, help="benchmark data root (default $ENHANCE_DATA)")
    p.add_argument("--fetch", action="store_true", help="download a missing dataset (network) before scoring")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile LR images larger than this (px)")
    return p


def fetch_missing(names: Sequence[str], data_root: str | Path | None) -> None:
    """Download (from its public address, checksum verified) every benchmark set whose folder is missing."""
    for name in names:
        folder = ds.data_root(data_root) / ds.spec(name).folder
        if not folder.is_dir():
            print(f"{name}: {folder} not found; downloading it (--fetch)")
            ds.fetch(name, data_root)


def _source(args: argparse.Namespace, device: torch.device) -> tuple[Model, dict[str, Any]]:
    """The model to score and what trials.parquet says of it (a checkpoint, or a baseline)."""
    if args.checkpoint is None:
        model = baseline(args.baseline, args.scale)
        return model, {"trial_id": args.baseline, "label": f"{args.baseline} (baseline)",
                       "status": schema.STATUS_BASELINE, "config": None, "flags": []}
    from srgan.checkpoint import load_generator, run_flags
    from srgan.config import to_dict

    model, cfg = load_generator(args.checkpoint, device=device, expect_scale=args.scale)
    return model, {"trial_id": args.checkpoint.resolve().name, "label": f"{cfg.name} ({args.checkpoint})",
                   "status": schema.STATUS_OK, "config": to_dict(cfg), "flags": run_flags(cfg)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from srgan.checkpoint import CheckpointError
    from srgan.data import ImageError

    started = time.time()
    names = [n.strip().lower() for n in args.datasets.split(",") if n.strip()]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    device = torch.device(args.device) if args.device else _default_device()
    try:
        io.check_writable(args.out)  # before any scoring: a read-only or bad folder fails in a second
        if args.fetch:
            fetch_missing(names, args.data_root)
        model, about = _source(args, device)
        scores, summary = score_trial(
            model, about["trial_id"], names, args.scale, data_root=args.data_root, device=device, metrics=metrics,
            save_images=True if args.save_images else None, images_dir=args.out / schema.IMAGES_DIR,
            color=args.color, tile=args.tile)
    except (ValueError, FileNotFoundError, CheckpointError, ImageError, ds.ChecksumError, io.ResultsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    missing = missing_reasons(summary)
    lpips_weights = None if "lpips" in missing else M.describe_lpips_weights()
    command = shlex.join(["python", "-m", "benchmarks.evaluate", *(sys.argv[1:] if argv is None else argv)])
    run = run_info(kind="evaluate", scale=args.scale, datasets=names, started=started, device=device, command=command,
                   protocol=M.protocol(color=args.color, crop=args.scale, lpips_weights=lpips_weights),
                   model={"trial_id": about["trial_id"], "baseline": args.baseline, "flags": about["flags"],
                          "checkpoint": str(args.checkpoint) if args.checkpoint else None},
                   config=about["config"], metrics_missing=missing)
    trials = rows.trials_frame([rows.trial_row(about["trial_id"], label=about["label"], status=about["status"],
                                               wall_s=run["wall_s"], config=about["config"], flags=about["flags"])])
    io.write_results(args.out, scores=scores, summary=summary, run=run, trials=trials)
    with pl.Config(tbl_rows=50, tbl_cols=12, fmt_str_lengths=40):
        print(summary.drop([c for c in summary.columns if c.endswith("_missing")]))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
