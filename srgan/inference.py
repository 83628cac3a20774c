"""The generators' forward pass for inference, rewritten to run faster: the same function, other arithmetic.

Scoring a trained model is mostly its layers at the output's resolution: at the `cpu` size, SRResNet's 9x9 output
conv (3 output channels, a shape oneDNN runs at a third of its speed on wider convs) and the PixelShuffle before
it, and RRDBNet's nearest-neighbour upsampling with its convs. Two rewrites, each exact in real arithmetic:

- **A conv after PixelShuffle(r)** is a conv on the map before the shuffle, with r^2 times the channels on both
  sides and a kernel of 2*floor((p + r - 1) / r) + 1 taps for a padding p, followed by PixelShuffle(r) of its
  output: output phase (s, t) of channel o reads input phase (a, b) of channel c through the taps of the original
  kernel that land on it (`shuffled_conv`). SRResNet's last stage (conv, PixelShuffle(2), PReLU) and its 9x9
  output conv (SRGAN, Ledig et al. 2017, fig. 4) become conv, PReLU (its weights repeated per phase: PReLU is per
  channel, and channel c after the shuffle is channels c*r^2 .. c*r^2 + r^2 - 1 before it), a 5x5 conv with 12
  output channels, and a shuffle of 3 channels. The kernel holds zeros, so it does 23 % more multiply-adds, on a
  shape that runs three times faster.
- **A 3x3 conv after nearest-neighbour upsampling by r** (ESRGAN's upsampling, Wang et al. 2018 sec. 3.1, as in
  BasicSR's RRDBNet) is a 3x3 conv on the map before the upsampling with r^2 times its output channels, followed by
  PixelShuffle(r) (`nearest_conv`): the r^2-times larger upsampled copy is never made.

On a CPU the activations are channels-last (NHWC), which oneDNN runs faster at these widths. Zero padding at the
border maps onto zero padding before the shuffle or the upsampling (the image's sides are whole multiples of r),
so border pixels are exact too. The float32 results differ from `net(lq)` by rounding only: tests/srgan/
test_srgan_inference.py checks every architecture, scale and output against the plain forward, in float64 to
1e-12 and in float32 to 2e-6 of the output's scale. Measured at the `cpu` size on Set5 + Set14 x4 (1 thread, process
CPU time, `python -m benchmarks.speed.inference`): SRResNet 2.85 -> 1.43 s, RRDBNet 2.97 -> 1.73 s.

The trunk at LR and the output's last steps are the generators' own (`trunk`, `finish`); only the upsampling path
between them is rewritten.

`srgan.upscale.upscale` runs every model through `inference_forward`, so scoring, validation and the upscale CLI
all use it; any other module runs as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from srgan.generator import RRDBNet, SRResNet

Forward = Callable[[torch.Tensor], torch.Tensor]


def shuffled_conv(weight: torch.Tensor, bias: torch.Tensor | None,
                  r: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The conv on the map before PixelShuffle(r) that equals `conv2d(pixel_shuffle(z, r), weight, bias,
    padding=k // 2)` once its output is shuffled by r: returns (kernel, bias, padding).

    Output channel o*r^2 + s*r + t is output phase (s, t) of channel o; input channel c*r^2 + a*r + b is input phase
    (a, b) of channel c (PixelShuffle's order). Tap u of the original kernel, at output phase s and input phase a,
    reads the pre-shuffle row offset by k' with r*k' + a - s + p = u, so k' spans [-R, R],
    R = floor((p + r - 1) / r)."""
    out_c, in_c, kh, kw = weight.shape
    if kh != kw or kh % 2 == 0:
        raise ValueError(f"shuffled_conv needs an odd square kernel, got {kh}x{kw}")
    p = kh // 2
    reach = (p + r - 1) // r
    size = 2 * reach + 1
    kernel = weight.new_zeros(out_c * r * r, in_c * r * r, size, size)
    for s in range(r):
        for a in range(r):
            rows = [(k, r * (k - reach) + a - s + p) for k in range(size)]
            rows = [(k, u) for k, u in rows if 0 <= u < kh]
            for t in range(r):
                for b in range(r):
                    cols = [(k, v) for k, v in ((k, r * (k - reach) + b - t + p) for k in range(size)) if 0 <= v < kw]
                    if not cols:
                        continue
                    for k, u in rows:
                        kernel[s * r + t :: r * r, a * r + b :: r * r, k, cols[0][0] : cols[-1][0] + 1] = \
                            weight[:, :, u, cols[0][1] : cols[-1][1] + 1 : r]
    return kernel, None if bias is None else bias.repeat_interleave(r * r), reach


