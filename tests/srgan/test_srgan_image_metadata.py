"""Image metadata on the way through `srgan.upscale` (issue 18.10), and image writes that fail (18.9).

- EXIF orientation is applied when an image is read for upscaling (`load_oriented_image`), checked against PIL's
  `ImageOps.exif_transpose` for all eight values, in PNG (eXIf before or after the image data) and JPEG; training
  and benchmark reads (`load_image_u8`) keep the stored pixel order.
- A 16-bit input gives a 16-bit PNG, read back by torchvision's decoder; the ICC profile is embedded again.
- A file of several frames (animated GIF, APNG, multi-page TIFF) is refused everywhere; an MPO is read as its
  primary picture.
- `save_image` writes atomically: a full disk leaves the previous file whole and raises `ImageWriteError`, an
  `OSError`, naming the file.
The images are built here with PIL (which writes EXIF, ICC profiles and animations) and, for 16-bit PNGs, with
the PNG encoder of test_srgan_image_decoding.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps
from test_srgan_image_decoding import _chunk, _png
from torchvision.io import ImageReadMode, decode_png

from srgan.checkpoint import load_generator
from srgan.data import scan_training_images
from srgan.images import (
    EXIF_ORIENTATION,
    ImageError,
    ImageWriteError,
    image_size,
    load_image_u8,
    load_oriented_image,
    save_image,
)
from srgan.upscale import main, upscale

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _pixels(h: int = 6, w: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


def _insert_before(png: bytes, kind: bytes, chunk: bytes) -> bytes:
    """`chunk` inserted before the first chunk of type `kind` (b"IDAT", b"IEND")."""
    pos = 8
    while png[pos + 4 : pos + 8] != kind:
        pos += struct.unpack(">I", png[pos : pos + 4])[0] + 12
    return png[:pos] + chunk + png[pos:]


def _as_u8(img: torch.Tensor) -> np.ndarray:
    return img.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_exif_orientation_is_applied_as_pil_applies_it(tmp_path: Path, orientation: int, fmt: str) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(_pixels()).save(path, format=fmt, exif=_exif(orientation), **({"lossless": True} if fmt == "WEBP"
                                                                                  else {}))
    with Image.open(path) as pil:
        expected = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))
    img, meta = load_oriented_image(path)
    assert meta.orientation == orientation and meta.bits == 8
    np.testing.assert_array_equal(_as_u8(img), expected)
    # the decision: training and benchmark reads keep the stored order (PIL turns a TIFF itself as it decodes)
    stored = expected if fmt == "TIFF" else np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(load_image_u8(path).permute(1, 2, 0).numpy(), stored)
    if fmt != "TIFF" and orientation in (5, 6, 7, 8):
        assert stored.shape == (6, 10, 3) and expected.shape == (10, 6, 3)


@pytest.mark.parametrize("orientation", [6, 3])
def test_png_exif_after_the_image_data_counts_too(tmp_path: Path, orientation: int) -> None:
    pixels = _pixels()
    exif_chunk = _chunk(b"eXIf", _exif(orientation).removeprefix(b"Exif\x00\x00"))
    path = tmp_path / "late.png"
    path.write_bytes(_insert_before(_png(pixels, 2, 8), b"IEND", exif_chunk))
    Image.fromarray(pixels).save(tmp_path / "early.png", exif=_exif(orientation))  # PIL writes eXIf before IDAT
    with Image.open(tmp_path / "early.png") as pil:
        expected = np.asarray(ImageOps.exif_transpose(pil))
    img, meta = load_oriented_image(path)
    assert meta.orientation == orientation
    np.testing.assert_array_equal(_as_u8(img), expected)


def test_an_invalid_orientation_is_logged_and_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "odd.jpg"
    Image.fromarray(_pixels()).save(path, exif=_exif(9), quality=95)
    with caplog.at_level(logging.WARNING):
        img, meta = load_oriented_image(path)
    assert meta.orientation == 1 and img.shape == (3, 6, 10)
    assert f"{path}: EXIF orientation 9 is not one of 1..8" in caplog.text


# ------------------------------------------------------------------------------------- the CLI, end to end


@pytest.fixture
def checkpoint(make_checkpoint) -> Path:
    return make_checkpoint(scale=2)


def _expected_sr(checkpoint: Path, img: torch.Tensor) -> torch.Tensor:
    net, cfg = load_generator(checkpoint)
    return upscale(net, img, cfg.scale)


def test_a_portrait_photo_comes_out_portrait(tmp_path: Path, checkpoint: Path) -> None:
    """Stored landscape (10 x 6) with orientation 6 (turn 90 degrees clockwise): shown, and upscaled, as 6 x 10."""
    path = tmp_path / "portrait.jpg"
    Image.fromarray(_pixels()).save(path, exif=_exif(6), quality=95)
    assert main([str(path), str(tmp_path / "sr.png"), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    with Image.open(tmp_path / "sr.png") as out:
        assert out.size == (12, 20)  # (width, height): portrait, x2
        assert EXIF_ORIENTATION not in out.getexif()  # the turn is in the pixels; nothing turns them again
        written = np.asarray(out)
    oriented, _ = load_oriented_image(path)
    np.testing.assert_array_equal(written, _as_u8(_expected_sr(checkpoint, oriented)))


def _png16(samples: np.ndarray, profile: bytes | None = None) -> bytes:
    png = _png(samples, 2, 16)
    if profile is None:
        return png
    return _insert_before(png, b"IDAT", _chunk(b"iCCP", b"test profile\x00\x00" + zlib.compress(profile)))


def test_16_bit_input_gives_a_16_bit_png_with_its_profile(tmp_path: Path, checkpoint: Path) -> None:
    samples = np.random.default_rng(1).integers(0, 65536, (6, 8, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(samples, SRGB))
    img, meta = load_oriented_image(path)
    assert meta.bits == 16 and meta.icc_profile == SRGB
    torch.testing.assert_close(img, torch.from_numpy(samples.astype(np.float32) / 65535).permute(2, 0, 1))
    out = tmp_path / "out"
    assert main([str(path), str(out), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    raw = (out / "deep.png").read_bytes()
    assert raw[24] == 16 and raw[25] == 2  # IHDR: 16 bits per sample, truecolour
    written = decode_png(torch.frombuffer(bytearray(raw), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    assert written.dtype == torch.uint16
    expected = _expected_sr(checkpoint, img).mul(65535).round().to(torch.int32)
    assert torch.equal(written.to(torch.int32), expected)
    assert len(torch.unique(written)) > 256  # really more than 8 bits of levels
    with Image.open(out / "deep.png") as pil:
        assert pil.info["icc_profile"] == SRGB


def test_a_16_bit_gray_tiff_gives_a_16_bit_png(tmp_path: Path, checkpoint: Path) -> None:
    samples = np.random.default_rng(3).integers(0, 65536, (6, 8), dtype=np.uint16)
    path = tmp_path / "gray16.tif"
    Image.fromarray(samples).save(path)
    with Image.open(path) as pil:
        assert pil.mode == "I;16"
    assert main([str(path), str(tmp_path / "o.png"), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    raw = (tmp_path / "o.png").read_bytes()
    written = decode_png(torch.frombuffer(bytearray(raw), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    gray = torch.from_numpy(samples.astype(np.float32) / 65535)[None].expand(3, -1, -1)
    assert raw[24] == 16 and torch.equal(written.to(torch.int32),
                                         _expected_sr(checkpoint, gray).mul(65535).round().to(torch.int32))


@pytest.mark.parametrize("suffix,kept", [(".png", True), (".jpg", True), (".tif", True), (".webp", True),
                                         (".bmp", False), (".ppm", False)])
def test_the_icc_profile_is_kept_where_the_format_holds_one(tmp_path: Path, checkpoint: Path, caplog,
                                                            suffix: str, kept: bool) -> None:
    path = tmp_path / "in.jpg"
    Image.fromarray(_pixels()).save(path, icc_profile=SRGB, quality=95)
    out = tmp_path / f"out{suffix}"
    with caplog.at_level(logging.WARNING):
        assert main([str(path), str(out), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    with Image.open(out) as pil:
        assert pil.info.get("icc_profile") == (SRGB if kept else None)
        assert pil.size == (20, 12)
    assert kept or f"{out}: the input's ICC profile is not kept ({'BMP' if suffix == '.bmp' else 'PPM'} files " \
                   "cannot hold one)" in caplog.text


def test_a_16_bit_input_written_as_jpeg_says_it_has_8_bits(tmp_path: Path, checkpoint: Path, caplog) -> None:
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(np.random.default_rng(2).integers(0, 65536, (6, 8, 3), dtype=np.uint16)))
    with caplog.at_level(logging.WARNING):
        assert main([str(path), str(tmp_path / "o.jpg"), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    assert "o.jpg: written with 8 bits per sample (the input has 16; only PNG output keeps 16)" in caplog.text


def test_a_profile_for_gray_data_is_not_put_on_rgb_output(tmp_path: Path, caplog) -> None:
    gray_profile = SRGB[:16] + b"GRAY" + SRGB[20:]  # the header's colour-space field is what is read
    path = tmp_path / "gray.png"
    Image.fromarray(_pixels()[..., 0]).save(path, icc_profile=gray_profile)
    with caplog.at_level(logging.WARNING):
        _, meta = load_oriented_image(path)
    assert meta.icc_profile is None
    assert f"{path}: its ICC profile describes GRAY data, not the RGB output" in caplog.text


# ------------------------------------------------------------------------------------------ frames


def _frames(n: int) -> list[Image.Image]:
    return [Image.fromarray(_pixels(seed=i)) for i in range(n)]


@pytest.mark.parametrize("name,kind", [("anim.gif", "an animated or multi-page GIF"),
                                       ("anim.png", "an animated PNG"),
                                       ("pages.tif", "an animated or multi-page TIFF"),
                                       ("anim.webp", "an animated or multi-page WEBP")])
def test_several_frames_are_refused_everywhere(tmp_path: Path, checkpoint: Path, capsys, name: str,
                                               kind: str) -> None:
    first, *rest = _frames(3)
    path = tmp_path / name
    first.save(path, save_all=True, append_images=rest, **({"lossless": True} if name.endswith("webp") else {}))
    message = f"{path}: holds 3 frames ({kind}); one image is read per file"
    for read in (load_image_u8, image_size, load_oriented_image):
        with pytest.raises(ImageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read(path)
    big = Image.fromarray(_pixels(40, 40))
    big.save(tmp_path / "fine.png")
    for decode in (True, False):  # a training folder skips it, named (.gif is not a training suffix at all)
        _, skipped = scan_training_images([tmp_path], min_size=8, decode=decode)
        reason = "not an image file (suffix '.gif')" if name.endswith(".gif") else f"holds 3 frames ({kind})"
        assert [(s.path.name, s.reason.split(";")[0]) for s in skipped] == [(name, reason)]
    code = main([str(path), str(tmp_path / "sr.png"), "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert code == 2 and message in capsys.readouterr().err and not (tmp_path / "sr.png").exists()


def test_one_frame_files_still_read(tmp_path: Path) -> None:
    pixels = _pixels()
    for name in ("one.gif", "one.tif"):
        Image.fromarray(pixels).save(tmp_path / name, save_all=True)
        assert load_image_u8(tmp_path / name).shape == (3, 6, 10)
    Image.fromarray(pixels).save(tmp_path / "one.png", save_all=True, append_images=[])  # an APNG of one frame
    np.testing.assert_array_equal(load_image_u8(tmp_path / "one.png").permute(1, 2, 0).numpy(), pixels)


def test_a_multi_picture_jpeg_reads_its_primary_picture(tmp_path: Path) -> None:
    """A camera's MPO holds the photo first, then previews or a depth map: the photo is read."""
    first, second = _frames(2)
    path = tmp_path / "camera.jpg"
    first.save(path, format="MPO", save_all=True, append_images=[second], quality=95)
    with Image.open(path) as pil:
        assert pil.format == "MPO" and pil.n_frames == 2
        expected = np.asarray(pil.convert("RGB"))  # frame 0
    np.testing.assert_array_equal(load_image_u8(path).permute(1, 2, 0).numpy(), expected)


