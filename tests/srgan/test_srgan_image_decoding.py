"""Image decoding (issue 9.2, 9.3): every PNG colour type and bit depth reads as its RGB image, palettes through
their palette, and a decompression bomb is refused from its header before anything is decoded.

The PNGs are written here by a small encoder of the PNG format (signature, IHDR, PLTE, tRNS, one IDAT), so
every colour type and depth can be built, and the expected pixels come from the arrays written, not from a
decoder. PIL's conversion to RGB is checked as a second, independent reader.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from srgan import images
from srgan.data import scan_training_images
from srgan.images import ImageError, image_size, load_image, load_image_u8, pixel_limit

# ------------------------------------------------------------------------------------------ a PNG encoder


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(samples: np.ndarray, colour: int, depth: int, *, plte: np.ndarray | None = None,
         trns: bytes | None = None) -> bytes:
    """A PNG of `samples` (H, W, C): sample values (palette indices for colour type 3), filter 0 on every row."""
    h, w, c = samples.shape
    flat = samples.reshape(h, w * c).astype(np.uint32)
    if depth < 8:  # pack `depth`-bit samples most significant first; rows pad to a whole byte
        bits = ((flat[..., None] >> np.arange(depth - 1, -1, -1)) & 1).astype(np.uint8)
        rows = np.packbits(bits.reshape(h, -1), axis=1)
    elif depth == 8:
        rows = flat.astype(np.uint8)
    else:
        rows = flat.astype(">u2").view(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if plte is not None:
        out += _chunk(b"PLTE", plte.astype(np.uint8).tobytes())
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    return out + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
NAMES = {0: "gray", 2: "rgb", 3: "palette", 4: "gray+alpha", 6: "rgba"}
CASES = [(0, d, False) for d in (1, 2, 4, 8, 16)] + [(0, 8, True), (0, 16, True)] \
    + [(2, d, t) for d in (8, 16) for t in (False, True)] \
    + [(3, d, t) for d in (1, 2, 4, 8) for t in (False, True)] \
    + [(c, d, False) for c in (4, 6) for d in (8, 16)]


def _case(colour: int, depth: int, trns: bool, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """A 5x7 PNG of the given type and its expected (H, W, 3) RGB samples at the file's depth."""
    rng = np.random.default_rng(seed + 100 * colour + depth)
    h, w = 5, 7
    if colour == 3:
        n = 2**depth
        plte = rng.integers(0, 256, (n, 3))
        idx = rng.integers(0, n, (h, w, 1))
        alpha = bytes(rng.integers(0, 256, max(1, n // 2), dtype=np.uint8)) if trns else None  # a partial tRNS
        return _png(idx, 3, depth, plte=plte, trns=alpha), plte[idx[..., 0]]
    samples = rng.integers(0, 2**depth, (h, w, CHANNELS[colour]))
    key = None
    if trns:  # a colour key: one stored colour marked fully transparent (16-bit values in the chunk)
        key = struct.pack(">" + "H" * CHANNELS[colour], *samples[0, 0].tolist())
    colour_samples = samples[..., :3] if colour in (2, 6) else np.repeat(samples[..., :1], 3, axis=-1)
    expected = colour_samples * 255 // (2**depth - 1) if depth < 8 else colour_samples  # PNG spec: scale to 8 bits
    return _png(samples, colour, depth, trns=key), expected


# -------------------------------------------------------------------------------- every PNG colour type


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")  # PIL's advice, for the reference read
@pytest.mark.parametrize("colour,depth,trns", CASES,
                         ids=[f"{NAMES[c]}-{d}bit{'-tRNS' if t else ''}" for c, d, t in CASES])
def test_every_png_type_reads_as_its_rgb_image(tmp_path: Path, colour: int, depth: int, trns: bool) -> None:
    raw, expected = _case(colour, depth, trns)
    path = tmp_path / "img.png"
    path.write_bytes(raw)
    img = load_image_u8(path)
    assert img.shape == (3, 5, 7)
    assert img.dtype == (torch.int32 if depth == 16 else torch.uint8)  # 16-bit kept at full depth
    got = img.permute(1, 2, 0).numpy().astype(np.int64)
    np.testing.assert_array_equal(got, expected)
    full = 65535 if depth == 16 else 255
    torch.testing.assert_close(load_image(path), torch.from_numpy(expected / full).permute(2, 0, 1).float())
    # PIL, an independent reader: its RGB conversion keeps 8-bit samples and the high byte of 16-bit colour;
    # 16-bit gray it reads as 16-bit integers (its conversion to RGB clips them, so compare the integers)
    with Image.open(io.BytesIO(raw)) as pil:
        if depth == 16 and colour == 0:
            np.testing.assert_array_equal(got[..., 0], np.asarray(pil, dtype=np.int64))
        else:
            reference = np.asarray(pil.convert("RGB"), dtype=np.int64)
            np.testing.assert_array_equal(got >> 8 if depth == 16 else got, reference)


def test_pil_written_palettes_read_through_the_palette(tmp_path: Path) -> None:
    """The issue's case: a red/blue palette image (8- and 2-bit, with and without transparency) read as all
    zeros. The expected pixels are the palette looked up by hand."""
    palette = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0], [9, 99, 199]])
    indices = np.array([[0, 1, 1, 0], [1, 0, 3, 2], [2, 2, 0, 1]], dtype=np.uint8)
    img = Image.fromarray(indices, "P")
    img.putpalette(palette.flatten().tolist())
    for name, kwargs in {"p8.png": {}, "p2.png": {"bits": 2}, "trns.png": {"transparency": 1},
                         "p.bmp": {}, "p.gif": {"transparency": 0}}.items():
        img.save(tmp_path / name, **kwargs)
        got = load_image_u8(tmp_path / name).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(got, palette[indices], err_msg=name)


