"""Tiled inference equals untiled inference, with model inputs bounded by the tile, and its CLI.

The default overlap is the generator's receptive radius (`receptive_radius`), derived from its convolutions.
It is checked against an independent measurement (perturb one input pixel in float64, see which outputs
move), and tiled output with it equals untiled output for every preset.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from srgan.config import GeneratorConfig
from srgan.generator import build_generator
from srgan.images import load_image, save_image
from srgan.upscale import main, receptive_radius, upscale
from srgan.versions import PRESETS, preset


def _net(preset_name: str, scale: int, **generator: object) -> nn.Module:
    cfg = preset(preset_name, scale=scale)
    torch.manual_seed(0)
    net = build_generator(GeneratorConfig(**{**cfg.generator.__dict__, **generator}), scale=scale)
    for m in net.modules():  # non-trivial BatchNorm statistics, so eval-mode BN is really exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _tiny(preset_name: str, scale: int) -> nn.Module:
    return _net(preset_name, scale)


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


# ---------------------------------------------------------------------------- the derived default overlap


def _measured_radius(net: nn.Module, scale: int, size: int) -> int:
    """The receptive radius measured, not derived: the gradient of the HR pixels of the centre LR pixel with
    respect to the input, in float64, is non-zero exactly where they depend on it (LeakyReLU and PReLU never
    have a zero slope). Gradients, not output differences: with ESRGAN's 0.1-scaled initialisation a far
    pixel's influence is far below the rounding of the output values, but not below float64's range."""
    net = net.double()
    lq = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lq.requires_grad_(True)
    c = size // 2
    net(lq)[..., c * scale : (c + 1) * scale, c * scale : (c + 1) * scale].sum().backward()
    net.float()
    rows, cols = torch.nonzero(lq.grad.abs().amax(dim=(0, 1)) > 0, as_tuple=True)
    return int(torch.cat([(rows - c).abs(), (cols - c).abs()]).max())


@pytest.mark.parametrize("preset_name,scale,generator", [
    ("v1-tiny", 4, {}), ("v3-tiny", 3, {}), ("esrgan-tiny", 4, {}), ("esrgan-tiny", 2, {}),
    ("esrgan", 4, {"num_blocks": 2, "num_features": 8, "growth": 4}),  # 2 RRDBs: 30 chained dense convs
    ("v3", 2, {"num_blocks": 4, "num_features": 16}),
])
def test_receptive_radius_bounds_the_measured_one_tightly(preset_name: str, scale: int, generator: dict) -> None:
    net = _net(preset_name, scale, **generator)
    derived = receptive_radius(net)
    measured = _measured_radius(net, scale, 2 * derived + 5)
    # never less (tiles would differ); at most a few pixels more (upsampled convs round up, + bicubic margin)
    assert measured <= derived <= measured + 4, (measured, derived)


def test_receptive_radius_of_the_full_generators() -> None:
    """By hand: SRResNet x4 = head 9x9 (4) + 16 blocks x 2 convs + body conv + 1 LR conv and 1 x2 conv before
    the shuffles + tail 9x9 at x4 (ceil 4/4) = 40; ESRGAN x4 = conv_first + 23 RRDBs x 3 dense blocks x 5
    convs + conv_body = 347 at LR, + conv_up at x2 and x4, conv_hr, conv_last (1 each, rounded up) = 351;
    both + 2 for interpolation (a bicubic skip)."""
    assert receptive_radius(_net("v3", 4)) == 40 + 2
    assert receptive_radius(_net("esrgan", 4)) == 351 + 2


@pytest.mark.parametrize("preset_name", ["v1-tiny", "v3-tiny", "esrgan-tiny"])  # v2, v3, ragan share G
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_default_overlap_makes_tiles_exact_for_every_tiny_preset(preset_name: str, scale: int) -> None:
    """Tall and wide strips longer than 3 x radius + 2 tiles: the middle tiles' context lies strictly inside
    the image, so they really see only part of it."""
    assert {preset(name).generator for name in PRESETS} == {preset(n).generator for n in ("v1", "v3", "esrgan")}
    net = _tiny(preset_name, scale)
    radius = receptive_radius(net)
    tile = radius + 1
    for h, w in ((3 * radius + 5, tile), (tile, 3 * radius + 5)):
        lq = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(4))
        tiled = upscale(net, lq, scale, tile=tile)  # overlap=None: derived
        assert (tiled - upscale(net, lq, scale)).abs().max().item() < 1e-5


@pytest.mark.parametrize("preset_name,side", [("esrgan", 20), ("v3", 24)])
def test_default_overlap_full_generators(preset_name: str, side: int) -> None:
    """Full ESRGAN (23 RRDBs) and full SRResNet, random weights, small tiles: tiled equals untiled. (Their radii,
    353 and 42 LR px, exceed these images, so each tile sees the whole image: this checks the bookkeeping on the
    real networks; the exactness of the radius is the test above.)"""
    net = _net(preset_name, 4)
    lq = torch.rand(1, 3, side, side + 3, generator=torch.Generator().manual_seed(5))
    whole = upscale(net, lq, 4)
    tiled = upscale(net, lq, 4, tile=12)
    assert (tiled - whole).abs().max().item() < 1e-5
    assert (upscale(net, lq, 4, tile=12, overlap=2) - whole).abs().max().item() > 1e-3


def test_receptive_radius_leaves_the_model_as_it_was() -> None:
    net = _net("v3-tiny", 2).train()
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    receptive_radius(net)
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(bn.running_mean, before)  # the probe pass ran in eval mode


# --------------------------------------------------------------------------------------------- memory


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


# ------------------------------------------------------------------------------------------------ CLI


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
