"""Generators: SRResNet (SRGAN, Ledig et al. 2017) and RRDBNet (ESRGAN, Wang et al. 2018).

Both map a (B, 3, h, w) image in [0, 1] to (B, 3, h*s, w*s) for s in {2, 3, 4}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srgan.config import GeneratorConfig


def _upsample_factors(scale: int) -> list[int]:
    """x4 is two x2 stages; x2 and x3 are one stage."""
    if scale not in (2, 3, 4):
        raise ValueError(f"scale must be 2, 3 or 4, got {scale}")
    return [2, 2] if scale == 4 else [scale]


def bicubic_skip(sr: torch.Tensor, lq: torch.Tensor, scale: int) -> torch.Tensor:
    """Add the bicubic upscale of the input: the network predicts only the residual detail."""
    return sr + F.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, *, norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not norm)
        self.bn2 = nn.BatchNorm2d(channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """conv9 -> PReLU -> B residual blocks -> conv + BN -> global skip -> sub-pixel upsampling -> conv9."""

    def __init__(self, *, scale: int, num_features: int, num_blocks: int, norm: bool, output: str,
                 skip: str = "none") -> None:
        super().__init__()
        self.scale, self.skip = scale, skip
        f = num_features
        self.head = nn.Sequential(nn.Conv2d(3, f, 9, padding=4), nn.PReLU(f))
        self.body = nn.Sequential(*[ResidualBlock(f, norm=norm) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(f, f, 3, padding=1, bias=not norm), nn.BatchNorm2d(f) if norm else nn.Identity()
        )
        stages: list[nn.Module] = []
        for factor in _upsample_factors(scale):
            # sub-pixel convolution: conv to f * r^2 channels, then PixelShuffle(r)
            stages += [nn.Conv2d(f, f * factor**2, 3, padding=1), nn.PixelShuffle(factor), nn.PReLU(f)]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(f, 3, 9, padding=4)
        self.output = output

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.finish(self.tail(self.upsample(self.trunk(lq))), lq)  # (B, 3, h*s, w*s)

    def trunk(self, lq: torch.Tensor) -> torch.Tensor:
        """The LR features before upsampling: head, residual blocks, global skip (`srgan.inference` reuses it)."""
        feat = self.head(lq)
        return feat + self.body_tail(self.body(feat))

    def finish(self, sr: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """The output conv's result made the image: the bicubic skip, then the bounded output where configured."""
        sr = bicubic_skip(sr, lq, self.scale) if self.skip == "bicubic" else sr
        return torch.sigmoid(sr) if self.output == "sigmoid" else sr


RDB_INIT_SCALE = 0.1  # ESRGAN sec. 3.1 ("smaller initialization"): Kaiming normal weights scaled by 0.1


class DenseBlock(nn.Module):
    """Five densely connected 3x3 convs (ESRGAN's residual dense block), output scaled by `res_scale`.

    All five convs start from Kaiming-normal weights (fan-in, gain sqrt(2)) times 0.1 and zero biases, as
    ESRGAN's code initialises them (sec. 3.1): each block then starts close to the identity."""

    def __init__(self, f: int, growth: int, res_scale: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(f + i * growth, growth if i < 4 else f, 3, padding=1) for i in range(5)
        )
        self.res_scale = res_scale
        with torch.no_grad():
            for conv in self.convs:
                nn.init.kaiming_normal_(conv.weight)  # std = sqrt(2 / fan_in), fan_in = in_channels * 9
                conv.weight.mul_(RDB_INIT_SCALE)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, dim=1))
            if i < 4:
                feats.append(F.leaky_relu(out, 0.2))
        return x + self.res_scale * out


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside one more scaled residual."""

    def __init__(self, f: int, growth: int, res_scale: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[DenseBlock(f, growth, res_scale) for _ in range(3)])
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.blocks(x)


class RRDBNet(nn.Module):
    """ESRGAN generator: no BatchNorm, nearest-neighbour upsampling + conv (avoids checkerboard).

    Computes the function of the official ESRGAN / BasicSR RRDBNet: conv_first -> RRDBs -> conv_body (the
    official trunk_conv) + long skip -> per x2 stage: nearest x2, conv, LeakyReLU(0.2) -> conv_hr (HRconv),
    LeakyReLU(0.2) -> conv_last; residual scaling 0.2 inside every dense block and every RRDB.
    `srgan.official` maps the published weight files onto these modules."""

    def __init__(self, *, scale: int, num_features: int, num_blocks: int, growth: int,
                 res_scale: float, skip: str = "none") -> None:
        super().__init__()
        self.scale, self.skip = scale, skip
        f = num_features
        self.conv_first = nn.Conv2d(3, f, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(f, growth, res_scale) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(f, f, 3, padding=1)
        self.factors = _upsample_factors(scale)
        self.conv_up = nn.ModuleList(nn.Conv2d(f, f, 3, padding=1) for _ in self.factors)
        self.conv_hr = nn.Conv2d(f, f, 3, padding=1)
        self.conv_last = nn.Conv2d(f, 3, 3, padding=1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        feat = self.trunk(lq)
        for factor, conv in zip(self.factors, self.conv_up, strict=True):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=factor, mode="nearest")), 0.2)
        return self.finish(feat, lq)  # (B, 3, h*s, w*s)

    def trunk(self, lq: torch.Tensor) -> torch.Tensor:
        """The LR features before upsampling: first conv, RRDBs, trunk conv, long skip (`srgan.inference` reuses it)."""
        feat = self.conv_first(lq)
        return feat + self.conv_body(self.body(feat))

    def finish(self, feat: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """The upsampled features made the image: HR conv, output conv, then the bicubic skip where configured."""
        sr = self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
        return bicubic_skip(sr, lq, self.scale) if self.skip == "bicubic" else sr


def srresnet(*, scale: int = 4, num_features: int = 64, num_blocks: int = 16, norm: str = "batch",
             output: str = "linear", skip: str = "none") -> SRResNet:
    return SRResNet(scale=scale, num_features=num_features, num_blocks=num_blocks, norm=norm == "batch",
                    output=output, skip=skip)


def rrdbnet(*, scale: int = 4, num_features: int = 64, num_blocks: int = 23, growth: int = 32,
            res_scale: float = 0.2, skip: str = "none") -> RRDBNet:
    return RRDBNet(scale=scale, num_features=num_features, num_blocks=num_blocks, growth=growth,
                   res_scale=res_scale, skip=skip)


def build_generator(cfg: GeneratorConfig, *, scale: int) -> nn.Module:
    if cfg.arch == "srresnet":
        return srresnet(scale=scale, num_features=cfg.num_features, num_blocks=cfg.num_blocks,
                        norm=cfg.norm, output=cfg.output, skip=cfg.skip)
    if cfg.arch == "rrdbnet":
        return rrdbnet(scale=scale, num_features=cfg.num_features, num_blocks=cfg.num_blocks,
                       growth=cfg.growth, res_scale=cfg.res_scale, skip=cfg.skip)
    raise ValueError(f"unknown generator arch {cfg.arch!r}")
