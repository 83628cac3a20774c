"""Score an upscaler on the benchmark sets and write a results folder (`benchmarks/schema.py`).

Python API:

    scores = evaluate_model(net_g, ["set5", "set14"], 4)                 # one row per (dataset, image)
    scores, summary = score_trial(net_g, "t0", ["set5"], 4)     # + means per dataset
    write_results(out, scores=scores, summary=summary, run=run_info(...))

A model is any nn.Module or callable mapping (1, 3, h, w) RGB in [0, 1] to (1, 3, h*s, w*s); the baselines
are `baseline("bicubic", scale)` (MATLAB-compatible imresize) and `baseline("nearest", scale)`. nn.Modules run
through `srgan.upscale.upscale`, tiled for LR images larger than `tile` pixels on a side.

CLI:

    python -m benchmarks.evaluate --baseline bicubic --datasets set5,set14 --scale 4 --out results/bicubic
    python -m benchmarks.evaluate --checkpoint runs/v3/ckpt --datasets set5 --scale 4 --out results/v3 --save-images
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import nn

from benchmarks import datasets as ds
from benchmarks import metrics as M
from results import schema
from srgan.data import imresize, save_image
from srgan.upscale import upscale

log = logging.getLogger(__name__)

Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]
DEFAULT_METRICS = ("psnr", "ssim", "lpips")
DEFAULT_TILE = 512  # LR px; whole-image inference below this (all of Set5/Set14/BSD100), tiles above it
# Covers SRResNet-16's receptive radius (~40 LR px), so its tiled scores equal untiled ones. RRDB-23's radius
# is far larger: its tiles differ slightly at the seams; pass tile=None to score such models untiled.
DEFAULT_OVERLAP = 40


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
            nets[name] = M.load_lpips(device=device) if name == "lpips" else M.load_pyiqa_metric(name, device=device)
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
           tile: int | None, overlap: int, save_images: bool | Collection[str] | None,
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
        if isinstance(model, nn.Module):
            sr = upscale(model, lq, scale, tile=tile, overlap=overlap)
        else:
            with torch.inference_mode():
                sr = model(lq).clamp(0, 1)
        gt = pair.gt[None].to(device)  # (1, 3, h*s, w*s)
        if sr.shape != gt.shape:
            raise ValueError(f"{trial_id}: output {tuple(sr.shape)} for {pair.lq_path or pair.gt_path} does not "
                             f"match the HR {tuple(gt.shape)} (is the model x{scale}?)")
        row: dict[str, Any] = {"trial_id": trial_id, "dataset": dataset, "image": pair.name, "scale": scale}
        if "psnr" in metrics or "ssim" in metrics:
            psnr, ssim = M.psnr_ssim(sr, gt, crop=scale, color=color)
            row.update({m: float(v[0]) for m, v in (("psnr", psnr), ("ssim", ssim)) if m in metrics})
        for name, net in nets.items():
            score = M.lpips(sr, gt, net=net) if name == "lpips" else M.pyiqa_score(sr, gt, net=net)
            row[name] = float(score[0])
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
                   overlap: int = DEFAULT_OVERLAP, progress: bool = True) -> pl.DataFrame:
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
                tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                progress: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score one trial: (scores, summary); a null metric's reason is in the summary's `<metric>_missing`.

    `save_images`: True for all images, or names ("baby", "set5/baby", or a whole "set5") whose SR goes to
    `images_dir/<trial_id>/<dataset>/<image>.png` (and the HR once to `images_dir/_hr/<dataset>/`)."""
    scores, missing = _score(model, datasets, scale, data_root=data_root, metrics=metrics,
                             device=torch.device(device) if device else None, trial_id=trial_id, color=color,
                             tile=tile, overlap=overlap, save_images=save_images, images_dir=images_dir,
                             progress=progress)
    return scores, summarise(scores, missing)


# ------------------------------------------------------------------------------------------ results I/O


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ds.REPO_ROOT, capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU: {torch.cuda.device_count()}x {torch.cuda.get_device_name(device)}"
    import os

    return f"CPU: {os.cpu_count()} cores ({platform.machine()})"


def run_info(*, kind: str, scale: int, datasets: Sequence[str], started: float, protocol: dict,
             device: str | torch.device | None = None, command: str | None = None, **extra: Any) -> dict:
    """The run.json payload (`schema.RUN_FIELDS`, plus extra keys such as the model and its config)."""
    finished = time.time()
    iso = lambda t: datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")  # noqa: E731
    info = {
        "kind": kind,
        "command": command if command is not None else shlex.join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "hardware": hardware(torch.device(device) if device else _default_device()),
        "started_at": iso(started),
        "finished_at": iso(finished),
        "wall_s": round(finished - started, 3),
        "scale": scale,
        "datasets": list(datasets),
        "protocol": protocol,
    }
    return {**info, **extra}


