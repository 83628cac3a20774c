"""The reference GAN step of the speed comparison (`benchmarks.speed.throughput --compare`): the same work as
`srgan.engine.GanEngine.train_step`, written plainly, so that the engine's bookkeeping has a baseline to be
measured against in the same run."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch

from srgan.config import ExperimentConfig
from srgan.discriminator import build_discriminator
from srgan.engine import compile_mode, make_adam
from srgan.generator import build_generator
from srgan.losses import (
    build_perceptual,
    pixel_loss,
    relativistic_d_losses,
    relativistic_g_loss,
    vanilla_d_losses,
    vanilla_g_loss,
)


class ReferenceStep:
    """A minimal training step written plainly: the engine's networks (same builders, same seed) and losses,
    Adam (fused, as the engine), autocast and channels_last as the engine decides, torch.compile as
    `train.compile` says, EMA when the preset has one, and nothing else: no metrics, no non-finite checks, no lr
    schedule, no DDP hooks."""

    def __init__(self, cfg: ExperimentConfig, *, device: torch.device, use_amp: bool) -> None:
        self.cfg, self.use_amp = cfg, use_amp
        torch.manual_seed(cfg.train.seed)
        fmt = torch.channels_last if use_amp else torch.contiguous_format
        self.net_g = build_generator(cfg.generator, scale=cfg.scale).to(device, memory_format=fmt)
        self.net_d = build_discriminator(cfg.discriminator).to(device, memory_format=fmt)
        self.perceptual = build_perceptual(cfg.loss)
        if self.perceptual is not None:
            self.perceptual = self.perceptual.to(device)
        self.ema = copy.deepcopy(self.net_g).requires_grad_(False) if cfg.optim.ema_decay > 0 else None
        if cfg.train.compile != "off":  # compiled as the engine compiles them: the same work on both sides
            for net in (self.net_g, self.net_d, self.perceptual):
                if net is not None:
                    net.compile(mode=compile_mode(cfg.train.compile))
        o = cfg.optim
        self.opt_g = make_adam(self.net_g.parameters(), lr=o.lr_g, betas=o.betas, device=device)
        self.opt_d = make_adam(self.net_d.parameters(), lr=o.lr_d, betas=o.betas, device=device)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()

    @torch.no_grad()
    def ema_update(self) -> None:
        if self.ema is not None:
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.net_g.parameters()),
                                 1 - self.cfg.optim.ema_decay)

    def warmup(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        with self.autocast():
            sr = self.net_g(lq)
        loss = pixel_loss(sr.float(), gt, self.cfg.loss.pixel_type)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.ema_update()

    def gan(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        w = self.cfg.loss
        relativistic = w.adv_type == "relativistic"
        self.net_d.requires_grad_(False)
        with self.autocast():
            sr = self.net_g(lq)
            fake = self.net_d(sr).float()
            real = self.net_d(gt).float() if relativistic else None
        sr = sr.float()
        loss = w.pixel_weight * pixel_loss(sr, gt, w.pixel_type)
        if self.perceptual is not None:
            loss = loss + w.perceptual_weight * self.perceptual(sr, gt)
        loss = loss + w.adv_weight * (relativistic_g_loss(real, fake) if relativistic else vanilla_g_loss(fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.net_d.requires_grad_(True)
        with self.autocast():
            real = self.net_d(gt).float()
            fake = self.net_d(sr.detach()).float()
        loss_real, loss_fake = (relativistic_d_losses if relativistic else vanilla_d_losses)(real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_real + loss_fake).backward()
        self.opt_d.step()
        self.ema_update()


