"""`python -m benchmarks.evaluate`: score an upscaler (a checkpoint, a published ESRGAN .pth, a baseline), or SR images
made elsewhere, on the benchmark sets and write a results folder (`results/schema.py`).

    python -m benchmarks.evaluate --baseline bicubic --datasets set5,set14 --scale 4 --out results/bicubic
    python -m benchmarks.evaluate --checkpoint runs/v3/ckpt --datasets set5 --scale 4 --out results/v3 --save-images
    python -m benchmarks.evaluate --images their_sr/ --datasets set5 --scale 4 --out results/theirs
    python -m benchmarks.evaluate --images their_sr/ --hr my_hr/ --suffix _x4_SR --out results/theirs
    python -m benchmarks.evaluate --images photos_x4/ --out results/photos        # NIQE only (no HR)

Exit codes: 0 done, 1 a run failed (e.g. a full disk while writing), 2 bad input (named in the message).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch

from benchmarks.scoring import datasets as ds
from benchmarks.scoring import metrics as M
from benchmarks.scoring.evaluate import (
    BASELINES,
    DEFAULT_METRICS,
    DEFAULT_TILE,
    Model,
    baseline,
    missing_reasons,
    run_info,
    score_trial,
)
from benchmarks.scoring.images import score_images
from benchmarks.scoring.scorers import OutputError, default_device
from results import io, rows, schema

DEFAULT_DATASETS = "set5,set14"
IMAGES_FLAG = "external-images"  # trials.parquet flag of a trial whose SR images were made elsewhere


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluate",
                                description="Score an upscaler, or SR images made elsewhere, on benchmarks.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint folder (config.json + generator.safetensors), "
                        "or a published ESRGAN generator .pth (official or BasicSR layout)")
    source.add_argument("--baseline", choices=sorted(BASELINES), help="a built-in baseline instead of a model")
    source.add_argument("--images", type=Path, metavar="DIR", help="score SR images already upscaled elsewhere, "
                        "matched to their HR by name (--hr, or --datasets with --scale); with neither, only the "
                        "no-reference metrics (NIQE)")
    p.add_argument("--datasets", default=None, help=f"comma-separated, from: {', '.join(ds.DATASETS)} (default "
                   f"{DEFAULT_DATASETS}; with --images, the sets whose HR the images are compared with)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--out", type=Path, required=True, help="results folder to write")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help="psnr,ssim,lpips,niqe or other pyiqa full-reference names")
    p.add_argument("--color", default="ycbcr_bt601", choices=M.COLORS, help="Y convention (default: papers')")
    p.add_argument("--crop", type=int, default=None, metavar="N",
                   help="pixels cropped from every border before scoring (default: the scale)")
    p.add_argument("--hr", type=Path, default=None, metavar="DIR",
                   help="with --images: the HR images, same names (mod-cropped to the scale before comparing)")
    p.add_argument("--suffix", default="", help="with --images: strip this from the end of SR names before "
                   "matching (e.g. _x4_SR for baby_x4_SR.png)")
    p.add_argument("--name", default=None, help="with --images: the trial id (default: the folder's name)")
    p.add_argument("--save-images", action="store_true", help="keep SR (and HR) PNGs under OUT/images/")
    p.add_argument("--data-root", type=Path, default=None, help="benchmark data root (default $ENHANCE_DATA)")
    p.add_argument("--fetch", action="store_true", help="download a missing dataset (network) before scoring")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile LR images larger than this (px)")
    return p


def _check_options(args: argparse.Namespace) -> None:
    """Options that only make sense together, before anything runs (a ValueError: exit 2)."""
    if args.images is None:
        given = [opt for opt, value in (("--hr", args.hr), ("--suffix", args.suffix), ("--name", args.name)) if value]
        if given:
            raise ValueError(f"{', '.join(given)} only go with --images")
    elif args.hr is not None and args.datasets is not None:
        raise ValueError("--images: give --hr DIR or --datasets NAME, not both")
    if args.crop is not None and args.crop < 0:
        raise ValueError(f"--crop {args.crop}: a border crop is 0 or more pixels")


def _parse_metrics(text: str) -> list[str]:
    names = list(dict.fromkeys(m.strip().lower() for m in text.split(",") if m.strip()))
    if not names:
        raise ValueError(f"--metrics {text!r}: no metric named; give a comma-separated list, e.g. psnr,ssim,niqe")
    return names


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


def _score_model(args: argparse.Namespace, names: list[str], metrics: list[str],
                 device: torch.device) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    model, about = _source(args, device)
    scores, summary = score_trial(
        model, about["trial_id"], names, args.scale, data_root=args.data_root, device=device, metrics=metrics,
        save_images=True if args.save_images else None, images_dir=args.out / schema.IMAGES_DIR,
        color=args.color, tile=args.tile, crop=args.crop)
    return scores, summary, about


def _score_folder(args: argparse.Namespace, names: list[str], metrics: list[str],
                  device: torch.device) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    trial_id = args.name or args.images.resolve().name
    scores, summary = score_images(
        args.images, scale=args.scale, trial_id=trial_id, hr=args.hr, datasets=names, data_root=args.data_root,
        suffix=args.suffix, crop=args.crop, metrics=metrics, device=device, color=args.color,
        save_images=True if args.save_images else None, images_dir=args.out / schema.IMAGES_DIR)
    reference = str(args.hr) if args.hr is not None else (", ".join(names) or "none")
    return scores, summary, {"trial_id": trial_id, "label": f"{trial_id} (images from {args.images})",
                             "status": schema.STATUS_OK, "config": None, "flags": [IMAGES_FLAG],
                             "images": {"folder": str(args.images), "hr": reference, "suffix": args.suffix}}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from srgan.checkpoint import CheckpointError
    from srgan.images import ImageError

    started = time.time()
    device = torch.device(args.device) if args.device else default_device()
    try:
        _check_options(args)
        default = None if args.images is not None else DEFAULT_DATASETS
        text = args.datasets if args.datasets is not None else default
        names = ds.parse_datasets(text) if text is not None else []
        metrics = _parse_metrics(args.metrics)
        io.check_writable(args.out)  # before any scoring: a read-only or bad folder fails in a second
        if args.fetch:
            ds.fetch_missing(names, args.data_root)
        score = _score_folder if args.images is not None else _score_model
        scores, summary, about = score(args, names, metrics, device)
    except OutputError as err:  # a full disk while saving images: the run failed, the input was fine
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, CheckpointError, ImageError, ds.ChecksumError, io.ResultsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    missing = missing_reasons(summary)
    lpips_weights = None if "lpips" in missing else M.describe_lpips_weights()
    command = shlex.join(["python", "-m", "benchmarks.evaluate", *(sys.argv[1:] if argv is None else argv)])
    crop = args.scale if args.crop is None else args.crop
    scored = list(dict.fromkeys(scores["dataset"].to_list())) or names
    run = run_info(kind="evaluate", scale=args.scale, datasets=scored, started=started, device=device,
                   command=command, protocol=M.protocol(color=args.color, crop=crop, lpips_weights=lpips_weights,
                                                        data_root=args.data_root),
                   model={"trial_id": about["trial_id"], "baseline": args.baseline, "flags": about["flags"],
                          "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                          "images": about.get("images")},
                   config=about["config"], metrics_missing=missing)
    trials = rows.trials_frame([rows.trial_row(about["trial_id"], label=about["label"], status=about["status"],
                                               wall_s=run["wall_s"], config=about["config"], flags=about["flags"])])
    try:
        io.write_results(args.out, scores=scores, summary=summary, run=run, trials=trials)
    except io.ResultsError as err:  # a full disk after scoring: files written before it are whole and kept
        print(f"error: {err}", file=sys.stderr)
        return 1
    with pl.Config(tbl_rows=50, tbl_cols=12, fmt_str_lengths=40):
        print(summary.drop([c for c in summary.columns if c.endswith("_missing")]))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
