"""Pre-fetch every pretrained weight file the project can use into one cache folder laid out as TORCH_HOME
expects, for clusters whose compute nodes have no internet:

    python -m benchmarks.prefetch --cache /shared/torch-cache     # on a machine with internet
    export TORCH_HOME=/shared/torch-cache                          # on the compute nodes

Files: torchvision VGG19 (perceptual loss), torchvision AlexNet + the LPIPS v0.1 linear heads (LPIPS), and
pyiqa's copy of NIQE's pristine model (NIQE also reads the data root's `pretrained/niqe/`, so this one is only
needed where the shared data is not).
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.error
from collections.abc import Callable
from pathlib import Path

from benchmarks.metrics import ALEXNET, LPIPS_HEADS, NIQE_PYIQA, WeightFile
from srgan.losses import VGG19_FILE, VGG19_URL

log = logging.getLogger(__name__)

VGG19 = WeightFile("torchvision VGG19 (ImageNet) for the perceptual loss", VGG19_URL, f"checkpoints/{VGG19_FILE}")
WEIGHT_FILES: tuple[WeightFile, ...] = (VGG19, ALEXNET, LPIPS_HEADS, NIQE_PYIQA)


def _torch_download(url: str, dest: Path) -> None:
    import torch

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
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prefetch", description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    sys.exit(main())
