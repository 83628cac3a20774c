"""Every preset's generator and discriminator: shapes at x2/x3/x4, sizes, output activation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from srgan_helpers import tiny

from srgan.discriminator import build_discriminator
from srgan.engine import GanEngine
from srgan.generator import RRDBNet, SRResNet, build_generator
from srgan.versions import PRESETS, preset


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_tiny_preset_maps_lq_to_scaled_sr(name: str, scale: int) -> None:
    cfg = tiny(name, scale=scale)
    engine = GanEngine(cfg, device="cpu")  # builds G, D, optimisers and (untrained) VGG where the preset uses it
    lq = torch.rand(2, 3, 7, 9)
    with torch.no_grad():
        sr = engine.net_g.eval()(lq)
    assert sr.shape == (2, 3, 7 * scale, 9 * scale)
    assert torch.isfinite(sr).all()
    p = cfg.data.patch_size
    logits = engine.net_d(torch.rand(2, 3, p, p))
    assert logits.shape == (2, 1)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_full_size_generator_builds_and_runs(name: str, scale: int) -> None:
    cfg = preset(name, scale=scale)
    net_g = build_generator(cfg.generator, scale=scale).eval()
    expected = RRDBNet if cfg.generator.arch == "rrdbnet" else SRResNet
    assert isinstance(net_g, expected)
    with torch.no_grad():
        sr = net_g(torch.rand(1, 3, 8, 8))
    assert sr.shape == (1, 3, 8 * scale, 8 * scale)
    assert build_discriminator(cfg.discriminator)(torch.rand(2, 3, 32, 32)).shape == (2, 1)


def test_esrgan_generator_has_the_published_parameter_count() -> None:
    # ESRGAN's RRDB_ESRGAN_x4.pth holds 16,697,987 parameters (23 RRDBs, 64 features, growth 32): the sum over
    # its 351 convs, which tests/srgan/test_srgan_official.py recounts from the published shapes.
    net_g = build_generator(preset("esrgan").generator, scale=4)
    assert n_params(net_g) == 16_697_987


def test_srresnet_x4_parameter_count() -> None:
    # SRResNet (16 blocks, 64 features, two x2 sub-pixel stages): 1.55 M, the size quoted for SRGAN's G.
    net_g = build_generator(preset("v3").generator, scale=4)
    assert abs(n_params(net_g) - 1.55e6) <= 0.01e6


def has_bn(net: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_esrgan_generator_has_no_batchnorm_and_v1_does() -> None:
    assert not has_bn(build_generator(preset("esrgan").generator, scale=4))
    assert has_bn(build_generator(preset("v1").generator, scale=4))


@pytest.mark.parametrize("name", ["esrgan", "esrgan-tiny"])
def test_esrgan_discriminator_keeps_batchnorm(name: str) -> None:
    """ESRGAN removes BN from G only; its VGG-128 D keeps it (BasicSR's VGGStyleDiscriminator): BN after every
    conv but the first, 5 stride-2 stages down to 4x4 at 128 px, 512 * 16 -> 100 -> 1."""
    cfg = preset(name)
    net_d = build_discriminator(cfg.discriminator)
    convs = [m for m in net_d.features if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net_d.features if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(convs) - 1 > 0
    if name == "esrgan":
        assert len(convs) == 10 and sum(c.stride[0] == 2 for c in convs) == 5
        assert net_d.features(torch.rand(1, 3, 128, 128)).shape == (1, 512, 4, 4)
        linears = [m for m in net_d.head if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(512 * 16, 100), (100, 1)]


def test_rdb_convs_start_from_kaiming_normal_scaled_by_0_1() -> None:
    """ESRGAN sec. 3.1 / BasicSR's ResidualDenseBlock: all five convs of every dense block start from Kaiming-normal
    weights (std sqrt(2 / fan_in)) times 0.1, biases zero. The other convs keep PyTorch's default init."""
    torch.manual_seed(0)
    net_g = build_generator(preset("esrgan").generator, scale=4)
    rdb_convs = [m for m in net_g.body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(rdb_convs) == 23 * 3 * 5
    for j in range(5):  # pool the 69 convs of each position: thousands of weights per estimate
        convs = rdb_convs[j::5]
        fan_in = convs[0].in_channels * 9
        weights = torch.cat([c.weight.flatten() for c in convs])
        expected = 0.1 * (2 / fan_in) ** 0.5
        assert abs(weights.std().item() / expected - 1) < 0.02, (j, weights.std().item(), expected)
        assert abs(weights.mean().item()) < 0.02 * expected
        assert all(torch.count_nonzero(c.bias) == 0 for c in convs)
    # PyTorch's default (kaiming_uniform with a = sqrt(5)) gives std 1 / sqrt(3 * fan_in): ~5.8x larger
    default = net_g.conv_body.weight
    assert abs(default.std().item() * (3 * net_g.conv_body.in_channels * 9) ** 0.5 - 1) < 0.05


@pytest.mark.parametrize("skip", ["none", "bicubic"])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_output_head(name: str, skip: str) -> None:
    """The output is the last conv's output through the version's head, plus the bicubic skip when on: a sigmoid
    for v1, nothing (linear) for the others. Checked against the last conv's own output, so a linear head cannot
    pass thanks to the skip, nor a sigmoid hide behind one."""
    cfg = preset(f"{name}-tiny")
    if cfg.generator.output == "sigmoid" and skip == "bicubic":
        pytest.skip("a bounded output takes no skip")
    net_g = build_generator(replace(cfg.generator, skip=skip), scale=4).eval()
    last = net_g.tail if isinstance(net_g, SRResNet) else net_g.conv_last
    seen = {}
    last.register_forward_hook(lambda _m, _i, out: seen.update(out=out))
    lq = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 5  # far outside [0, 1]
    with torch.no_grad():
        sr = net_g(lq)
    head = seen["out"]
    if skip == "bicubic":
        head = head + F.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False)
    expected = torch.sigmoid(head) if name == "v1" else head
    assert cfg.generator.output == ("sigmoid" if name == "v1" else "linear")
    torch.testing.assert_close(sr, expected, rtol=0, atol=1e-6)
    assert bool(((sr >= 0) & (sr <= 1)).all()) == (name == "v1")  # the input drives a linear head out of range
