"""The generators' inference forward (`srgan.inference`) computes the function of the plain forward: each rewrite
against the layers it replaces, then whole networks of every architecture, scale and output, in float64 (equal
to rounding) and in float32 (as scoring runs them)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srgan.generator import rrdbnet, srresnet
from srgan.inference import inference_forward, nearest_conv, shuffled_conv
from srgan.upscale import upscale


def _randomised(net: nn.Module, seed: int) -> nn.Module:
    """`net` with every parameter and BatchNorm statistic drawn at random (PReLU slopes of both signs, biases
    non-zero), so that no rewrite can pass on a zero or a symmetry."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 1 else 0.15))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.eval()


@pytest.mark.parametrize("r", [2, 3])
@pytest.mark.parametrize("k", [3, 5, 9])
@pytest.mark.parametrize("bias", [True, False])
def test_shuffled_conv_equals_a_conv_after_pixel_shuffle(r, k, bias):
    g = torch.Generator().manual_seed(10 * r + k)
    z = torch.randn(2, 4 * r * r, 6, 7, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64) if bias else None
    expected = F.conv2d(F.pixel_shuffle(z, r), w, b, padding=k // 2)
    kernel, kernel_bias, padding = shuffled_conv(w, b, r)
    got = F.pixel_shuffle(F.conv2d(z, kernel, kernel_bias, padding=padding), r)
    assert got.shape == expected.shape
    # the smallest kernel that holds every tap: each border row and column carries one (no multiply-adds wasted)
    assert all(kernel[..., i, :].abs().sum() > 0 and kernel[..., :, i].abs().sum() > 0 for i in (0, -1))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("r", [2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_nearest_conv_equals_a_conv_after_nearest_upsampling(r, bias):
    g = torch.Generator().manual_seed(r)
    x = torch.randn(2, 5, 6, 9, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64) if bias else None
    expected = F.conv2d(F.interpolate(x, scale_factor=r, mode="nearest"), w, b, padding=1)
    kernel, kernel_bias = nearest_conv(w, b, r)
    got = F.pixel_shuffle(F.conv2d(x, kernel, kernel_bias, padding=1), r)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_the_rewrites_refuse_kernels_they_do_not_cover():
    with pytest.raises(ValueError, match="odd square"):
        shuffled_conv(torch.zeros(3, 4, 4, 4), None, 2)
    with pytest.raises(ValueError, match="3x3"):
        nearest_conv(torch.zeros(3, 4, 5, 5), None, 2)


NETWORKS = [
    *[pytest.param(lambda s, n=n, o=o, k=k: srresnet(scale=s, num_features=8, num_blocks=2, norm=n, output=o, skip=k),
                   id=f"srresnet-{n}-{o}-{k}")
      for n, o, k in [("batch", "linear", "none"), ("none", "linear", "bicubic"), ("batch", "sigmoid", "none")]],
    *[pytest.param(lambda s, k=k: rrdbnet(scale=s, num_features=8, num_blocks=1, growth=4, res_scale=0.2, skip=k),
                   id=f"rrdbnet-{k}") for k in ("none", "bicubic")],
]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("build", NETWORKS)
def test_the_inference_forward_is_the_networks_function(build, scale):
    net = _randomised(build(scale), seed=scale)
    forward = inference_forward(net)
    assert forward is not net
    x = torch.rand(2, 3, 7, 10, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = net.double()(x.double()), inference_forward(net)(x.double())
        assert got.shape == (2, 3, 7 * scale, 10 * scale) and got.is_contiguous()
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        net.float()
        expected = net(x)  # float32 rounding, relative to the output's size (random weights give outputs of ~100)
        torch.testing.assert_close(inference_forward(net)(x), expected, rtol=0,
                                   atol=2e-6 * max(float(expected.abs().max()), 1.0))


def test_upscale_runs_the_inference_forward_whole_and_in_tiles():
    net = _randomised(srresnet(scale=4, num_features=8, num_blocks=2, norm="none", skip="bicubic"), seed=7)
    lq = torch.rand(1, 3, 21, 18, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        raw = net(lq)
    expected, atol = raw.clamp(0, 1), 2e-6 * float(raw.abs().max())
    torch.testing.assert_close(upscale(net, lq, 4), expected, rtol=0, atol=atol)
    torch.testing.assert_close(upscale(net, lq, 4, tile=8), expected, rtol=0, atol=atol)


def test_other_modules_run_as_they_are():
    net = nn.Upsample(scale_factor=2, mode="bicubic")
    assert inference_forward(net) is net
