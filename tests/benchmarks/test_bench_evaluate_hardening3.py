"""Third hostile pass (issue 27) on `evaluate --images`: two HR files that differ only in extension are an error
(27.6), an SR identical to its HR is warned about and counted (27.9), and EXIF orientation is applied as
`srgan.upscale` applies it (27.9). Small synthetic images, PSNR only: no model, no benchmark set."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.evaluate import main
from benchmarks.scoring.images import ImagesError, score_images
from results import schema

SCALE = 2


def _pixels(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(pixels: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def _psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """The papers' PSNR, independently: BT.601 Y in 16..235 of 8-bit RGB, `crop` px shaved, float64."""
    def y(img: np.ndarray) -> np.ndarray:
        rgb = img.astype(np.float64) / 255.0
        return (16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2])[crop:-crop, crop:-crop]

    mse = np.mean((y(sr) - y(hr)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def test_two_hr_files_differing_only_in_extension_are_an_error(tmp_path: Path, capsys) -> None:
    """27.6: baby.bmp and a black baby.png in --hr: one of them was taken silently (5.56 dB for baby, rc 0)."""
    hr, sr = tmp_path / "hr", tmp_path / "sr"
    _save(_pixels(0), hr / "baby.bmp")
    _save(np.zeros_like(_pixels(0)), hr / "baby.png")
    _save(_pixels(1), hr / "bird.png")
    _save(_pixels(0), sr / "baby.png")
    _save(_pixels(1), sr / "bird.png")
    with pytest.raises(ImagesError, match="a second HR image named 'baby'") as err:
        score_images(sr, scale=SCALE, hr=hr, metrics=("psnr",), device="cpu", progress=False)
    assert str(hr / "baby.bmp") in str(err.value) and str(hr / "baby.png") in str(err.value)
    out = tmp_path / "out"
    assert main(["--images", str(sr), "--hr", str(hr), "--scale", str(SCALE), "--metrics", "psnr",
                 "--device", "cpu", "--out", str(out)]) == 2
    assert "a second HR image named 'baby'" in capsys.readouterr().err
    assert not (out / schema.SCORES_FILE).exists()


def test_an_sr_identical_to_its_hr_is_warned_and_counted(tmp_path: Path, caplog) -> None:
    """27.9: an SR identical to its HR scored psnr inf, the set mean was inf, rc 0, not a word. It still is inf (the
    true value), but a warning names the image and the summary's psnr_infinite counts such images per set."""
    hr, sr = tmp_path / "hr", tmp_path / "sr"
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        _save(_pixels(seed), hr / f"{name}.png")
    _save(_pixels(0), sr / "a.png")  # identical
    _save(_pixels(1), sr / "b.png")  # identical
    noisy = _pixels(2).astype(np.int16) + np.random.default_rng(3).integers(-3, 4, (24, 32, 3))
    _save(noisy.clip(0, 255).astype(np.uint8), sr / "c.png")
    with caplog.at_level(logging.WARNING, logger="benchmarks.scoring.evaluate"):
        scores, summary = score_images(sr, scale=SCALE, hr=hr, metrics=("psnr",), device="cpu", progress=False)
    psnr = dict(zip(scores["image"].to_list(), scores["psnr"].to_list(), strict=True))
    assert psnr["a"] == psnr["b"] == math.inf
    assert psnr["c"] == pytest.approx(_psnr_y(noisy.clip(0, 255).astype(np.uint8), _pixels(2), SCALE), abs=1e-9)
    row = summary.row(0, named=True)
    assert row["psnr"] == math.inf and row["psnr_infinite"] == 2 and row["num_images"] == 3
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 image(s) identical to their HR" in m and "hr/a" in m and "hr/b" in m for m in warned)
    # without such images nothing is said and the summary is as before
    caplog.clear()
    for name in ("a", "b"):
        (sr / f"{name}.png").unlink()
        (hr / f"{name}.png").unlink()
    with caplog.at_level(logging.WARNING, logger="benchmarks.scoring.evaluate"):
        _, clean = score_images(sr, scale=SCALE, hr=hr, metrics=("psnr",), device="cpu", progress=False)
    assert "psnr_infinite" not in clean.columns and math.isfinite(clean["psnr"][0])
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("orientation", [3, 6])
def test_exif_orientation_is_applied_as_upscale_applies_it(tmp_path: Path, orientation: int) -> None:
    """27.9: `upscale` applies EXIF orientation and `evaluate` did not. An HR photo stored sideways with an EXIF
    orientation, and the SR of its upright view (what upscaling it gives): both are read as a viewer shows them,
    so they match (before: a size mismatch for a quarter turn, a silent comparison with the upside-down HR for a
    half turn)."""
    from PIL import ImageOps

    stored = _pixels(5)
    exif = Image.Exif()
    exif[0x0112] = orientation
    hr = _save(stored, tmp_path / "hr" / "photo.png", exif=exif.tobytes())
    with Image.open(hr) as pil:
        upright = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))  # PIL's own reading, as the reference
    assert upright.shape != stored.shape or not np.array_equal(upright, stored)
    _save(upright, tmp_path / "sr" / "photo.png")  # no EXIF: the pixels are upright
    scores, _ = score_images(tmp_path / "sr", scale=SCALE, hr=tmp_path / "hr", metrics=("psnr",), device="cpu",
                             progress=False)
    assert scores["psnr"].to_list() == [math.inf]
