"""`python -m srgan.upscale` on large images (issue 27.7): a 6 MP input at x4 died with a raw allocator traceback,
because the CLI ran every image whole and never looked at the output's size. Now it tiles above `--tile` (512 LR
px by default, as `benchmarks.evaluate`), refuses an output over the pixel limit, and names the image and `--tile`
when memory runs out.

The model is a stand-in whose memory "runs out" for inputs wider than a threshold (the way torch reports it: an
`OutOfMemoryError`), so the tests need no real memory pressure; its output is nearest-neighbour upscaling, which
the test checks against numpy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from srgan import checkpoint
from srgan.images import MAX_PIXELS_ENV
from srgan.upscale import DEFAULT_TILE, main

SCALE = 2


class _Nearest(nn.Module):
    """x`SCALE` nearest-neighbour upscaling through a 1x1 conv (identity weights: the receptive radius is the
    interpolation margin only), that fails like torch's allocator for inputs wider than `max_side` LR px."""

    def __init__(self, max_side: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
        self.max_side, self.widths = max_side, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.widths.append(x.shape[-1])
        if max(x.shape[-2:]) > self.max_side:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.numel() * 4 * 64} bytes")
        return F.interpolate(self.conv(x), scale_factor=SCALE, mode="nearest")


@pytest.fixture
def model(monkeypatch) -> _Nearest:
    net = _Nearest(max_side=DEFAULT_TILE + 64)

    def load_generator(_path, *, device):
        return net.to(device), SimpleNamespace(scale=SCALE)

    monkeypatch.setattr(checkpoint, "load_generator", load_generator)
    return net


def _photo(path: Path, h: int, w: int) -> np.ndarray:
    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def test_a_wide_image_is_tiled_by_default(tmp_path: Path, model: _Nearest) -> None:
    """An image wider than the default tile (and than what the model's memory holds whole) is upscaled in tiles, and
    the result is the model's untiled result: nearest-neighbour upscaling of every pixel."""
    pixels = _photo(tmp_path / "wide.png", 12, DEFAULT_TILE + 200)
    assert main([str(tmp_path / "wide.png"), str(tmp_path / "out.png"), "--checkpoint", "unused",
                 "--device", "cpu"]) == 0
    probe, *tiles = model.widths  # receptive_radius's probe, then the tiles: 512 + 2 px of context, 200 + 2
    assert probe == 16 and tiles == [DEFAULT_TILE + 2, 200 + 2]
    with Image.open(tmp_path / "out.png") as out:
        got = np.asarray(out.convert("RGB"))
    assert np.array_equal(got, pixels.repeat(SCALE, axis=0).repeat(SCALE, axis=1))


def test_running_out_of_memory_names_the_image_and_tile(tmp_path: Path, model: _Nearest, capsys) -> None:
    """`--tile 0` (the whole image at once) on an image the model's memory cannot hold: exit 1, one line naming the
    image and a smaller --tile, no traceback, nothing written."""
    _photo(tmp_path / "big.png", 12, DEFAULT_TILE + 200)
    code = main([str(tmp_path / "big.png"), str(tmp_path / "out.png"), "--checkpoint", "unused", "--device", "cpu",
                 "--tile", "0"])
    err = capsys.readouterr().err
    assert code == 1 and str(tmp_path / "big.png") in err and "out of memory" in err and "--tile" in err
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()
    # a bug that is not about memory is not dressed up as one
    model.forward = lambda x: (_ for _ in ()).throw(RuntimeError("shape mismatch in conv"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main([str(tmp_path / "big.png"), str(tmp_path / "out.png"), "--checkpoint", "unused", "--device", "cpu"])


def test_an_output_over_the_pixel_limit_is_refused_before_the_model_runs(tmp_path: Path, model: _Nearest, capsys,
                                                                        monkeypatch) -> None:
    """The output's size is checked against the limit the project's readers decode (here lowered to 10,000 px):
    a 60x60 input reads, but its 120x120 output would not, so it is refused naming both sizes, before any model
    call, with nothing written."""
    monkeypatch.setenv(MAX_PIXELS_ENV, "10000")
    _photo(tmp_path / "in.png", 60, 60)
    code = main([str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--checkpoint", "unused", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "in.png") in err and "120x120 px" in err and MAX_PIXELS_ENV in err
    assert model.widths == [16] and not (tmp_path / "out.png").exists()  # receptive_radius's probe, not the image
    _photo(tmp_path / "small.png", 40, 40)  # 80x80 = 6,400 px: fine
    assert main([str(tmp_path / "small.png"), str(tmp_path / "out.png"), "--checkpoint", "unused",
                 "--device", "cpu"]) == 0
