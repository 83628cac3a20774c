"""Tiled inference for fully convolutional upscalers, and `python -m srgan.upscale IN OUT --checkpoint PATH`.

A tile of the LR image is run with `overlap` extra pixels of context on each side; only its centre is kept.
When the overlap covers the model's receptive field (radius, in LR pixels), every kept output pixel saw
exactly the input it sees untiled, so the tiled result equals the untiled one up to float rounding. The
default overlap is that radius, derived from the network's convolutions (`receptive_radius`): 40 LR px for
full SRResNet, 351 for full ESRGAN (23 RRDBs are 345 chained 3x3 convs), 12 or less for the tiny presets. A
smaller `overlap` trades exactness for smaller tiles. The output is written into one preallocated tensor and
tiles run one at a time, so peak memory is the output plus one tile's activations, however large the image.
(BatchNorm in eval mode is a per-channel affine map, so SRResNet is fully convolutional too.)

Every call runs the model's inference forward (`srgan.inference.inference_forward`): for the project's generators
the same function as their forward, computed with fused convs and channels-last activations (about twice as fast
on a CPU), for any other model its own forward.

Every model output is checked before it is clamped: NaN or infinite values (a diverged checkpoint) raise
`NonFiniteOutputError` naming the image, instead of becoming a black picture.

The CLI runs an image larger than `--tile` (default 512 LR px, as `benchmarks.evaluate`) in tiles with the exact
overlap, so a large photo needs the output plus one tile's activations, not the whole image's (a 6 MP input at x4
untiled died in the allocator). An output over the project's pixel limit (`srgan.images.pixel_limit`) is refused
before the model runs, and an allocation failure is an error naming the image and a smaller `--tile`.

The CLI reads each image as a viewer shows it (its EXIF orientation applied) and keeps what the output holds of
it: a 16-bit input gives a 16-bit PNG, an RGB ICC profile is embedded again, and an animated or multi-page file
is refused (`srgan.images.load_oriented_image`, `srgan.images.save_image`). Each output is written atomically.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from srgan.inference import inference_forward

log = logging.getLogger(__name__)


class NonFiniteOutputError(ValueError):
    """A model output holding NaN or infinite values; the message names the image."""


class UpscaleError(ValueError):
    """An upscale request that would lose data (colliding outputs, an input overwritten); nothing is written."""


DEFAULT_TILE = 512  # LR px: the CLI runs larger images in tiles (as benchmarks.evaluate does), smaller ones whole


def is_allocation_failure(err: BaseException) -> bool:
    """Whether `err` is torch failing to allocate memory (CUDA's OutOfMemoryError, or the CPU allocator's
    RuntimeError), rather than a bug."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def check_output_size(src: Path, height: int, width: int, scale: int) -> None:
    """Refuse (`UpscaleError`, naming the image) an output over the pixel limit the project's readers decode
    (`srgan.images.pixel_limit`, 100 MP unless $ENHANCE_MAX_PIXELS says otherwise): the result could not be read back
    by them, and its float output alone takes 12 bytes a pixel."""
    from srgan.images import MAX_PIXELS_ENV, pixel_limit

    out_h, out_w, limit = height * scale, width * scale, pixel_limit()
    if out_h * out_w > limit:
        raise UpscaleError(f"{src}: {width}x{height} px at x{scale} gives {out_w}x{out_h} px "
                           f"({out_h * out_w / 1e6:.2g} MP, {out_h * out_w * 12 / 2**30:.1f} GiB as float), over "
                           f"the limit of {limit / 1e6:g} MP; raise {MAX_PIXELS_ENV} to allow it. Nothing was written "
                           "for it")


def check_finite_output(sr: torch.Tensor, what: str) -> None:
    """Raise `NonFiniteOutputError` naming `what` (an image, a file) when `sr` holds NaN or infinite values.

    Check the raw model output: clamping maps +-inf to 1 and 0 and would hide them."""
    finite = torch.isfinite(sr)
    if not bool(finite.all()):
        bad = int(finite.numel() - finite.sum())
        raise NonFiniteOutputError(f"{what}: the model output holds {bad} non-finite value(s) (NaN or inf) of "
                                   f"{sr.numel()}; the weights have probably diverged")


