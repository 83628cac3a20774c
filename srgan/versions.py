"""The study's presets as plain functions: v1 -> v2 -> v3 -> RaGAN -> ESRGAN, and their tiny CPU variants.

Each preset changes only what its version changed; `tiny()` shrinks any preset for CPU tests and demos.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from srgan.config import (
    DataConfig,
    DiscriminatorConfig,
    ExperimentConfig,
    GeneratorConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
)


def v1(*, scale: int = 4) -> ExperimentConfig:
    """Basic SRGAN: SRResNet (BN + PReLU, sigmoid output), VGG-style D, MSE + vanilla GAN, 96-px patches,
    naive (aliased) LR pairs, no warmup."""
    return ExperimentConfig(
        name="v1",
        scale=scale,
        generator=GeneratorConfig(arch="srresnet", norm="batch", output="sigmoid"),
        discriminator=DiscriminatorConfig(norm="batch"),
        loss=LossConfig(pixel_type="mse", pixel_weight=1.0, perceptual_weight=0.0, adv_type="vanilla",
                        adv_weight=1e-3),
        optim=OptimConfig(lr_g=1e-4, lr_d=1e-4, betas=(0.9, 0.999)),
        data=DataConfig(patch_size=96, degradation="naive", train_dirs=("train/T91",)),
        train=TrainConfig(warmup_steps=0, gan_steps=2000),
    )


def v2(*, scale: int = 4) -> ExperimentConfig:
    """Clean MATLAB-bicubic pairs, 128-px patches, linear output, pixel-only warmup then the GAN phase."""
    base = v1(scale=scale)
    return replace(
        base,
        name="v2",
        generator=replace(base.generator, output="linear"),
        loss=replace(base.loss, pixel_type="l1"),
        data=replace(base.data, patch_size=_fit(128, scale), degradation="matlab",
                     train_dirs=("train/T91", "train/BSD200")),
        train=replace(base.train, warmup_steps=1000, gan_steps=1000),
    )


def v3(*, scale: int = 4) -> ExperimentConfig:
    """v2 + VGG19 perceptual loss (conv5_4 before ReLU) in the weighted sum 1e-2 pixel + 1 perceptual
    + 5e-3 adversarial (the SRGAN/ESRGAN weights)."""
    base = v2(scale=scale)
    return replace(
        base,
        name="v3",
        loss=replace(base.loss, pixel_type="l1", pixel_weight=1e-2, perceptual_weight=1.0,
                     perceptual_layer="conv5_4", adv_weight=5e-3),
    )


def ragan(*, scale: int = 4) -> ExperimentConfig:
    """v3 with the relativistic average GAN loss (ESRGAN eq. 1-3)."""
    base = v3(scale=scale)
    return replace(base, name="ragan", loss=replace(base.loss, adv_type="relativistic"))


def esrgan(*, scale: int = 4) -> ExperimentConfig:
    """RRDB generator (23 blocks, growth 32, no BN, residual scaling 0.2), relativistic loss, EMA of G,
    BN-free discriminator."""
    base = ragan(scale=scale)
    return replace(
        base,
        name="esrgan",
        generator=GeneratorConfig(arch="rrdbnet", num_features=64, num_blocks=23, growth=32, res_scale=0.2,
                                  norm="none", output="linear"),
        discriminator=replace(base.discriminator, norm="none"),
        optim=replace(base.optim, ema_decay=0.999),
    )


def tiny(cfg: ExperimentConfig) -> ExperimentConfig:
    """A CPU-sized variant of any preset: few blocks and features, small patches and batches, few steps.

    Everything that defines the version (losses, output activation, degradation, phases) is kept. So that a
    few hundred CPU steps give pictures worth comparing, the learning rate is raised (5e-4), the EMA shortened
    (0.9), and generators with a linear output add a bicubic skip (they learn only the missing detail; v1's
    sigmoid output keeps none, as a bounded output cannot add a skip)."""
    g = cfg.generator
    return replace(
        cfg,
        name=f"{cfg.name}-tiny",
        generator=replace(g, num_features=16 if g.arch == "srresnet" else 12,
                          num_blocks=2 if g.arch == "srresnet" else 1, growth=8,
                          skip="bicubic" if g.output == "linear" else g.skip),
        discriminator=replace(cfg.discriminator, num_features=8, num_stages=2, hidden=32),
        data=replace(cfg.data, patch_size=_fit(min(cfg.data.patch_size, 48), cfg.scale), batch_size=4),
        optim=replace(cfg.optim, lr_g=5e-4, lr_d=5e-4, ema_decay=0.9 if cfg.optim.ema_decay > 0 else 0.0),
        train=replace(cfg.train, warmup_steps=min(cfg.train.warmup_steps, 4), gan_steps=4, log_every=2,
                      val_every=4, ckpt_every=4),
    )


def _fit(size: int, scale: int) -> int:
    """Round a patch size down to a multiple of the scale."""
    return size - size % scale


PRESETS: dict[str, Callable[..., ExperimentConfig]] = {
    "v1": v1,
    "v2": v2,
    "v3": v3,
    "ragan": ragan,
    "esrgan": esrgan,
}


def preset(name: str, *, scale: int = 4) -> ExperimentConfig:
    """Build a preset by name; "<name>-tiny" gives its tiny variant."""
    base, _, suffix = name.partition("-")
    if base not in PRESETS or suffix not in ("", "tiny"):
        known = sorted(PRESETS) + [f"{k}-tiny" for k in sorted(PRESETS)]
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(known)}")
    cfg = PRESETS[base](scale=scale)
    return tiny(cfg) if suffix == "tiny" else cfg
