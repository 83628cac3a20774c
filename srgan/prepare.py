"""Cut large HR training images (DIV2K-sized) into overlapping sub-images once, so training reads small files.

The field's convention (BasicSR's `extract_subimages`, used by ESRGAN and Real-ESRGAN for DIV2K/DF2K):
480-px tiles every 240 px; the last tile of each row and column is aligned to the image edge, so the whole
image is covered. Tiles are PNG files named `<stem>_s001.png`, `<stem>_s002.png`, ... in row-major order.

Resumable: after all tiles of an image are written, a small marker `<DST>/.prepare/<stem>.json` is written
atomically; a rerun skips images whose marker matches (same source size and tiling) and whose tiles exist.
Unreadable files are logged and skipped; the run continues.

    python -m srgan.prepare DIV2K_train_HR data/DIV2K_train_HR_sub [--tile 480 --step 240 --min-size 480]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from srgan.files import atomic_write
from srgan.images import IMAGE_SUFFIXES, ImageError, encode_png16, load_image_u8

log = logging.getLogger(__name__)

MARKER_DIR = ".prepare"


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Start offsets along one axis: every `step` px, plus a last tile flush with the edge if one is missing.

    A side shorter than `tile` gives one tile of the whole side (start 0)."""
    if tile <= 0 or step <= 0:
        raise ValueError(f"tile and step must be positive, got tile={tile}, step={step}")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def write_png(img: torch.Tensor, path: Path) -> None:
    """Write a (3, H, W) uint8 or 16-bit (int32 holding 0..65535) image as PNG at its native depth."""
    if img.dtype == torch.uint8:
        Image.fromarray(img.permute(1, 2, 0).contiguous().numpy()).save(path, format="PNG", compress_level=3)
        return
    path.write_bytes(encode_png16(img))  # PIL cannot write 16-bit RGB


@dataclass
class PrepareReport:
    done: list[str] = field(default_factory=list)  # images tiled by this run
    resumed: list[str] = field(default_factory=list)  # images already finished by an earlier run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    tiles: int = 0  # tiles written by this run


def _marker(dst: Path, stem: str) -> Path:
    return dst / MARKER_DIR / f"{stem}.json"


def _finished(dst: Path, stem: str, expect: dict) -> bool:
    try:
        marker = json.loads(_marker(dst, stem).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    same = all(marker.get(k) == v for k, v in expect.items())
    return same and all((dst / name).is_file() for name in marker.get("tiles", []))


def prepare(src: str | Path, dst: str | Path, *, tile: int = 480, step: int = 240, min_size: int | None = None,
            progress: bool = True) -> PrepareReport:
    """Tile every image of `src` into `dst` (see the module doc); returns what was done, resumed and skipped."""
    src, dst = Path(src), Path(dst)
    min_size = tile if min_size is None else min_size
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {src}")
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise ValueError(f"{path.name} and {stems[path.stem].name} would write the same tile names")
        stems[path.stem] = path
    (dst / MARKER_DIR).mkdir(parents=True, exist_ok=True)
    report = PrepareReport()
    for path in tqdm(files, desc="tiling", unit="image", disable=not progress):
        expect = {"source": path.name, "source_bytes": path.stat().st_size, "tile": tile, "step": step}
        if _finished(dst, path.stem, expect):
            report.resumed.append(path.name)
            continue
        try:
            img = load_image_u8(path)  # (3, H, W), native depth
        except ImageError as err:
            reason = str(err).removeprefix(f"{path}: ")
            log.warning("skipping %s: %s", path, reason)
            report.skipped.append((path.name, reason))
            continue
        h, w = img.shape[-2:]
        if min(h, w) < min_size:
            reason = f"too small ({w}x{h} px; --min-size is {min_size})"
            log.warning("skipping %s: %s", path, reason)
            report.skipped.append((path.name, reason))
            continue
        names = []
        index = 0
        for top in tile_starts(h, tile, step):
            for left in tile_starts(w, tile, step):
                index += 1
                name = f"{path.stem}_s{index:03d}.png"
                crop = img[:, top : top + tile, left : left + tile].contiguous()
                atomic_write(dst / name, lambda p, crop=crop: write_png(crop, p))
                names.append(name)
        marker = {**expect, "height": h, "width": w, "tiles": names}
        atomic_write(_marker(dst, path.stem), lambda p, m=marker: p.write_text(json.dumps(m, indent=1)))
        report.done.append(path.name)
        report.tiles += len(names)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srgan.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="folder of HR images")
    parser.add_argument("dst", type=Path, help="folder for the sub-images (created; reruns resume)")
    parser.add_argument("--tile", type=int, default=480, help="tile side in px (default 480)")
    parser.add_argument("--step", type=int, default=240, help="distance between tile starts in px (default 240)")
    parser.add_argument("--min-size", type=int, default=None,
                        help="skip images whose shorter side is below this (default: the tile size); a side "
                             "between this and the tile size gives tiles as long as that side")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        report = prepare(args.src, args.dst, tile=args.tile, step=args.step, min_size=args.min_size)
    except (FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    log.info("%d image(s) tiled into %d sub-images, %d already done, %d skipped", len(report.done), report.tiles,
             len(report.resumed), len(report.skipped))
    for name, reason in report.skipped:
        log.info("  skipped %s: %s", name, reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
