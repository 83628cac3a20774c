"""What every scored image goes through, for a model (`evaluate`) and for SR files made elsewhere (`images`) alike:
the metrics of a run loaded once (`load_scorers`: one that cannot be loaded is null with its reason), the row of one
image (`Scorers.row`), the scores table, and the SR and HR images kept for the report."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import nn

from benchmarks.scoring import metrics as M
from results import io, schema
from srgan.images import ImageError, save_image

log = logging.getLogger(__name__)


class OutputError(io.ResultsError):
    """An output file (an SR or HR image kept for the report) that could not be written: a full disk, a quota.
    The message names the file; what was written before it is kept. The CLI exits 1 (a run failed)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_WARNED: set[str] = set()
NO_HR = "no HR to compare with (--images without --hr or --datasets): only no-reference metrics are scored"
MAX_NAMED = 5  # images named in a missing-value reason; the rest are counted


@dataclass(frozen=True)
class Scorers:
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


def load_scorers(metrics: Sequence[str], device: torch.device, *, crop: int, color: M.Color,
                 data_root: str | Path | None, reference: bool) -> Scorers:
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
    return Scorers(tuple(metrics), crop, color, nets, niqe, missing)


def wants(save_images: bool | Collection[str] | None, dataset: str, image: str) -> bool:
    if save_images is None or save_images is False:
        return False
    if save_images is True:
        return True
    return image in save_images or f"{dataset}/{image}" in save_images or dataset in save_images


# zlib level of the scored images kept for the report: the fastest (PIL's default 6 took 0.1 s of a cpu-size model's
# 2.3 s of scoring for Set5's five images; level 1 writes the same pixels in a third of that)
KEPT_PNG_LEVEL = 1


def _save(img: torch.Tensor, path: Path) -> None:
    """`save_image`, with a failed write (a full disk) as an `OutputError` naming the file."""
    try:
        save_image(img, path, png_level=KEPT_PNG_LEVEL)
    except (OSError, ImageError) as err:
        kept = "the previous file is unchanged" if path.exists() else "nothing was written to it"
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise OutputError(f"{path}: could not be written ({why}); {kept}; images saved before it are kept, no "
                          f"table was written") from err


def keep_images(sr: torch.Tensor, gt: torch.Tensor | None, images_dir: Path, trial_id: str, dataset: str,
                name: str) -> None:
    _save(sr, images_dir / trial_id / dataset / f"{name}.png")
    hr_path = images_dir / schema.HR_DIR / dataset / f"{name}.png"
    if gt is not None and not hr_path.exists():
        _save(gt, hr_path)


def scores_frame(rows: list[dict[str, Any]], metrics: Sequence[str]) -> pl.DataFrame:
    extra = [m for m in metrics if m not in schema.SCORE_COLUMNS]
    columns = {**schema.polars_schema(schema.SCORE_COLUMNS), **{m: pl.Float64 for m in extra}}
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=columns)