def write_results(folder: str | Path, *, scores: pl.DataFrame, summary: pl.DataFrame, run: dict,
                  trials: pl.DataFrame | None = None) -> Path:
    """Write scores.parquet, summary.parquet, summary.json, run.json (and trials.parquet if given)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scores.write_parquet(folder / schema.SCORES_FILE)
    summary.write_parquet(folder / schema.SUMMARY_FILE)
    (folder / schema.SUMMARY_JSON).write_text(json.dumps(summary.to_dicts(), indent=2, allow_nan=True))
    (folder / schema.RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
    if trials is not None:
        trials.write_parquet(folder / schema.TRIALS_FILE)
    return folder


def trial_row(trial_id: str, *, label: str, status: str, wall_s: float, config: dict | None = None,
              flags: Sequence[str] = ()) -> pl.DataFrame:
    """A one-row trials.parquet for an evaluate-only run (a baseline or a checkpoint)."""
    loss = (config or {}).get("loss", {})
    row = {
        "trial_id": trial_id, "label": label, "preset": (config or {}).get("name"),
        "pixel_weight": loss.get("pixel_weight"), "perceptual_weight": loss.get("perceptual_weight"),
        "adv_weight": loss.get("adv_weight"), "seed": (config or {}).get("train", {}).get("seed"),
        "status": status, "error": None, "stop_reason": None, "steps": None, "wall_s": wall_s,
        "device_hours": wall_s / 3600, "flags": json.dumps(list(flags)),
        "config_json": json.dumps(config, sort_keys=True) if config else None,
    }
    return pl.DataFrame([row], schema=schema.polars_schema(schema.TRIAL_COLUMNS))


# --------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description="Score an upscaler on benchmarks.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint folder (config.json + generator.safetensors)")
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from srgan.checkpoint import CheckpointError, load_generator, run_flags
    from srgan.config import to_dict
    from srgan.data import ImageError

    started = time.time()
    names = [n.strip().lower() for n in args.datasets.split(",") if n.strip()]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    device = torch.device(args.device) if args.device else _default_device()
    try:
        for name in names:
            folder = ds.data_root(args.data_root) / ds.spec(name).folder
            if not folder.is_dir() and args.fetch:
                print(f"{name}: {folder} not found; downloading it (--fetch)")
                ds.fetch(name, args.data_root)
        if args.checkpoint is not None:
            model, cfg = load_generator(args.checkpoint, device=device, expect_scale=args.scale)
            config, flags = to_dict(cfg), run_flags(cfg)
            trial_id, label, status = args.checkpoint.resolve().name, f"{cfg.name} ({args.checkpoint})", "ok"
        else:
            model, config, flags = baseline(args.baseline, args.scale), None, []
            trial_id, label, status = args.baseline, f"{args.baseline} (baseline)", "baseline"
        scores, summary = score_trial(
            model, trial_id, names, args.scale, data_root=args.data_root, device=device, metrics=metrics,
            save_images=True if args.save_images else None, images_dir=args.out / schema.IMAGES_DIR,
            color=args.color, tile=args.tile)
    except (ValueError, FileNotFoundError, CheckpointError, ImageError, ds.ChecksumError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    missing = missing_reasons(summary)
    lpips_weights = None if "lpips" in missing else M.describe_lpips_weights()
    command = shlex.join(["python", "-m", "benchmarks.evaluate", *(sys.argv[1:] if argv is None else argv)])
    run = run_info(kind="evaluate", scale=args.scale, datasets=names, started=started, device=device, command=command,
                   protocol=M.protocol(color=args.color, crop=args.scale, lpips_weights=lpips_weights),
                   model={"trial_id": trial_id, "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                          "baseline": args.baseline, "flags": flags},
                   config=config, metrics_missing=missing)
    trials = trial_row(trial_id, label=label, status=status, wall_s=run["wall_s"], config=config, flags=flags)
    write_results(args.out, scores=scores, summary=summary, run=run, trials=trials)
    with pl.Config(tbl_rows=50, tbl_cols=12, fmt_str_lengths=40):
        print(summary.drop([c for c in summary.columns if c.endswith("_missing")]))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