# ---------------------------------------------------------------------------------------- failed writes


def _disk_full_after_half(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("bits", [8, 16])
def test_a_full_disk_keeps_the_previous_image_and_names_the_file(tmp_path: Path, monkeypatch, bits: int) -> None:
    path = tmp_path / "sr.png"
    save_image(torch.zeros(3, 4, 5), path)
    before = path.read_bytes()
    _disk_full_after_half(monkeypatch)
    with pytest.raises(ImageWriteError, match=rf"^{path}: could not be written \(No space left on device\); the "
                                              rf"previous sr\.png is unchanged$") as err:
        save_image(torch.rand(3, 4, 5), path, bits=bits)
    assert isinstance(err.value, OSError)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["sr.png"]
    assert load_image_u8(path).sum() == 0


def test_a_full_disk_while_upscaling_exits_1_and_keeps_what_was_written(tmp_path: Path, checkpoint: Path,
                                                                        monkeypatch, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(_pixels()).save(src / name)
    real = Path.write_bytes
    writes = []

    def second_write_fails(self: Path, data: bytes) -> int:
        writes.append(self)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", second_write_fails)
    code = main([str(src), str(tmp_path / "out"), "--checkpoint", str(checkpoint), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {tmp_path / 'out' / 'b.png'}: could not be written (No space left on device); no b.png was " \
           "written" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]  # whole, and nothing partial beside


def test_save_image_refuses_a_format_it_cannot_write(tmp_path: Path) -> None:
    for name in ("x.xyz", "x", "x.pgm"):
        with pytest.raises(ValueError, match=f"{tmp_path / name}: cannot write"):
            save_image(torch.zeros(3, 2, 2), tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_png_level_changes_the_bytes_not_the_pixels(tmp_path: Path) -> None:
    """Scoring keeps the report's images at zlib level 1 (`benchmarks.scoring.scorers.KEPT_PNG_LEVEL`): the same
    8-bit pixels as the default level, in a larger file."""
    img = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    save_image(img, tmp_path / "fast.png", png_level=1)
    save_image(img, tmp_path / "small.png")
    fast, small = (np.asarray(Image.open(tmp_path / name)) for name in ("fast.png", "small.png"))
    assert np.array_equal(fast, small) and fast.dtype == np.uint8
    assert np.array_equal(fast, img.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    assert (tmp_path / "fast.png").read_bytes() != (tmp_path / "small.png").read_bytes()
