"""Image files: reading (8/16-bit, header checks, pixel limit, EXIF orientation and colour profile), writing
(8/16-bit PNG, atomic), listing and mod-crop.

Images are float tensors in [0, 1], (3, H, W) RGB, unless a name says otherwise (`*_u8`).
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_png

from srgan.files import atomic_write

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and the problem."""


class ImageWriteError(OSError):
    """An image that could not be written (a full disk, a read-only folder); the message names the file and says
    that the previous file there, if any, is unchanged. An `OSError`, so callers that catch write errors of any
    kind catch it too."""


# --------------------------------------------------------------------------------------------- image I/O


# Decompression bombs: a small file can declare a huge image (a 2.6 MB PNG of 30000x30000 decodes to 2.7 GB).
# Every reader checks the size in the file's header against this limit before decoding anything.
DEFAULT_MAX_PIXELS = 100_000_000  # admits DIV2K (2040x1404 = 2.9 MP) and 8K photos (7680x4320 = 33 MP)
MAX_PIXELS_ENV = "ENHANCE_MAX_PIXELS"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pixel_limit(max_pixels: int | None = None) -> int:
    """The largest image (width x height) decoded: `max_pixels`, else $ENHANCE_MAX_PIXELS, else 100 MP."""
    where = "max_pixels"
    if max_pixels is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_PIXELS
        where = MAX_PIXELS_ENV
        try:
            max_pixels = int(float(env))  # "100000000" or "1e8"
        except (ValueError, OverflowError):
            raise ValueError(f"{MAX_PIXELS_ENV}={env!r} is not a number of pixels") from None
    if max_pixels < 1:
        raise ValueError(f"{where} must be a positive number of pixels, got {max_pixels}")
    return int(max_pixels)


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{path}: declares an empty image ({width}x{height} px)")
    limit = pixel_limit(max_pixels)
    if width * height > limit:
        raise ImageError(f"{path}: declares {width}x{height} px ({width * height / 1e6:.1f} MP), over the decode "
                         f"limit of {limit / 1e6:g} MP; refused before decoding (a decompression bomb, or a real "
                         f"image that needs a higher {MAX_PIXELS_ENV})")


def _png_header(head: bytes, path: Path) -> tuple[int, int, int]:
    """(width, height, colour type) from a PNG's IHDR chunk, which the format requires first."""
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise ImageError(f"{path}: corrupt or truncated PNG (no IHDR header)")
    width, height, _depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, colour


_PNG_KEPT = {b"tRNS": 1024, b"acTL": 8, b"eXIf": 1 << 20}  # chunks read, and the longest payload read of each


def _png_chunks(f: BinaryIO, *, whole: bool = False) -> dict[bytes, bytes]:
    """The payloads of a PNG's first tRNS (transparency), acTL (animation) and eXIf (EXIF) chunks; every other
    chunk is skipped unread, and so is a kept kind whose declared length is implausible (never allocated). The
    walk stops at the image data unless `whole` (an eXIf chunk may follow the image data)."""
    found: dict[bytes, bytes] = {}
    f.seek(8)
    while len(head := f.read(8)) == 8:
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND" or (kind == b"IDAT" and not whole):
            break
        if kind in _PNG_KEPT and kind not in found and length <= _PNG_KEPT[kind]:
            found[kind] = f.read(length)
            f.seek(4, os.SEEK_CUR)  # the CRC
        else:
            f.seek(length + 4, os.SEEK_CUR)
    return found


def _refuse_frames(path: Path, frames: int, what: str) -> None:
    if frames > 1:
        raise ImageError(f"{path}: holds {frames} frames ({what}); one image is read per file, and which frame is "
                         "meant is not for the reader to guess: export the frame to use as its own file")


def _check_apng(path: Path, chunks: dict[bytes, bytes]) -> None:
    actl = chunks.get(b"acTL", b"")
    if len(actl) >= 4:
        _refuse_frames(path, struct.unpack(">I", actl[:4])[0], "an animated PNG")


