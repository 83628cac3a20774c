"""The pretrained files scoring reads (LPIPS's AlexNet and heads, NIQE's pristine model; VGG19 for training's
perceptual loss too): where each comes from, where the standard cache (TORCH_HOME) keeps it, and fetching them, one
on demand (`ensure`) or all at once for clusters whose compute nodes have no internet (`python -m benchmarks.prefetch`):

    python -m benchmarks.prefetch --cache /shared/torch-cache     # on a machine with internet
    export TORCH_HOME=/shared/torch-cache                          # on the compute nodes

NIQE also reads the data root's `pretrained/niqe/` (`benchmarks.scoring.niqe`), so pyiqa's copy is only needed where
the shared data is not.
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from srgan.losses import VGG19_FILE, VGG19_URL

log = logging.getLogger(__name__)

# LPIPS AlexNet v0.1: the ImageNet backbone (torchvision's hub cache) and the linear heads (pyiqa's cache).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
LPIPS_HEADS_FILE = "LPIPS_v0.1_alex-df73285e.pth"
LPIPS_HEADS_URL = f"https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{LPIPS_HEADS_FILE}"
SEED_HINT = ("seed the cache on a machine with internet: `python -m benchmarks.prefetch --cache DIR`, copy DIR "
             "over and set TORCH_HOME=DIR")


class MetricUnavailable(RuntimeError):
    """A metric whose weights are neither cached nor downloadable; the message says what is missing."""


@dataclass(frozen=True)
class WeightFile:
    """A pretrained file the project can use: where it comes from and where the standard cache keeps it."""

    name: str
    url: str
    relpath: str  # relative to torch.hub.get_dir() (TORCH_HOME/hub)

    def cache_path(self, hub_dir: str | Path | None = None) -> Path:
        return Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / self.relpath


ALEXNET = WeightFile("torchvision AlexNet (ImageNet) for LPIPS", ALEXNET_URL, f"checkpoints/{ALEXNET_FILE}")
LPIPS_HEADS = WeightFile("LPIPS v0.1 AlexNet linear heads (pyiqa)", LPIPS_HEADS_URL, f"pyiqa/{LPIPS_HEADS_FILE}")

NIQE_MAT_FILE = "niqe_modelparameters.mat"
NIQE_MAT_URL = f"https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{NIQE_MAT_FILE}"
# pyiqa's own copy of the release's `modelparameters.mat`, where pyiqa downloads it (TORCH_HOME/hub/pyiqa/)
NIQE_PYIQA = WeightFile("NIQE pristine model (pyiqa's copy of the original release)", NIQE_MAT_URL,
                        f"pyiqa/{NIQE_MAT_FILE}")


def fetch_weight(weight: WeightFile, *, hub_dir: str | Path | None = None) -> Path:
    """Download one weight file into the cache (atomic: torch writes a temp file and renames it)."""
    path = weight.cache_path(hub_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(weight.url, str(path), progress=False)
    return path


def ensure(weight: WeightFile, *, download: bool) -> Path:
    """The file in the cache, downloaded first if missing and `download`; else `MetricUnavailable` with the way to
    seed the cache."""
    path = weight.cache_path()
    if path.is_file():
        return path
    reason = "download disabled"
    if download:
        try:
            return fetch_weight(weight)
        except (urllib.error.URLError, OSError, ValueError, RuntimeError) as err:
            reason = f"download failed: {err}"
    raise MetricUnavailable(f"{weight.name} not in the cache ({path}) and {reason}; {SEED_HINT}")


VGG19 = WeightFile("torchvision VGG19 (ImageNet) for the perceptual loss", VGG19_URL, f"checkpoints/{VGG19_FILE}")
WEIGHT_FILES: tuple[WeightFile, ...] = (VGG19, ALEXNET, LPIPS_HEADS, NIQE_PYIQA)


def _torch_download(url: str, dest: Path) -> None:
    torch.hub.download_url_to_file(url, str(dest), progress=True)


def prefetch(cache: str | Path, *, files: tuple[WeightFile, ...] = WEIGHT_FILES,
             downloader: Callable[[str, Path], None] = _torch_download) -> dict[str, str]:
    """Download each file to `<cache>/hub/<relpath>` unless present; returns {path: error} for failures."""
    hub_dir = Path(cache) / "hub"  # torch.hub.get_dir() is $TORCH_HOME/hub
    failed: dict[str, str] = {}
    for weight in files:
        dest = weight.cache_path(hub_dir)
        if dest.is_file() and dest.stat().st_size > 0:
            log.info("present: %s", dest)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        log.info("fetching %s -> %s", weight.url, dest)
        try:
            downloader(weight.url, dest)
        except (urllib.error.URLError, OSError, ValueError, RuntimeError) as err:
            failed[str(dest)] = f"{weight.name} from {weight.url}: {type(err).__name__}: {err}"
            continue
        if not dest.is_file():
            failed[str(dest)] = f"{weight.name} from {weight.url}: the download wrote no file"
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefetch",
                                     description="Pre-fetch every pretrained weight file the project can use into one "
                                                 "cache folder laid out as TORCH_HOME expects.")
    parser.add_argument("--cache", type=Path, required=True, help="folder to fill (becomes TORCH_HOME)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    failed = prefetch(args.cache)
    for weight in WEIGHT_FILES:
        path = weight.cache_path(args.cache / "hub")
        print(f"{'FAILED' if str(path) in failed else 'ok    '} {path}")
    if failed:
        print(f"\n{len(failed)} of {len(WEIGHT_FILES)} file(s) could not be fetched:", file=sys.stderr)
        for reason in failed.values():
            print(f"  {reason}", file=sys.stderr)
        print("Run this on a machine with internet, or copy the files from the URLs above to those paths.",
              file=sys.stderr)
        return 1
    print(f"\nall weights cached. On the machines that use them: export TORCH_HOME={args.cache.resolve()}")
    return 0