def nearest_conv(weight: torch.Tensor, bias: torch.Tensor | None, r: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 3x3 conv (padding 1) on the map before nearest-neighbour upsampling by r that equals
    `conv2d(interpolate(x, scale_factor=r, mode="nearest"), weight, bias, padding=1)` once its output is shuffled by
    r: returns (kernel, bias). Tap u at output phase s reads upsampled row r*i + s + u - 1, which is pre-upsampling
    row i + floor((s + u - 1) / r): offset -1, 0 or +1, so taps that land on the same row add up."""
    out_c, in_c, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"nearest_conv needs a 3x3 kernel, got {kh}x{kw}")
    kernel = weight.new_zeros(out_c * r * r, in_c, 3, 3)
    for s in range(r):
        for t in range(r):
            for u in range(3):
                for v in range(3):
                    kernel[s * r + t :: r * r, :, (s + u - 1) // r + 1, (t + v - 1) // r + 1] += weight[:, :, u, v]
    return kernel, None if bias is None else bias.repeat_interleave(r * r)


def inference_forward(net: nn.Module | Forward) -> Forward:
    """`net`'s forward pass, rewritten for inference where `net` is an SRResNet or an RRDBNet (see the module's
    docstring); anything else is returned as it is. Call it under `torch.inference_mode()`: the fused kernels are
    built from the weights now, so a later change to the weights is not seen."""
    with torch.no_grad():
        if isinstance(net, SRResNet):
            return _srresnet(net)
        if isinstance(net, RRDBNet):
            return _rrdbnet(net)
    return net


def _layout(net: nn.Module) -> torch.memory_format:
    device = next(net.parameters()).device
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _srresnet(net: SRResNet) -> Forward:
    layout = _layout(net)
    stages = list(net.upsample)  # per factor: conv, PixelShuffle, PReLU
    convs, shuffles, prelus = stages[0::3], stages[1::3], stages[2::3]
    r = shuffles[-1].upscale_factor
    weight, bias, padding = shuffled_conv(net.tail.weight, net.tail.bias, r)
    weight = weight.contiguous(memory_format=layout)
    slope = prelus[-1].weight
    slope = slope if slope.numel() == 1 else slope.repeat_interleave(r * r)

    def forward(lq: torch.Tensor) -> torch.Tensor:
        feat = net.trunk(lq.contiguous(memory_format=layout))
        for conv, shuffle, prelu in zip(convs[:-1], shuffles[:-1], prelus[:-1], strict=True):
            feat = prelu(shuffle(conv(feat)))
        feat = F.prelu(convs[-1](feat), slope)
        return net.finish(F.pixel_shuffle(F.conv2d(feat, weight, bias, padding=padding), r).contiguous(), lq)

    return forward


def _rrdbnet(net: RRDBNet) -> Forward:
    layout = _layout(net)
    ups = []
    for factor, conv in zip(net.factors, net.conv_up, strict=True):
        weight, bias = nearest_conv(conv.weight, conv.bias, factor)
        ups.append((factor, weight.contiguous(memory_format=layout), bias))

    def forward(lq: torch.Tensor) -> torch.Tensor:
        feat = net.trunk(lq.contiguous(memory_format=layout))
        for factor, weight, bias in ups:
            feat = F.pixel_shuffle(F.leaky_relu(F.conv2d(feat, weight, bias, padding=1), 0.2), factor)
        return net.finish(feat, lq).contiguous()

    return forward