@pytest.mark.parametrize("colour,depth,trns,dropped", [(6, 8, False, True), (4, 16, False, True),
                                                       (3, 4, True, True), (2, 8, True, True), (2, 8, False, False)])
def test_alpha_is_dropped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture, colour: int, depth: int,
                                     trns: bool, dropped: bool) -> None:
    """Decision: alpha is dropped (the stored colours are the image), never composited; a log line says so."""
    raw, _ = _case(colour, depth, trns)
    (tmp_path / "a.png").write_bytes(raw)
    with caplog.at_level(logging.INFO, logger="srgan.images"):
        load_image_u8(tmp_path / "a.png")
    assert ("alpha channel dropped" in caplog.text) == dropped


# ------------------------------------------------------------------------------------ decompression bombs


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit gray PNG of width x height (about 110 kB for 30000 x 30000, 2.7 GB once decoded as RGB)."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is rewritten to declare width x height."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, "JPEG")
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")  # segment: marker, length (2), precision (1), height (2), width (2)
    raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def _bmp_declaring(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "BMP")
    raw = bytearray(buf.getvalue())
    raw[18:26] = struct.pack("<ii", width, height)  # BITMAPINFOHEADER width, height
    return bytes(raw)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to decode pixels fails the test: the limit must act on the header alone."""

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(images, "decode_png", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("name,make", [("bomb.png", lambda: _bomb_png(30000, 30000)),
                                       ("bomb.jpg", lambda: _jpeg_declaring(30000, 30000)),
                                       ("big.jpg", lambda: _jpeg_declaring(12000, 10000)),
                                       ("big.bmp", lambda: _bmp_declaring(12000, 10000))])
def test_bombs_are_refused_from_the_header(tmp_path: Path, no_decoding: None, name: str, make) -> None:
    """30000x30000 (900 MP, past PIL's own check too) and 12000x10000 (120 MP: PIL only warns; our 100 MP
    limit refuses) in PNG, JPEG and BMP: a clear ImageError naming the file, for reading and for the size."""
    path = tmp_path / name
    path.write_bytes(make())
    for read in (load_image_u8, load_image, image_size):
        with pytest.raises(ImageError, match="refused before decoding") as err:
            read(path)
        assert str(err.value).startswith(str(path))


def test_the_limit_admits_div2k_and_8k(tmp_path: Path, no_decoding: None) -> None:
    assert pixel_limit() == 100_000_000
    for w, h in ((2040, 1404), (7680, 4320), (10000, 10000)):
        (tmp_path / f"{w}.png").write_bytes(_bomb_png(w, h)[:33])  # the header is all image_size reads
        assert image_size(tmp_path / f"{w}.png") == (h, w)


def test_the_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_png(np.zeros((40, 40, 3), dtype=np.uint8), 2, 8))  # 1600 px
    monkeypatch.setenv("ENHANCE_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match=r"a\.png: declares 40x40 px .*ENHANCE_MAX_PIXELS"):
        load_image_u8(path)
    assert load_image_u8(path, max_pixels=1600).shape == (3, 40, 40)  # the argument wins over the variable
    monkeypatch.setenv("ENHANCE_MAX_PIXELS", "1e4")
    assert load_image(path).shape == (3, 40, 40)
    monkeypatch.setenv("ENHANCE_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="ENHANCE_MAX_PIXELS='lots'"):
        load_image_u8(path)
    with pytest.raises(ValueError, match="max_pixels must be a positive"):
        load_image_u8(path, max_pixels=0)


@pytest.mark.parametrize("decode", [True, False])
def test_training_skips_a_bomb_with_its_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                               decode: bool) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    Image.fromarray(np.full((48, 48, 3), 128, dtype=np.uint8)).save(folder / "ok.png")
    (folder / "bomb.png").write_bytes(_bomb_png(30000, 30000))
    (folder / "bomb.jpg").write_bytes(_jpeg_declaring(30000, 30000))
    with caplog.at_level(logging.WARNING, logger="srgan.data"):
        images, skipped = scan_training_images([folder], min_size=24, decode=decode)
    assert [p.name for p, _ in images] == ["ok.png"]
    assert sorted(s.path.name for s in skipped) == ["bomb.jpg", "bomb.png"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["bomb.png"].startswith("declares 30000x30000 px (900.0 MP), over the decode limit of 100 MP")
    assert "refused before decoding" in reasons["bomb.jpg"]
    assert "skipping" in caplog.text and "bomb.png" in caplog.text
