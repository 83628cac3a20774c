"""Score an upscaler, or SR images made elsewhere, on the benchmark sets and write a results folder
(`results/schema.py`).

Python API:

    scores = evaluate_model(net_g, ["set5", "set14"], 4)                 # one row per (dataset, image)
    scores, summary = score_trial(net_g, "t0", ["set5"], 4)     # + means per dataset
    scores, summary = score_images("their_sr/", scale=4, datasets=["set5"])   # SR files, same protocol
    results.io.write_results(out, scores=scores, summary=summary, run=run_info(...))

A model is any nn.Module or callable mapping (1, 3, h, w) RGB in [0, 1] to (1, 3, h*s, w*s); the baselines
are `baseline("bicubic", scale)` (MATLAB-compatible imresize) and `baseline("nearest", scale)`. nn.Modules run
through `srgan.upscale.upscale`, tiled for LR images larger than `tile` pixels on a side. Every image gets the
full-reference metrics (PSNR, SSIM, LPIPS) against its HR and the no-reference NIQE of the SR alone.

CLI:

    python -m benchmarks.evaluate --baseline bicubic --datasets set5,set14 --scale 4 --out results/bicubic
    python -m benchmarks.evaluate --checkpoint runs/v3/ckpt --datasets set5 --scale 4 --out results/v3 --save-images
    python -m benchmarks.evaluate --images their_sr/ --datasets set5 --scale 4 --out results/theirs
    python -m benchmarks.evaluate --images their_sr/ --hr my_hr/ --suffix _x4_SR --out results/theirs
    python -m benchmarks.evaluate --images photos_x4/ --out results/photos        # NIQE only (no HR)

Exit codes: 0 done, 1 a run failed (e.g. a full disk while writing), 2 bad input (named in the message).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import nn

from benchmarks import datasets as ds
from benchmarks import metrics as M
from benchmarks import prepared
from results import io, provenance, rows, schema
from srgan.images import IMAGE_SUFFIXES, list_images, load_oriented_image, modcrop, save_image
from srgan.resize import imresize
from srgan.upscale import check_finite_output, upscale

log = logging.getLogger(__name__)

Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "niqe")
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


class OutputError(io.ResultsError):
    """An output file (an SR or HR image kept for the report) that could not be written: a full disk, a quota.
    The message names the file; what was written before it is kept. The CLI exits 1 (a run failed)."""


class ImagesError(ValueError):
    """SR images of `--images` that cannot be matched to their HR; the message names the file."""


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_WARNED: set[str] = set()
NO_HR = "no HR to compare with (--images without --hr or --datasets): only no-reference metrics are scored"
MAX_NAMED = 5  # images named in a missing-value reason; the rest are counted


@dataclass(frozen=True)
class _Scorers:
    """The metrics of one scoring run, loaded once, and the protocol they share (crop, colour)."""

    metrics: tuple[str, ...]
    crop: int
    color: M.Color
    nets: dict[str, nn.Module]  # learned full-reference metrics (LPIPS, other pyiqa FR)
    niqe: M.NiqeParams | None
    missing: dict[str, str]  # metric -> why it is null
    too_small: list[str] = field(default_factory=list)  # images NIQE could not score, with the reason

    def row(self, sr: torch.Tensor, gt: torch.Tensor | None, row: dict[str, Any], label: str,
            reference: M.Reference | None = None) -> dict[str, Any]:
        """`row` plus every metric of one (1, 3, H, W) SR image (and its HR, None for no-reference only; its
        `reference`, when given, is the HR side of PSNR/SSIM computed once: the same numbers)."""
        if gt is not None:
            if "psnr" in self.metrics or "ssim" in self.metrics:
                psnr, ssim = (M.psnr_ssim_against(sr, reference) if reference is not None
                              else M.psnr_ssim(sr, gt, crop=self.crop, color=self.color))
                row.update({m: float(v[0]) for m, v in (("psnr", psnr), ("ssim", ssim)) if m in self.metrics})
            for name, net in self.nets.items():
                row[name] = float(M.learned_score(sr, gt, net=net)[0])
        if self.niqe is not None:
            problem = M.niqe_problem(*sr.shape[-2:], crop=self.crop)
            if problem:
                self.too_small.append(f"{label}: {problem}")
            else:
                row["niqe"] = float(M.niqe(sr, crop=self.crop, params=self.niqe)[0])
        return row

    def reasons(self) -> dict[str, str]:
        missing = dict(self.missing)
        if self.too_small:
            more = len(self.too_small) - MAX_NAMED
            missing["niqe"] = "; ".join(self.too_small[:MAX_NAMED]) + (f"; and {more} more" if more > 0 else "")
        return missing


def _load_scorers(metrics: Sequence[str], device: torch.device, *, crop: int, color: M.Color,
                  data_root: str | Path | None, reference: bool) -> _Scorers:
    """Load every requested metric; one that cannot be loaded is null with its reason (logged once per process,
    not once per trial of a sweep). Without a reference (`reference=False`) full-reference metrics are null."""
    nets: dict[str, nn.Module] = {}
    niqe: M.NiqeParams | None = None
    missing: dict[str, str] = {}
    for name in metrics:
        if name != "niqe" and not reference:
            missing[name] = NO_HR
            continue
        if name in ("psnr", "ssim"):
            continue
        try:
            if name == "niqe":
                niqe = M.load_niqe_params(data_root=data_root)
            else:
                nets[name] = M.load_learned(name, device=device)
        except M.MetricUnavailable as err:
            missing[name] = str(err)
            if name not in _WARNED:
                _WARNED.add(name)
                log.warning("%s will be null in the results: %s", name, err)
    for name in schema.METRICS:
        if name not in metrics:
            missing.setdefault(name, "not requested")
    return _Scorers(tuple(metrics), crop, color, nets, niqe, missing)


def _wants(save_images: bool | Collection[str] | None, dataset: str, image: str) -> bool:
    if save_images is None or save_images is False:
        return False
    if save_images is True:
        return True
    return image in save_images or f"{dataset}/{image}" in save_images or dataset in save_images


def _save(img: torch.Tensor, path: Path) -> None:
    """`save_image`, with a failed write (a full disk) as an `OutputError` naming the file."""
    from srgan.images import ImageError

    try:
        save_image(img, path)
    except (OSError, ImageError) as err:
        kept = "the previous file is unchanged" if path.exists() else "nothing was written to it"
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise OutputError(f"{path}: could not be written ({why}); {kept}; images saved before it are kept, no "
                          f"table was written") from err


def _keep_images(sr: torch.Tensor, gt: torch.Tensor | None, images_dir: Path, trial_id: str, dataset: str,
                 name: str) -> None:
    _save(sr, images_dir / trial_id / dataset / f"{name}.png")
    hr_path = images_dir / schema.HR_DIR / dataset / f"{name}.png"
    if gt is not None and not hr_path.exists():
        _save(gt, hr_path)


def _scores_frame(rows: list[dict[str, Any]], metrics: Sequence[str]) -> pl.DataFrame:
    extra = [m for m in metrics if m not in schema.SCORE_COLUMNS]
    columns = {**schema.polars_schema(schema.SCORE_COLUMNS), **{m: pl.Float64 for m in extra}}
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=columns)


def _score(model: Model, datasets: Sequence[str], scale: int, *, data_root: str | Path | None,
           metrics: Sequence[str], device: torch.device | None, trial_id: str, color: M.Color,
           tile: int | None, overlap: int | None, save_images: bool | Collection[str] | None,
           images_dir: str | Path | None, progress: bool, crop: int | None) -> tuple[pl.DataFrame, dict[str, str]]:
    device = device or _default_device()
    if isinstance(model, nn.Module):
        model = model.to(device).eval()
    if save_images and images_dir is None:
        raise ValueError("save_images needs images_dir")
    scorers = _load_scorers(metrics, device, crop=scale if crop is None else crop, color=color,
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
        if _wants(save_images, dataset, pair.name):
            _keep_images(sr, pair.gt, Path(images_dir), trial_id, dataset, pair.name)
    return _scores_frame(rows, metrics), scorers.reasons()


def warm_up(datasets: Sequence[str], scale: int, *, data_root: str | Path | None = None,
            metrics: Sequence[str] = DEFAULT_METRICS, device: str | torch.device | None = None,
            color: M.Color = "ycbcr_bt601", crop: int | None = None) -> None:
    """Read what scoring models with these arguments reads once per process (`score_trial`: the benchmark images,
    pyiqa's NIQE code), so a scoring process does it before its first model. A problem is left to the scoring,
    which names it."""
    device = torch.device(device) if device else _default_device()
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


# ------------------------------------------------------------------------------- images upscaled elsewhere


@dataclass(frozen=True)
class _Match:
    """One SR image of `--images` and its HR: a loaded benchmark image, a file to read, or none."""

    dataset: str
    name: str
    sr_path: Path
    gt: torch.Tensor | None = None
    gt_path: Path | None = None


def _sr_names(folder: Path, suffix: str) -> dict[str, Path]:
    """{name: file} of the SR images in `folder`, `suffix` stripped from the end of a name where present."""
    if not folder.is_dir():
        raise ImagesError(f"{folder}: no such folder of SR images")
    names: dict[str, Path] = {}
    for path in list_images(folder):
        name = path.stem.removesuffix(suffix) if suffix else path.stem
        if name in names:
            raise ImagesError(f"{path}: a second SR image named {name!r} (the first is {names[name]})")
        names[name] = path
    if not names:
        raise ImagesError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return names


def _pair_up(sr: dict[str, Path], hr: dict[str, Any], *, where: str, suffix: str) -> list[tuple[str, Path, Any]]:
    """(name, SR file, HR) by name; an SR image without its HR, or an HR without its SR, is an `ImagesError`."""
    for name, path in sr.items():
        if name not in hr:
            hint = "" if suffix else "; if the SR names carry a suffix (e.g. _x4_SR), give it with --suffix"
            raise ImagesError(f"{path}: no HR image named {name!r} in {where} (HR names: "
                              f"{', '.join(sorted(hr)[:MAX_NAMED])}{', ...' if len(hr) > MAX_NAMED else ''}){hint}")
    absent = [name for name in hr if name not in sr]
    if absent:
        folder = next(iter(sr.values())).parent
        raise ImagesError(f"{folder}: no SR image for the HR {', '.join(absent[:MAX_NAMED])}"
                          f"{' ...' if len(absent) > MAX_NAMED else ''} of {where} (every HR image is scored)")
    return [(name, sr[name], hr[name]) for name in hr]


def match_images(images: Path, *, scale: int, hr: Path | None = None, datasets: Sequence[str] | None = None,
                 data_root: str | Path | None = None, suffix: str = "") -> list[_Match]:
    """Pair every SR image of `images` with its HR by name, before anything is scored.

    `hr`: an HR folder (mod-cropped to `scale`, as benchmark HR is). `datasets`: benchmark sets (their HR as a
    model is scored against); with one set the SR images lie in `images` or `images/<Set>/`, with several in
    `images/<Set>/` (the layout `--save-images` writes under images/<trial>/). Neither: SR images alone."""
    if hr is not None and datasets:
        raise ValueError("give --hr or --datasets, not both")
    if hr is not None:
        if not hr.is_dir():
            raise ImagesError(f"{hr}: no such HR folder")
        hr_files: dict[str, Path] = {}
        for path in list_images(hr):  # baby.bmp and baby.png: which one is the HR is not guessed
            if path.stem in hr_files:
                raise ImagesError(f"{path}: a second HR image named {path.stem!r} (the first is "
                                  f"{hr_files[path.stem]}); keep one of them in {hr}")
            hr_files[path.stem] = path
        pairs = _pair_up(_sr_names(images, suffix), hr_files, where=str(hr), suffix=suffix)
        return [_Match(hr.name, name, sr_path, gt_path=gt_path) for name, sr_path, gt_path in pairs]
    if not datasets:
        return [_Match(images.name, name, path) for name, path in _sr_names(images, suffix).items()]
    out: list[_Match] = []
    for dataset in datasets:
        folder = next((f for f in (images / ds.spec(dataset).folder, images / dataset) if f.is_dir()), None)
        if folder is None and len(datasets) > 1:
            raise ImagesError(f"{images}: no subfolder {ds.spec(dataset).folder}/ (or {dataset}/) of SR images; "
                              f"with several datasets each has its own")
        pairs = {p.name: p for p in ds.load_pairs(dataset, scale, data_root)}
        matched = _pair_up(_sr_names(folder or images, suffix), pairs, where=f"{dataset} x{scale}", suffix=suffix)
        out += [_Match(dataset, name, sr_path, gt=pair.gt, gt_path=pair.gt_path) for name, sr_path, pair in matched]
    return out


def score_images(images: str | Path, *, scale: int, trial_id: str | None = None, hr: str | Path | None = None,
                 datasets: Sequence[str] | None = None, data_root: str | Path | None = None, suffix: str = "",
                 crop: int | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
                 device: str | torch.device | None = None, color: M.Color = "ycbcr_bt601",
                 save_images: bool | Collection[str] | None = None, images_dir: str | Path | None = None,
                 progress: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Score SR images made elsewhere, with the protocol of `score_trial`: (scores, summary).

    Matched to their HR by `match_images` (all names first); an SR image whose size differs from its HR is an
    `ImagesError` naming both files. Without `hr` or `datasets`, only the no-reference metrics (NIQE). Files are
    read as `python -m srgan.upscale` reads its input, as a viewer shows them: an EXIF orientation is applied (to
    the SR and to an `hr` file alike), so an SR made from a rotated photo meets its HR the right way up."""
    images = Path(images)
    trial_id = trial_id or images.resolve().name
    device = torch.device(device) if device else _default_device()
    if save_images and images_dir is None:
        raise ValueError("save_images needs images_dir")
    matches = match_images(images, scale=scale, hr=Path(hr) if hr is not None else None, datasets=datasets,
                           data_root=data_root, suffix=suffix)
    scorers = _load_scorers(metrics, device, crop=scale if crop is None else crop, color=color,
                            data_root=data_root, reference=hr is not None or bool(datasets))
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    for match in tqdm(matches, desc=f"{trial_id} (images)", unit="img", disable=not progress):
        sr = load_oriented_image(match.sr_path)[0][None].to(device)  # as `srgan.upscale` reads: EXIF orientation
        gt = match.gt
        if gt is None and match.gt_path is not None:
            gt = modcrop(load_oriented_image(match.gt_path)[0], scale)
        if gt is not None:
            gt = gt[None].to(device)
            if sr.shape != gt.shape:
                raise ImagesError(f"{match.sr_path}: {sr.shape[-1]}x{sr.shape[-2]} px, but its HR {match.gt_path} "
                                  f"is {gt.shape[-1]}x{gt.shape[-2]} (mod-cropped to x{scale})")
        base = {"trial_id": trial_id, "dataset": match.dataset, "image": match.name, "scale": scale}
        rows.append(scorers.row(sr, gt, base, str(match.sr_path)))
        if _wants(save_images, match.dataset, match.name):
            _keep_images(sr, gt, Path(images_dir), trial_id, match.dataset, match.name)
    scores = _scores_frame(rows, metrics)
    return scores, summarise(scores, scorers.reasons())


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
    device = torch.device(args.device) if args.device else _default_device()
    try:
        _check_options(args)
        default = None if args.images is not None else DEFAULT_DATASETS
        text = args.datasets if args.datasets is not None else default
        names = ds.parse_datasets(text) if text is not None else []
        metrics = _parse_metrics(args.metrics)
        io.check_writable(args.out)  # before any scoring: a read-only or bad folder fails in a second
        if args.fetch:
            fetch_missing(names, args.data_root)
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
