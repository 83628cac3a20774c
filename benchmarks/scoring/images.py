"""Score SR images made elsewhere (`python -m benchmarks.evaluate --images DIR`) with the protocol a model is scored
with: every SR file matched to its HR by name before anything is scored (`match_images`), then scored as a model's
output is (`benchmarks.scoring.scorers`).

    scores, summary = score_images("their_sr/", scale=4, datasets=["set5"])   # HR: the benchmark set's
    scores, summary = score_images("their_sr/", scale=4, hr="my_hr/", suffix="_x4_SR")
    scores, summary = score_images("photos_x4/", scale=4)                        # no HR: NIQE only
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from benchmarks.scoring import datasets as ds
from benchmarks.scoring import metrics as M
from benchmarks.scoring.evaluate import DEFAULT_METRICS, summarise
from benchmarks.scoring.scorers import MAX_NAMED, default_device, keep_images, load_scorers, scores_frame, wants
from srgan.images import IMAGE_SUFFIXES, list_images, load_oriented_image, modcrop


class ImagesError(ValueError):
    """SR images of `--images` that cannot be matched to their HR; the message names the file."""


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
    device = torch.device(device) if device else default_device()
    if save_images and images_dir is None:
        raise ValueError("save_images needs images_dir")
    matches = match_images(images, scale=scale, hr=Path(hr) if hr is not None else None, datasets=datasets,
                           data_root=data_root, suffix=suffix)
    scorers = load_scorers(metrics, device, crop=scale if crop is None else crop, color=color,
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
        if wants(save_images, match.dataset, match.name):
            keep_images(sr, gt, Path(images_dir), trial_id, match.dataset, match.name)
    scores = scores_frame(rows, metrics)
    return scores, summarise(scores, scorers.reasons())


