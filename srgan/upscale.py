"""Tiled inference for fully convolutional upscalers, and `python -m srgan.upscale IN OUT --checkpoint PATH`.

A tile of the LR image is run with `overlap` extra pixels of context on each side; only its centre is kept.
When the overlap covers the model's receptive field (radius, in LR pixels), every kept output pixel saw
exactly the input it sees untiled, so the tiled result equals the untiled one up to float rounding. The
output is written into one preallocated tensor and tiles run one at a time, so peak memory is the output
plus one tile's activations, however large the image. (BatchNorm in eval mode is a per-channel affine
map, so SRResNet is fully convolutional too.)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

DEFAULT_OVERLAP = 16  # LR pixels; the tiny presets' receptive radius is ~12, full SRResNet's ~40


def _tile_starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile))


def upscale(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], lq: torch.Tensor, scale: int, *,
            tile: int | None = None, overlap: int = DEFAULT_OVERLAP) -> torch.Tensor:
    """Upscale (B, 3, h, w) or (3, h, w) `lq` in [0, 1] by `scale`; returns (B, 3, h*s, w*s) clamped to [0, 1].

    `tile` is the side (LR pixels) of the region kept from each model call; None runs the image whole. The
    output stays on `lq`'s device; each tile is moved to the model's device for its forward pass."""
    squeeze = lq.dim() == 3
    if squeeze:
        lq = lq[None]
    b, c, h, w = lq.shape
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    device = params[0].device if params else lq.device
    with torch.inference_mode():
        if tile is None or (h <= tile and w <= tile):
            sr = model(lq.to(device)).to(lq.device).clamp_(0, 1)
            return sr[0] if squeeze else sr
        if tile <= 0 or overlap < 0:
            raise ValueError(f"tile must be positive and overlap non-negative, got tile={tile}, overlap={overlap}")
        sr = torch.empty(b, c, h * scale, w * scale, dtype=lq.dtype, device=lq.device)  # (B, 3, H*s, W*s)
        for top in _tile_starts(h, tile):
            for left in _tile_starts(w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                # the tile plus its context, clipped at the image border (where the model pads as untiled)
                y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
                y1, x1 = min(bottom + overlap, h), min(right + overlap, w)
                out = model(lq[:, :, y0:y1, x0:x1].to(device))
                oy, ox = (top - y0) * scale, (left - x0) * scale
                keep = out[:, :, oy : oy + (bottom - top) * scale, ox : ox + (right - left) * scale]
                sr[:, :, top * scale : bottom * scale, left * scale : right * scale] = keep.to(lq.device)
                del out, keep  # free this tile's output before the next forward pass
        sr.clamp_(0, 1)
    return sr[0] if squeeze else sr


# --------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    from srgan.checkpoint import CheckpointError, load_generator
    from srgan.data import IMAGE_SUFFIXES, ImageError, list_images, load_image, save_image

    parser = argparse.ArgumentParser(prog="python -m srgan.upscale", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("output", type=Path, help="output file (for one input file) or folder")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder (or its .safetensors)")
    parser.add_argument("--tile", type=int, default=None, help="tile side in LR pixels (default: whole image)")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="context around each tile (LR px)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        net_g, cfg = load_generator(args.checkpoint, device=args.device)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.input.is_dir():
        sources = list_images(args.input)
        targets = [args.output / f"{p.stem}.png" for p in sources]
    elif args.input.is_file():
        sources = [args.input]
        is_dir_out = args.output.is_dir() or args.output.suffix.lower() not in IMAGE_SUFFIXES
        targets = [args.output / f"{args.input.stem}.png" if is_dir_out else args.output]
    else:
        print(f"error: {args.input}: no such file or folder", file=sys.stderr)
        return 2
    if not sources:
        print(f"error: {args.input}: no images found", file=sys.stderr)
        return 2
    from tqdm import tqdm

    for src, dst in tqdm(list(zip(sources, targets, strict=True)), desc=f"x{cfg.scale}", unit="img"):
        try:
            lq = load_image(src)
        except ImageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        sr = upscale(net_g, lq, cfg.scale, tile=args.tile, overlap=args.overlap)
        save_image(sr, dst)
    print(f"wrote {len(targets)} image(s) to {targets[0] if len(targets) == 1 else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
