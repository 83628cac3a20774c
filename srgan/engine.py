"""The GAN step, one readable function per phase: warmup (pixel only), generator (D frozen), discriminator,
EMA update. `GanEngine` holds the models and optimisers and dispatches on the step's phase.

DDP is the caller's business (see `harness/train.py`): pass `wrap` to wrap G and D, and `batch_mean` for the
relativistic loss's batch mean. The engine takes care of the parts that must be right under DDP:
- the G step runs D through its unwrapped module with requires_grad off, so no D gradients are computed and
  DDP's reducer for D is not involved (no wasted all-reduce, no "unfinished reduction" error);
- the D step runs real and fake through the wrapped D before one backward: one all-reduce;
- the perceptual network is frozen and never wrapped.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from srgan.config import ExperimentConfig
from srgan.discriminator import build_discriminator
from srgan.generator import build_generator
from srgan.losses import (
    BatchMean,
    build_perceptual,
    pixel_loss,
    relativistic_d_losses,
    relativistic_g_loss,
    vanilla_d_losses,
    vanilla_g_loss,
)

Metrics = dict[str, float]


class NonFiniteLoss(FloatingPointError):
    """A loss became NaN or infinite; the message names the step, phase and loss."""


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(net, "module", net)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def grad_norm(net: nn.Module) -> float:
    grads = [p.grad.detach().flatten() for p in net.parameters() if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


def check_finite(losses: dict[str, torch.Tensor], *, phase: str, step: int) -> Metrics:
    out = {}
    for name, value in losses.items():
        v = float(value.detach())
        if not math.isfinite(v):
            raise NonFiniteLoss(f"{phase} step {step}: {name} is {v}")
        out[name] = v
    return out


def lr_at(base: float, milestones: tuple[int, ...], gamma: float, steps_into_phase: int) -> float:
    """Step decay: `base * gamma ** (milestones passed)`; derived from the step, so it resumes exactly."""
    return base * gamma ** sum(steps_into_phase >= m for m in milestones)


@torch.no_grad()
def ema_update(net_ema: nn.Module, net: nn.Module, decay: float) -> None:
    """net_ema <- decay * net_ema + (1 - decay) * net; buffers (BN statistics) are copied."""
    for p_ema, p in zip(net_ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1 - decay)
    for b_ema, b in zip(net_ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b)


class GanEngine:
    """Models, optimisers and the step counter of one SRGAN-family run."""

    def __init__(self, cfg: ExperimentConfig, *, device: str | torch.device = "cpu",
                 wrap: Callable[[nn.Module, str], nn.Module] | None = None,
                 batch_mean: BatchMean = torch.mean) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.use_amp = cfg.optim.amp and self.device.type == "cuda"
        self.batch_mean = batch_mean
        torch.manual_seed(cfg.train.seed)  # identical initial weights in every process
        net_g = build_generator(cfg.generator, scale=cfg.scale).to(self.device)
        net_d = build_discriminator(cfg.discriminator).to(self.device)
        if self.use_amp:
            net_g = net_g.to(memory_format=torch.channels_last)
            net_d = net_d.to(memory_format=torch.channels_last)
        self.net_g_ema = copy.deepcopy(net_g).eval() if cfg.optim.ema_decay > 0 else None
        if self.net_g_ema is not None:
            set_requires_grad(self.net_g_ema, False)
        self.perceptual = build_perceptual(cfg.loss)
        if self.perceptual is not None:
            self.perceptual = self.perceptual.to(self.device)
        wrap = wrap or (lambda net, _role: net)
        self.net_g = wrap(net_g, "generator")
        self.net_d = wrap(net_d, "discriminator")
        o = cfg.optim
        self.opt_g = torch.optim.Adam(net_g.parameters(), lr=o.lr_g, betas=o.betas)
        self.opt_d = torch.optim.Adam(net_d.parameters(), lr=o.lr_d, betas=o.betas)
        self.step = 0

    # ------------------------------------------------------------------------------------------ phases

    @property
    def phase(self) -> str:
        return "warmup" if self.step < self.cfg.train.warmup_steps else "gan"

    @property
    def total_steps(self) -> int:
        return self.cfg.train.warmup_steps + self.cfg.train.gan_steps

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()

    def _prepare(self, img: torch.Tensor) -> torch.Tensor:
        img = img.to(self.device, non_blocking=True)
        return img.contiguous(memory_format=torch.channels_last) if self.use_amp else img

    def _set_lrs(self) -> Metrics:
        o, t = self.cfg.optim, self.cfg.train
        into = self.step if self.phase == "warmup" else self.step - t.warmup_steps
        lrs = {"lr_g": lr_at(o.lr_g, o.milestones, o.gamma, into), "lr_d": lr_at(o.lr_d, o.milestones, o.gamma, into)}
        for group in self.opt_g.param_groups:
            group["lr"] = lrs["lr_g"]
        for group in self.opt_d.param_groups:
            group["lr"] = lrs["lr_d"]
        return lrs

    def train_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Metrics:
        """One optimisation step of the current phase; returns its metrics (all floats)."""
        lq, gt = self._prepare(lq), self._prepare(gt)
        metrics: Metrics = {"step": float(self.step), **self._set_lrs()}
        if self.phase == "warmup":
            metrics.update(self.warmup_step(lq, gt))
        else:
            g_metrics, sr = self.generator_step(lq, gt)
            metrics.update(g_metrics)
            metrics.update(self.discriminator_step(gt, sr))
        if self.net_g_ema is not None:
            ema_update(self.net_g_ema, unwrap(self.net_g), self.cfg.optim.ema_decay)
        self.step += 1
        return metrics

    def warmup_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Metrics:
        """Pixel loss only: a stable reconstruction to start the GAN from."""
        self.net_g.train()
        with self._autocast():
            sr = self.net_g(lq)  # (B, 3, h*s, w*s)
        loss_pixel = pixel_loss(sr.float(), gt, self.cfg.loss.pixel_type)
        out = check_finite({"loss_pixel": loss_pixel}, phase="warmup", step=self.step)
        self.opt_g.zero_grad(set_to_none=True)
        loss_pixel.backward()
        out["grad_norm_g"] = grad_norm(self.net_g)
        self.opt_g.step()
        return out

    def generator_step(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[Metrics, torch.Tensor]:
        """Weighted pixel + perceptual + adversarial loss; D is frozen and used unwrapped (see module doc)."""
        w = self.cfg.loss
        net_d = unwrap(self.net_d)
        set_requires_grad(net_d, False)
        self.net_g.train()
        net_d.train()
        with self._autocast():
            sr = self.net_g(lq)
            fake_logits = net_d(sr).float()
            real_logits = net_d(gt).float() if w.adv_type == "relativistic" else None
        sr = sr.float()
        losses = {"loss_pixel": w.pixel_weight * pixel_loss(sr, gt, w.pixel_type)}
        if self.perceptual is not None:
            losses["loss_perceptual"] = w.perceptual_weight * self.perceptual(sr, gt)
        if w.adv_type == "relativistic":
            adv = relativistic_g_loss(real_logits, fake_logits, self.batch_mean)
        else:
            adv = vanilla_g_loss(fake_logits)
        losses["loss_adv_g"] = w.adv_weight * adv
        loss_g = sum(losses.values())
        out = check_finite({**losses, "loss_g": loss_g}, phase="generator", step=self.step)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        out["grad_norm_g"] = grad_norm(self.net_g)
        self.opt_g.step()
        set_requires_grad(net_d, True)
        return out, sr.detach()

    def discriminator_step(self, gt: torch.Tensor, sr: torch.Tensor) -> Metrics:
        """Real and fake through the (wrapped) D, one backward. `sr` is the G step's output, detached."""
        self.net_d.train()
        with self._autocast():
            real_logits = self.net_d(gt).float()
            fake_logits = self.net_d(sr.detach()).float()
        if self.cfg.loss.adv_type == "relativistic":
            loss_d_real, loss_d_fake = relativistic_d_losses(real_logits, fake_logits, self.batch_mean)
        else:
            loss_d_real, loss_d_fake = vanilla_d_losses(real_logits, fake_logits)
        out = check_finite({"loss_d_real": loss_d_real, "loss_d_fake": loss_d_fake},
                           phase="discriminator", step=self.step)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_real + loss_d_fake).backward()
        out["grad_norm_d"] = grad_norm(self.net_d)
        self.opt_d.step()
        with torch.no_grad():
            out["d_real"] = float(torch.sigmoid(real_logits).mean())
            out["d_fake"] = float(torch.sigmoid(fake_logits).mean())
        return out

    # -------------------------------------------------------------------------------------- inference

    def inference_generator(self) -> nn.Module:
        """The generator to evaluate and export: the EMA copy when EMA is on."""
        return self.net_g_ema if self.net_g_ema is not None else unwrap(self.net_g)

    # --------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        state = {
            "step": self.step,
            "net_g": unwrap(self.net_g).state_dict(),
            "net_d": unwrap(self.net_d).state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if self.net_g_ema is not None:
            state["net_g_ema"] = self.net_g_ema.state_dict()
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        unwrap(self.net_g).load_state_dict(state["net_g"])
        unwrap(self.net_d).load_state_dict(state["net_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.net_g_ema is not None:
            self.net_g_ema.load_state_dict(state["net_g_ema"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.step = int(state["step"])
