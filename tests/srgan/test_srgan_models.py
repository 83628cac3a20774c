"""Every preset's generator and discriminator: shapes at x2/x3/x4, sizes, output activation."""

from __future__ import annotations

import pytest
import torch
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


def test_esrgan_generator_has_16_7_million_parameters() -> None:
    # ESRGAN's RRDB_ESRGAN_x4 has 16,697,987 parameters (23 RRDBs, 64 features, growth 32).
    net_g = build_generator(preset("esrgan").generator, scale=4)
    assert abs(n_params(net_g) - 16.7e6) <= 0.1e6


def test_srresnet_x4_parameter_count() -> None:
    # SRResNet (16 blocks, 64 features, two x2 sub-pixel stages): 1.55 M, the size quoted for SRGAN's G.
    net_g = build_generator(preset("v3").generator, scale=4)
    assert abs(n_params(net_g) - 1.55e6) <= 0.01e6


def test_esrgan_generator_has_no_batchnorm_and_v1_does() -> None:
    def has_bn(net: torch.nn.Module) -> bool:
        return any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())

    assert not has_bn(build_generator(preset("esrgan").generator, scale=4))
    assert not has_bn(build_discriminator(preset("esrgan").discriminator))
    assert has_bn(build_generator(preset("v1").generator, scale=4))


def test_v1_output_is_bounded_and_v2_is_linear() -> None:
    torch.manual_seed(0)
    lq = torch.randn(1, 3, 8, 8) * 50  # far outside [0, 1]: a linear output follows, a sigmoid cannot
    for name, bounded in [("v1", True), ("v2", False), ("v3", False), ("ragan", False), ("esrgan", False)]:
        cfg = preset(f"{name}-tiny")
        assert cfg.generator.output == ("sigmoid" if bounded else "linear") or cfg.generator.arch == "rrdbnet"
        net_g = build_generator(cfg.generator, scale=4).eval()
        with torch.no_grad():
            sr = net_g(lq)
        inside = bool(((sr >= 0) & (sr <= 1)).all())
        assert inside == bounded, name
        if not bounded:
            # linear in the last layer: scaling the pre-activation scales the output (no squashing)
            with torch.no_grad():
                sr2 = net_g(lq * 2)
            assert sr2.abs().max() > sr.abs().max() * 1.2, name