def _open_pil(path: Path, max_pixels: int | None) -> Image.Image:
    """Open an image with PIL (header only) and check its size and its frame count before anything is decoded.
    PIL's own bomb check still refuses images over 2 x Image.MAX_IMAGE_PIXELS (179 MP) whatever our limit; its
    warning below that is silenced, since our limit decides. An animated GIF, WebP or PNG and a multi-page TIFF
    are refused (`_refuse_frames`); a camera's multi-picture JPEG (MPO) is read as its first picture, which that
    format defines as the primary image (the others are previews or depth maps)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: declares too many pixels; refused before decoding ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from None
    try:
        _check_pixels(path, *pil.size, max_pixels)
        if pil.format != "MPO":
            _refuse_frames(path, getattr(pil, "n_frames", 1), f"an animated or multi-page {pil.format}")
    except ImageError:
        pil.close()
        raise
    return pil


def load_image_u8(path: str | Path, *, max_pixels: int | None = None) -> torch.Tensor:
    """Decode an image to a (3, H, W) tensor of its native depth (uint8, or int32 holding 16-bit values).

    The size declared in the header is checked against `pixel_limit(max_pixels)` first, for every format, and
    a file of several frames (animated GIF/PNG/WebP, multi-page TIFF) is refused. The stored pixel order is
    kept: EXIF orientation is not applied here (see `load_oriented_image`), so training and benchmark images
    read as MATLAB's imread reads them; the exception is TIFF, whose orientation tag PIL applies itself.
    Grayscale images become RGB; palette images are converted through their palette. An alpha channel (RGBA,
    gray+alpha, a palette's or colour key's tRNS) is dropped, not composited: the stored colour values are the
    image, as PIL's convert("RGB") and OpenCV's IMREAD_COLOR read it (compositing onto black would invent dark
    edges around transparent regions). The drop is logged."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ImageError(f"{path}: cannot read ({err.strerror or err})") from None
    if not raw:
        raise ImageError(f"{path}: empty file (0 bytes)")
    if raw[:8] == _PNG_SIGNATURE:
        width, height, colour = _png_header(raw[:33], path)
        _check_pixels(path, width, height, max_pixels)
        chunks = _png_chunks(io.BytesIO(raw))
        _check_apng(path, chunks)
        # torchvision keeps 16-bit PNGs at full depth (PIL truncates 16-bit RGB to 8 bits). Its RGB mode
        # expands gray and palettes (UNCHANGED returns no usable palette data) and strips alpha.
        try:
            img = decode_png(torch.frombuffer(bytearray(raw), dtype=torch.uint8), ImageReadMode.RGB)
        except RuntimeError as err:
            raise ImageError(f"{path}: corrupt or truncated PNG ({str(err).splitlines()[0]})") from None
        if colour in (4, 6) or b"tRNS" in chunks:
            log.info("%s: alpha channel dropped", path)
        return img.contiguous() if img.dtype == torch.uint8 else img.to(torch.int32).contiguous()
    try:
        with _open_pil(path, max_pixels) as pil:
            pil.load()
            mode = pil.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(pil, dtype=np.int32)
                if arr.max() > 255 or mode.startswith("I;16"):
                    t = torch.from_numpy(arr.copy())[None].expand(3, -1, -1)
                    return t.contiguous()
                pil = pil.convert("L")
            if "A" in mode or (mode == "P" and "transparency" in pil.info):
                log.info("%s: alpha channel dropped", path)
            rgb = pil.convert("RGB")
            arr = np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(f"{path}: not a readable image ({err})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


# ------------------------------------------------------------------------------ what upscaling keeps


@dataclass(frozen=True)
class ImageMeta:
    """What an upscaled image keeps of its input (`load_oriented_image`, `save_image`)."""

    bits: int  # 8 or 16: the depth of the stored samples
    icc_profile: bytes | None  # the input's RGB colour profile, embedded in the output; None without one
    orientation: int  # the EXIF orientation that was applied to the pixels (1: none)


EXIF_ORIENTATION = 0x0112  # the EXIF/TIFF tag: how a viewer must turn the stored pixels (1..8)


def orient(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """The (..., H, W) pixels as a viewer shows them under an EXIF orientation (1..8; 1 is as stored). The
    values name where row 0 and column 0 of the stored image are meant to be: 2 mirrors left-right, 3 turns
    180 degrees, 4 mirrors top-bottom, 5 transposes, 6 turns 90 degrees clockwise, 7 transverses (a transpose
    and a half turn), 8 turns 90 degrees counter-clockwise."""
    if orientation in (5, 6, 7, 8):
        img = img.transpose(-1, -2)  # 5 is the transpose; 6, 7 and 8 are it followed by a flip
    if orientation in (2, 3, 6, 7):
        img = img.flip(-1)
    if orientation in (3, 4, 7, 8):
        img = img.flip(-2)
    return img.contiguous()


def _orientation(path: Path, pil: Image.Image) -> int:
    if pil.format == "PNG":  # PIL reads a PNG's eXIf chunk only when it precedes the image data
        with open(path, "rb") as f:
            payload = _png_chunks(f, whole=True).get(b"eXIf")
        exif = Image.Exif()
        if payload:
            exif.load(payload)
    else:
        exif = pil.getexif()
    value = exif.get(EXIF_ORIENTATION, 1)
    if value not in range(1, 9):
        log.warning("%s: EXIF orientation %r is not one of 1..8; the pixels are used as stored", path, value)
        return 1
    return int(value)


def _rgb_profile(path: Path, profile: bytes | None) -> bytes | None:
    """The ICC profile if it describes RGB data (bytes 16..19 of its header name the colour space): a gray or
    CMYK profile does not describe the RGB pixels written, so it is not kept (logged)."""
    if not profile:
        return None
    space = profile[16:20]
    if space != b"RGB ":
        log.warning("%s: its ICC profile describes %s data, not the RGB output; not kept", path,
                    space.decode("latin-1").strip() or "unknown")
        return None
    return profile


def load_oriented_image(path: str | Path, *, max_pixels: int | None = None) -> tuple[torch.Tensor, ImageMeta]:
    """An image to upscale, as a viewer shows it: float32 RGB (3, H, W) in [0, 1] with its EXIF orientation
    applied, and what its output keeps (`ImageMeta`: 16-bit depth, the ICC profile). Decoding and refusals are
    `load_image_u8`'s. The colour values are not converted: they stay in the input's colour space, which the
    kept profile names."""
    path = Path(path)
    img = load_image_u8(path, max_pixels=max_pixels)
    try:
        with _open_pil(path, max_pixels) as pil:
            orientation = _orientation(path, pil)
            profile = _rgb_profile(path, pil.info.get("icc_profile"))
            turned = pil.format == "TIFF"  # PIL applies a TIFF's orientation tag itself when it decodes the pixels
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(f"{path}: unreadable metadata ({err})") from None
    if orientation != 1:
        log.info("%s: EXIF orientation %d applied", path, orientation)
    meta = ImageMeta(bits=8 if img.dtype == torch.uint8 else 16, icc_profile=profile, orientation=orientation)
    return to_float(img if turned else orient(img, orientation)), meta


def to_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 -> /255; int32 holding 16-bit data -> /65535."""
    if img.dtype == torch.uint8:
        return img.float() / 255.0
    return img.float() / 65535.0


def load_image(path: str | Path, *, max_pixels: int | None = None) -> torch.Tensor:
    """Read an image as float32 RGB (3, H, W) in [0, 1] (see `load_image_u8`)."""
    return to_float(load_image_u8(path, max_pixels=max_pixels))


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (returned as float in [0, 1])."""
    return img.clamp(0, 1).mul(255).round().div(255)


# Formats written, by suffix; PGM is not among them (gray only). Which of them keep an ICC profile, in PIL.
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
                 ".webp": "WEBP", ".ppm": "PPM"}
OUTPUT_SUFFIXES = tuple(_SAVE_FORMATS)
_ICC_FORMATS = {"PNG", "JPEG", "TIFF", "WEBP"}


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_png16(img: torch.Tensor, *, icc_profile: bytes | None = None) -> bytes:
    """A (3, H, W) integer tensor of 16-bit values (0..65535) as a 16-bit RGB PNG, with the profile as its iCCP
    chunk. PIL cannot write 16-bit RGB: IHDR, iCCP, one IDAT (filter 0 on every row), IEND."""
    arr = img.permute(1, 2, 0).cpu().numpy().astype(">u2")  # (H, W, 3) big-endian, as PNG stores samples
    h, w = arr.shape[:2]
    rows = np.concatenate([np.zeros((h, 1), dtype=np.uint8), arr.reshape(h, -1).view(np.uint8)], axis=1)
    out = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    if icc_profile:
        out += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile))  # name, NUL, method 0 (zlib)
    return out + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _png_chunk(b"IEND", b"")