# ------------------------------------------------------------------------------------- receptive radius

# Spatial layers whose reach `receptive_radius` cannot bound from a kernel size: a network holding one of
# them needs an explicit overlap.
_UNSUPPORTED = (nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d, nn.AdaptiveAvgPool2d,
                nn.AdaptiveMaxPool2d, nn.Fold, nn.Unfold, nn.MultiheadAttention)
# Interpolation seen as a function call (a bicubic skip, nearest upsampling) reaches at most 2 input pixels.
INTERPOLATION_MARGIN = 2
_RADIUS_CACHE: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def _conv_reach(conv: nn.Conv2d) -> int:
    """Input pixels an output pixel of `conv` reaches on either side of its own position, at the conv's input
    resolution (the larger side when the padding is asymmetric)."""
    reach = 0
    for dim in range(2):
        span = conv.dilation[dim] * (conv.kernel_size[dim] - 1)
        pad = span // 2 if isinstance(conv.padding, str) else conv.padding[dim]
        reach = max(reach, pad, span - pad)
    return reach


def receptive_radius(net: nn.Module, *, probe_size: int = 16) -> int:
    """The receptive radius of a convolutional upscaler, in input (LR) pixels: how far from an output pixel's
    own LR position the input can change it. An overlap of this size makes tiled inference exact.

    Every `nn.Conv2d` on the path adds its reach, divided by the resolution it runs at (a 3x3 conv after an
    x4 upsampling adds ceil(1/4) = 1 LR pixel), plus `INTERPOLATION_MARGIN` for interpolations done as
    function calls (a bicubic skip). Summing every conv bounds the longest path through any graph of
    convolutions; for SRResNet and RRDBNet, whose convs all lie on one chain, it is that path, up to the
    rounding of the upsampled convs. The resolution of each conv is measured by one forward pass on a
    `probe_size` square input (no gradients, BatchNorm statistics untouched); the result is cached per module."""
    if net in _RADIUS_CACHE:
        return _RADIUS_CACHE[net]
    for module in net.modules():
        if isinstance(module, _UNSUPPORTED):
            raise ValueError(f"receptive_radius: {type(module).__name__} layers are not supported; give the "
                             "tile overlap explicitly")
    convs: list[tuple[nn.Conv2d, float]] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        convs.append((module, inputs[0].shape[-1] / probe_size))  # the conv's resolution relative to the input

    hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, nn.Conv2d)]
    modes = {m: m.training for m in net.modules()}
    param = next(net.parameters(), None)
    probe = torch.zeros(1, 3, probe_size, probe_size, device=param.device if param is not None else "cpu",
                        dtype=param.dtype if param is not None else torch.float32)
    try:
        net.eval()
        with torch.no_grad():
            net(probe)
    finally:
        for hook in hooks:
            hook.remove()
        for module, mode in modes.items():
            module.training = mode
    radius = sum(math.ceil(_conv_reach(conv) / factor) for conv, factor in convs) + INTERPOLATION_MARGIN
    _RADIUS_CACHE[net] = radius
    return radius


# ---------------------------------------------------------------------------------------------- upscale


def _tile_starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile))


