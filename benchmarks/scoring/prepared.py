"""The benchmark images a scoring process scores every model on, read and prepared once per process.

A sweep or study scores each of its models (17 to 35 in a `cpu` study) on the same Set5 + Set14 images, one task per
model in a few long-lived scoring processes (`harness.sweeps.collect.score_all`). Each model used to decode the sets' HR
and LR PNGs again and convert every HR to Y and filter it for SSIM again; here a process does it once per (sets,
scale, data root, device, crop, colour) and keeps the last such set of images. The key also holds the size and
modification time of every file under the sets' folders, so a file changed in between is read again.

    images = benchmark_images(["set5", "set14"], 4, data_root, device=cpu, crop=4, color="ycbcr_bt601")
    psnr, ssim = metrics.psnr_ssim_against(sr, images[0].reference)   # = metrics.psnr_ssim(sr, images[0].gt, ...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.scoring import datasets as ds
from benchmarks.scoring import metrics as M


@dataclass(frozen=True)
class BenchmarkImage:
    """One benchmark image as scoring uses it: the pair (names, files, unbatched tensors) and its batched LR and HR
    on the scoring device, with the HR side of PSNR/SSIM (`metrics.reference`) computed once."""

    dataset: str
    pair: ds.Pair
    lq: torch.Tensor  # (1, 3, h, w)
    gt: torch.Tensor  # (1, 3, H, W)
    reference: M.Reference | None  # None: no PSNR/SSIM asked for, or an HR too small for the crop and SSIM window


_CACHE: dict[tuple, tuple[BenchmarkImage, ...]] = {}  # the last key only: a process scores one set of images


def _files_signature(datasets: Sequence[str], root: Path) -> tuple:
    """(path, size, mtime) of every file under the sets' folders: what the cached images were read from."""
    out = []
    for name in datasets:
        for folder, _dirs, files in os.walk(root / ds.spec(name).folder):
            for file in files:
                stat = os.stat(os.path.join(folder, file))
                out.append((folder, file, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(out))


def _reference(gt: torch.Tensor, crop: int, color: M.Color) -> M.Reference | None:
    try:
        return M.reference(gt, crop=crop, color=color)
    except ValueError:  # too small for the crop or SSIM's window: psnr_ssim raises it, naming the image's size
        return None


def benchmark_images(datasets: Sequence[str], scale: int, data_root: str | Path | None, *,
                     device: torch.device, crop: int, color: M.Color,
                     reference: bool = True) -> tuple[BenchmarkImage, ...]:
    """Every image of `datasets` at `scale` (`benchmarks.scoring.datasets.load_pairs`, in its order), on `device`,
    with the HR side of PSNR/SSIM when `reference`; read once per process while the files stay as they were."""
    root = ds.data_root(data_root)
    key = (tuple(datasets), scale, str(root), str(device), crop, color, reference,
           _files_signature(datasets, root))
    if key not in _CACHE:
        _CACHE.clear()  # free the previous images before reading the next
        images = []
        for name in datasets:
            for pair in ds.load_pairs(name, scale, root):
                gt = pair.gt[None].to(device)
                images.append(BenchmarkImage(name, pair, pair.lq[None].to(device), gt,
                                             _reference(gt, crop, color) if reference else None))
        _CACHE[key] = tuple(images)
    return _CACHE[key]


def clear() -> None:
    """Forget the images read so far (the next call reads the files again)."""
    _CACHE.clear()
