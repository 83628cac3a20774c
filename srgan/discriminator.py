"""VGG-style discriminator of SRGAN, made patch-size agnostic with an adaptive pool before the dense head."""

from __future__ import annotations

import torch
from torch import nn

from srgan.config import DiscriminatorConfig


def _conv(cin: int, cout: int, stride: int, norm: bool) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not norm),
        nn.BatchNorm2d(cout) if norm else nn.Identity(),
        nn.LeakyReLU(0.2, inplace=True),
    ]


class VGGDiscriminator(nn.Module):
    """conv-LReLU, then `num_stages` x (conv s1 + conv s2, BN, LReLU), then dense -> LReLU -> dense(1).

    SRGAN's D flattens a fixed 6x6 map (96-px input); pooling adaptively to 4x4 keeps the same head for any
    patch size (96, 128, 192 ...). Returns one logit per image, shape (B, 1)."""

    def __init__(self, *, num_features: int = 64, num_stages: int = 4, norm: bool = True,
                 hidden: int = 1024) -> None:
        super().__init__()
        f = num_features
        layers: list[nn.Module] = [nn.Conv2d(3, f, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers += _conv(f, f, 2, norm)
        cin = f
        for stage in range(1, num_stages):
            cout = min(f * 2**stage, 512)
            layers += _conv(cin, cout, 1, norm) + _conv(cout, cout, 2, norm)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * 16, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def build_discriminator(cfg: DiscriminatorConfig) -> VGGDiscriminator:
    return VGGDiscriminator(num_features=cfg.num_features, num_stages=cfg.num_stages,
                            norm=cfg.norm == "batch", hidden=cfg.hidden)
