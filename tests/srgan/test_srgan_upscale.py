"""Tiled inference equals untiled inference, with model inputs bounded by the tile, and its CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from srgan.data import load_image, save_image
from srgan.generator import build_generator
from srgan.upscale import main, upscale
from srgan.versions import preset


def _tiny(preset_name: str, scale: int) -> nn.Module:
    cfg = preset(preset_name, scale=scale)
    torch.manual_seed(0)
    net = build_generator(cfg.generator, scale=scale)
    for m in net.modules():  # non-trivial BatchNorm statistics, so eval-mode BN is really exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("preset_name,scale", [("v3-tiny", 4), ("v3-tiny", 3), ("esrgan-tiny", 2)])
def test_tiled_equals_untiled(preset_name: str, scale: int) -> None:
    net = _tiny(preset_name, scale)
    lq = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    whole = upscale(net, lq, scale)
    tiled = upscale(net, lq, scale, tile=16, overlap=16)  # overlap >= receptive radius (~12 LR px)
    assert tiled.shape == whole.shape == (1, 3, 37 * scale, 45 * scale)
    assert (tiled - whole).abs().max().item() < 1e-5
    assert tiled.min() >= 0 and tiled.max() <= 1


def test_too_small_overlap_differs() -> None:
    """The equality above is not vacuous: without context the tile seams show."""
    net = _tiny("v3-tiny", 2)
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert (upscale(net, lq, 2, tile=16, overlap=0) - upscale(net, lq, 2)).abs().max().item() > 1e-3


class _Recorder(nn.Module):
    """Wraps a model and records the largest input it was given (in pixels)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.largest = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.largest = max(self.largest, x.shape[-2] * x.shape[-1])
        return self.net(x)


def test_model_input_bounded_by_tile_not_image() -> None:
    """Peak memory = the output + one tile's activations: the model never sees more than tile + 2 overlap px
    a side, whatever the image size (activation memory is proportional to the model's input)."""
    tile, overlap = 16, 8
    for side in (48, 80):
        rec = _Recorder(_tiny("v3-tiny", 2))
        sr = upscale(rec, torch.rand(1, 3, side, side), 2, tile=tile, overlap=overlap)
        assert sr.shape == (1, 3, 2 * side, 2 * side)
        assert rec.largest == (tile + 2 * overlap) ** 2


def test_output_preallocated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles are written into one preallocated output (no list of tiles concatenated at the end)."""
    net = _tiny("esrgan-tiny", 2)
    calls = []
    real_empty = torch.empty

    def spy(*args, **kwargs):
        calls.append(tuple(args))
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", spy)
    upscale(net, torch.rand(1, 3, 30, 30), 2, tile=10, overlap=4)
    assert calls == [(1, 3, 60, 60)]


def test_cli_file_and_folder(tmp_path: Path, make_checkpoint) -> None:
    ckpt = make_checkpoint(scale=2)
    folder = tmp_path / "in"
    for i in range(2):
        save_image(torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(i)), folder / f"im{i}.png")
    assert main([str(folder), str(tmp_path / "out"), "--checkpoint", str(ckpt), "--tile", "8"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["im0.png", "im1.png"]
    assert load_image(tmp_path / "out/im0.png").shape == (3, 40, 48)
    assert main([str(folder / "im1.png"), str(tmp_path / "one.png"), "--checkpoint", str(ckpt)]) == 0
    assert load_image(tmp_path / "one.png").shape == (3, 40, 48)
    assert main([str(tmp_path / "nope.png"), str(tmp_path / "x.png"), "--checkpoint", str(ckpt)]) == 2