def save_image(img: torch.Tensor, path: str | Path, *, bits: int = 8, icc_profile: bytes | None = None,
               png_level: int = 6) -> None:
    """Write a (3, H, W) or (1, 3, H, W) float image in [0, 1], in the format its suffix names (`OUTPUT_SUFFIXES`).

    `bits=16` writes a 16-bit PNG (other formats hold 8 bits per sample here: they are written with 8, logged);
    `icc_profile` is embedded in PNG, JPEG, TIFF and WebP files (BMP and PPM cannot hold one: logged). The file
    is written atomically (`srgan.files.atomic_write`): a full disk or a read-only folder raises
    `ImageWriteError` naming the file, and leaves the previous file there whole. `png_level` is the 8-bit PNG's zlib
    level (6, PIL's default; 1 writes about three times faster, for files about a third larger: the same pixels)."""
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot write {path.suffix or 'suffix-less'!r} images; use one of "
                         f"{', '.join(OUTPUT_SUFFIXES)}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if bits == 16 and fmt != "PNG":
        log.warning("%s: written with 8 bits per sample (the input has 16; only PNG output keeps 16)", path)
        bits = 8
    if icc_profile and fmt not in _ICC_FORMATS:
        log.warning("%s: the input's ICC profile is not kept (%s files cannot hold one)", path, fmt)
        icc_profile = None
    if img.dim() == 4:
        img = img[0]
    img = img.detach().clamp(0, 1).cpu()
    if bits == 16:
        data = encode_png16(img.mul(65535).round().to(torch.int32), icc_profile=icc_profile)
    else:
        buffer = io.BytesIO()  # encoded in memory, so that only the file write can meet a full disk
        pil = Image.fromarray(img.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        options = {"icc_profile": icc_profile} if icc_profile else {}
        if fmt == "PNG":
            options["compress_level"] = png_level
        pil.save(buffer, format=fmt, **options)
        data = buffer.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ImageWriteError(f"{path}: could not be written (its folder: {err.strerror or err})") from err
    atomic_write(path, lambda tmp: tmp.write_bytes(data), error=ImageWriteError)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def modcrop(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so H and W are multiples of `scale` (the top-left corner is kept)."""
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


def image_size(path: Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(H, W) from the file header alone (no full decode); an image over `pixel_limit(max_pixels)` or of several
    frames is an `ImageError`, as it would be when decoded."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(33)
            if head[:8] == _PNG_SIGNATURE:
                w, h, _colour = _png_header(head, path)
                _check_pixels(path, w, h, max_pixels)
                _check_apng(path, _png_chunks(f))
                return h, w
    except OSError as err:
        raise ImageError(f"{path}: cannot read ({err.strerror or err})") from None
    with _open_pil(path, max_pixels) as pil:
        w, h = pil.size
    return h, w