def upscale(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], lq: torch.Tensor, scale: int, *,
            tile: int | None = None, overlap: int | None = None, name: str = "model output") -> torch.Tensor:
    """Upscale (B, 3, h, w) or (3, h, w) `lq` in [0, 1] by `scale`; returns (B, 3, h*s, w*s) clamped to [0, 1].

    `tile` is the side (LR pixels) of the region kept from each model call; None runs the image whole.
    `overlap` is the context around each tile; None derives it from the model (`receptive_radius`), which
    makes the tiled result equal the untiled one. The output stays on `lq`'s device; each tile is moved to
    the model's device for its forward pass. Non-finite model output raises `NonFiniteOutputError` naming
    `name` (pass the image's file)."""
    squeeze = lq.dim() == 3
    if squeeze:
        lq = lq[None]
    b, c, h, w = lq.shape
    params = list(model.parameters()) if isinstance(model, nn.Module) else []
    device = params[0].device if params else lq.device
    with torch.inference_mode():
        forward = inference_forward(model)  # the same function, faster (srgan.inference)
        if tile is None or (h <= tile and w <= tile):
            sr = forward(lq.to(device)).to(lq.device)
            check_finite_output(sr, name)
            sr.clamp_(0, 1)
            return sr[0] if squeeze else sr
        if overlap is None:
            if not isinstance(model, nn.Module):
                raise ValueError("overlap=None derives the overlap from an nn.Module; give it for a plain function")
            overlap = receptive_radius(model)
        if tile <= 0 or overlap < 0:
            raise ValueError(f"tile must be positive and overlap non-negative, got tile={tile}, overlap={overlap}")
        sr = torch.empty(b, c, h * scale, w * scale, dtype=lq.dtype, device=lq.device)  # (B, 3, H*s, W*s)
        for top in _tile_starts(h, tile):
            for left in _tile_starts(w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                # the tile plus its context, clipped at the image border (where the model pads as untiled)
                y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
                y1, x1 = min(bottom + overlap, h), min(right + overlap, w)
                out = forward(lq[:, :, y0:y1, x0:x1].to(device))
                oy, ox = (top - y0) * scale, (left - x0) * scale
                keep = out[:, :, oy : oy + (bottom - top) * scale, ox : ox + (right - left) * scale]
                check_finite_output(keep, name)
                sr[:, :, top * scale : bottom * scale, left * scale : right * scale] = keep.to(lq.device)
                del out, keep  # free this tile's output before the next forward pass
        sr.clamp_(0, 1)
    return sr[0] if squeeze else sr


# --------------------------------------------------------------------------------------------------- CLI


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file or folder (through links, `..`, or hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def plan_outputs(source: Path, output: Path) -> list[tuple[Path, Path]]:
    """The (input image, output file) pairs of `python -m srgan.upscale SOURCE OUTPUT`, checked before anything
    is written: two inputs that would write one output (a.jpg and a.png both give a.png; names compared
    case-insensitively, as on macOS and Windows), an output that is an input (through a link or a hard link
    too), and an output folder that is the input folder (or the input file's folder) raise `UpscaleError`
    naming the files. An output file named explicitly beside its input is allowed.

    For one input file, OUTPUT is a file when its suffix is one of `srgan.images.OUTPUT_SUFFIXES` (written in that
    format), a folder when it is an existing folder or has no suffix (the result is `<stem>.png` in it), and
    anything else (`out.xyz`) is refused rather than guessed. For an input folder, OUTPUT is a folder, and an
    image file name (`out.png`) or an existing file is refused."""
    from srgan.images import IMAGE_SUFFIXES, OUTPUT_SUFFIXES, list_images

    if source.is_dir():
        if output.is_dir() and _same(output, source):
            raise UpscaleError(f"output folder {output} is the input folder {source}: the results would overwrite "
                               "or mix with the originals; choose another output folder")
        if not output.is_dir() and (output.exists() or output.suffix.lower() in IMAGE_SUFFIXES + OUTPUT_SUFFIXES):
            raise UpscaleError(f"{source} is a folder, so the output must be a folder, but {output} "
                               f"{'is a file' if output.exists() else 'names an image file'}; choose a folder")
        pairs = [(p, output / f"{p.stem}.png") for p in list_images(source)]
    elif source.is_file():
        to_folder = output.is_dir() or not output.suffix
        if not to_folder and output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise UpscaleError(f"{output}: {output.suffix!r} is not an image format this writes (one of "
                               f"{', '.join(OUTPUT_SUFFIXES)}); name an output file with one of them, or a folder "
                               "(an existing one, or a name without a suffix). Nothing was written")
        if to_folder and output.is_dir() and _same(output, source.parent):  # a derived name among the originals
            raise UpscaleError(f"output folder {output} is the input folder {source.parent}: the result would "
                               f"overwrite or mix with the originals; choose another folder or name the output file")
        pairs = [(source, output / f"{source.stem}.png" if to_folder else output)]
    else:
        raise UpscaleError(f"{source}: no such file or folder")
    if not pairs:
        raise UpscaleError(f"{source}: no images found")
    first: dict[str, Path] = {}
    for src, dst in pairs:
        key = dst.name.casefold()
        if key in first:
            raise UpscaleError(f"{first[key]} and {src} would both be written to {dst} (outputs are PNG files named "
                               "after the input); rename one of them. Nothing was written")
        first[key] = src
    by_path = {src.resolve(): src for src, _ in pairs}
    by_inode = {(st.st_dev, st.st_ino): src for src in by_path.values() if (st := src.stat())}
    for _, dst in pairs:
        other = by_path.get(dst.resolve())
        if other is None and dst.exists():
            st = dst.stat()
            other = by_inode.get((st.st_dev, st.st_ino))  # a hard link to an input
        if other is not None:
            raise UpscaleError(f"{dst} is the input {other}: upscaling would overwrite it; choose another output. "
                               "Nothing was written")
    return pairs


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 the run failed (non-finite model output, memory exhausted, or an output that could
    not be written: the images before it are kept), 2 bad arguments, input (an output over the pixel limit too) or
    checkpoint."""
    from srgan.checkpoint import CheckpointError, load_generator
    from srgan.images import ImageError, ImageWriteError, load_oriented_image, save_image

    parser = argparse.ArgumentParser(prog="python -m srgan.upscale", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("output", type=Path, help="output file for one input file (.png, .jpg, .tif, .webp, .bmp or "
                        ".ppm), else a folder (existing, or a name without a suffix) that gets <name>.png files")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="checkpoint folder (or its .safetensors), or a published ESRGAN generator .pth")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help=f"tile side in LR pixels: an image larger than this on a side runs in tiles, each "
                             f"with its context (default {DEFAULT_TILE}, as benchmarks.evaluate; 0: the whole image "
                             "at once)")
    parser.add_argument("--overlap", type=int, default=None,
                        help="context around each tile in LR px (default: the generator's receptive radius, "
                             "so tiled output equals untiled output)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.tile < 0:
        parser.error(f"--tile must be a side in LR pixels, or 0 for the whole image; got {args.tile}")
    tile = args.tile or None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        pairs = plan_outputs(args.input, args.output)
        net_g, cfg = load_generator(args.checkpoint, device=args.device)
    except (UpscaleError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if tile is not None and args.overlap is None:
        log.info("tile overlap: %d LR px (the generator's receptive radius)", receptive_radius(net_g))
    from tqdm import tqdm

    for src, dst in tqdm(pairs, desc=f"x{cfg.scale}", unit="img"):
        try:
            lq, meta = load_oriented_image(src)  # EXIF orientation applied; 16-bit depth and ICC profile kept
            check_output_size(src, *lq.shape[-2:], cfg.scale)
        except (ImageError, UpscaleError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            sr = upscale(net_g, lq, cfg.scale, tile=tile, overlap=args.overlap, name=str(src))
        except NonFiniteOutputError as err:
            print(f"error: {err}; {dst} not written", file=sys.stderr)
            return 1
        except (RuntimeError, MemoryError) as err:
            if not (isinstance(err, MemoryError) or is_allocation_failure(err)):
                raise
            h, w = lq.shape[-2:]
            how = (f"in tiles of {tile} px" if tile is not None and max(h, w) > tile else "whole")
            print(f"error: {src} ({w}x{h} px, run {how} on {args.device}): out of memory "
                  f"({str(err).strip().splitlines()[0][:200]}); give a smaller --tile (e.g. "
                  f"{max(16, min(tile or max(h, w), max(h, w)) // 2)}). {dst} not written", file=sys.stderr)
            return 1
        try:
            save_image(sr, dst, bits=meta.bits, icc_profile=meta.icc_profile)
        except ImageWriteError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    print(f"wrote {len(pairs)} image(s) to {pairs[0][1] if len(pairs) == 1 else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
