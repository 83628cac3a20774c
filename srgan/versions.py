"""The study's presets as plain functions: v1 -> v2 -> v3 -> RaGAN -> ESRGAN, in four sizes.

Each preset changes only what its version changed. The size ladder (`SIZES`), one set of words everywhere
(presets, `harness.train --preset`, `harness.sweep --size`, `harness.study --size`, results, README):

- `tiny` (`v3-tiny`): tests and smoke runs, seconds on a CPU (`tiny()`);
- `cpu` (`v3-cpu`): the 2-core CPU study, networks that learn in minutes (`cpu()`);
- `full` (`v3`): the papers' network sizes with the presets' own short schedule;
- `paper` (`v3-paper`): full size with the published schedule (`paper_schedule()`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from srgan.config import (
    DataConfig,
    DiscriminatorConfig,
    ExperimentConfig,
    GeneratorConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
)
from srgan.legacy import RENAMED_SIZES  # names used before the size ladder (an error names today's), until its CUTOFF


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
    VGG-128 discriminator (with BN)."""
    base = ragan(scale=scale)
    return replace(
        base,
        name="esrgan",
        generator=GeneratorConfig(arch="rrdbnet", num_features=64, num_blocks=23, growth=32, res_scale=0.2,
                                  norm="none", output="linear"),
        # ESRGAN drops BatchNorm from G only: its VGG-128 discriminator keeps SRGAN's BN + LeakyReLU(0.2), with
        # five (conv s1, conv s2) stages (64 -> 512 features, a 4x4 map at 128 px) and a 100-wide dense head
        # (BasicSR's VGGStyleDiscriminator, used by its ESRGAN options).
        discriminator=DiscriminatorConfig(num_features=64, num_stages=5, norm="batch", hidden=100),
        optim=replace(base.optim, ema_decay=0.999),
    )


def tiny(cfg: ExperimentConfig) -> ExperimentConfig:
    """A CPU-sized variant of any preset: few blocks and features, 48-px patches, batches of 4, few steps.

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
        train=replace(cfg.train, size="tiny", warmup_steps=min(cfg.train.warmup_steps, 4), gan_steps=4,
                      log_every=2, val_every=4, ckpt_every=4),
    )


def cpu(cfg: ExperimentConfig) -> ExperimentConfig:
    """The `cpu` size (`harness.study --size cpu`, the README's main job): networks that learn in minutes on a
    2-core CPU, shaped from measured step times (1 thread, process CPU time; `python -m harness.study --size cpu
    --dry-run` prints them) so that the whole study fits 12 minutes there with its set-up. Each choice is a
    departure from the papers, listed by `departures()` in every run's config.json:

    - SRResNet 8 blocks x 32 features without BatchNorm (with BN the pretraining was at 28.6 dB on Set5 x4 after
      250 steps; without, at 29.1 dB after 300 and 30.1 dB after 800), RRDBNet 2 RRDB x 24 features (growth 12),
      a 3-stage D (16 features, dense 64); linear-output generators add a bicubic skip, as in `tiny`.
    - The pixel-loss pretraining (`pretrain_stage`): CPU_PRETRAIN_STEPS on SRGAN's batch, 16 patches of 96 px
      (Ledig et al. 2017 sec. 3.2), at lr 5e-4, halved at 75 % and 90 % (0.30 s a step for SRResNet, 0.32 for
      RRDB). SRResNet reaches 29.9 dB on Set5 x4 (200 steps of 12 64-px patches, the size's pretraining until issue
      25, reached 28.6): the GAN stage departs from a pretrained network, as the papers' do. Measured on fresh
      clones: 800 steps (30.3 dB) left the ladder's top arm indistinguishable from its 0 arm after Holm (two of six
      seeds lost under 1.7 dB of Set5 PSNR at weight 10, under 2.2 at 100); 600 is where it separates.
    - The GAN stage: CPU_GAN_STEPS on batches of 12 48-px patches (SRGAN's batch is 16) at the preset's lr. Sixty
      steps left every model at its pretraining; 160 separated the ladder's top arm less than 80 did.
    - The perceptual loss uses VGG19's conv2_2 (SRGAN's "VGG22", Ledig et al. 2017 sec. 3.4) instead of conv5_4
      (SRGAN's VGG54, ESRGAN's layer): a GAN step with conv5_4 took 0.89 s, with conv2_2 0.33 s.
    - ESRGAN's EMA decay fits the stage: 1 - 5 / CPU_GAN_STEPS (0.9375), so that the pretrained weights' share
      in the scored EMA model is e^-5 (0.7 %) at the end; the paper's (BasicSR's) 0.999 would keep 86 % of them.
    - v1 (single stage) gets as many generator updates as its two-stage partners (`harness.sweeps.plan`'s equal budget).
    - The study adds per seed two equal-budget controls (`continued_stage`: pixel-loss steps only, no D) and two
      arms of v2's adversarial-weight ladder (0.1 and 10; its 0 arm is the control, its 1e-3 arm v2): 9 GAN-stage
      trials per seed instead of 5, and the top arm and the 0 arm at further seeds (harness.sweeps.study's LADDER
      and LADDER_SEED_FACTOR say why).
    - What this costs, on a fresh clone here (issue 25): the study takes about 9 minutes after its set-up (11 in
      all), and scoring its 42 models (about 2.3 s of one core each for Set5 + Set14: `harness.sweeps.scoring_profile`)
      under a tenth of it; with 200 pretraining steps of 12 64-px patches and GAN batches of 8, before
      `srgan.inference`, scoring was 28 % of a 4-minute study.
    """
    g, t = cfg.generator, cfg.train
    warmup = CPU_PRETRAIN_STEPS if t.warmup_steps else 0
    return replace(
        cfg,
        name=f"{cfg.name}-cpu",
        generator=replace(g, num_features=32 if g.arch == "srresnet" else 24,
                          num_blocks=8 if g.arch == "srresnet" else 2, growth=12, norm="none",
                          skip="bicubic" if g.output == "linear" else g.skip),
        discriminator=replace(cfg.discriminator, num_features=16, num_stages=3, hidden=64),
        loss=replace(cfg.loss, perceptual_layer="conv2_2") if cfg.loss.perceptual_weight > 0 else cfg.loss,
        data=replace(cfg.data, patch_size=_fit(48, cfg.scale), batch_size=12),
        optim=replace(cfg.optim, ema_decay=1 - 5 / CPU_GAN_STEPS if cfg.optim.ema_decay > 0 else 0.0),
        train=replace(t, size="cpu", warmup_steps=warmup, gan_steps=CPU_GAN_STEPS, log_every=10,
                      val_every=CPU_GAN_STEPS // 3, ckpt_every=CPU_GAN_STEPS // 3, pretrain_lr=5e-4,
                      pretrain_gamma=0.5, pretrain_milestones=(int(warmup * 0.75), int(warmup * 0.9)) if warmup else (),
                      pretrain_batch_size=16, pretrain_patch_size=_fit(96, cfg.scale)),
    )


CPU_PRETRAIN_STEPS = 600
CPU_GAN_STEPS = 80


def _fit(size: int, scale: int) -> int:
    """Round a patch size down to a multiple of the scale."""
    return size - size % scale


# --------------------------------------------------------------------------------------- paper schedules
#
# `preset("<name>-paper")` (the `paper` size) sets the published training schedule of the paper each generator
# comes from: SRGAN (Ledig et al., CVPR 2017) for the SRResNet presets v1, v2, v3 and ragan; ESRGAN (Wang et al., ECCV
# Workshops 2018) for esrgan. Each version keeps its own losses, output and degradation (what defines it); the
# schedule sets steps, learning rates and their decay, Adam's betas, batch, patch size and data. Where the papers
# leave a number out, BasicSR's published option files (XPixelGroup/BasicSR, options/train/ESRGAN/
# train_RRDBNet_PSNR_x4.yml and train_ESRGAN_x4.yml) fill it in, and say so. `departures(cfg)` lists where a
# paper-schedule config still differs from the paper.

# DIV2K's 800 training images cut into 480-px sub-images (`python -m srgan.prepare`; BasicSR's
# DIV2K_train_HR_sub). Relative to the data root.
PAPER_TRAIN_DIRS: tuple[str, ...] = ("DIV2K/DIV2K_train_HR_sub",)
# ESRGAN sec. 4.1 ("Data") adds Flickr2K: used when present (`with_present_train_dirs`).
PAPER_OPTIONAL_TRAIN_DIRS: tuple[str, ...] = ("Flickr2K/Flickr2K_HR_sub",)

def _srgan_schedule(cfg: ExperimentConfig) -> ExperimentConfig:
    """SRGAN's schedule (Ledig et al. 2017) on an SRResNet preset."""
    return replace(
        cfg,
        data=replace(cfg.data,
                     patch_size=_fit(96, cfg.scale),  # sec. 3.2: 96 x 96 HR crops
                     batch_size=16,  # sec. 3.2: mini-batches of 16
                     train_dirs=PAPER_TRAIN_DIRS),  # sec. 3.2 used 350k ImageNet images: see departures()
        optim=replace(cfg.optim,
                      lr_g=1e-4, lr_d=1e-4,  # sec. 3.2: GAN 10^5 updates at lr 1e-4
                      milestones=(100_000,), gamma=0.1,  # sec. 3.2: then 10^5 more at 1e-5
                      betas=(0.9, 0.999)),  # sec. 3.2: Adam with beta1 = 0.9 (beta2 unstated: Adam's default)
        train=replace(cfg.train,
                      schedule="paper",
                      # sec. 3.2: the SRResNet trains 10^6 updates at lr 1e-4, then initialises SRGAN's generator.
                      # v1 keeps its recipe: no pretraining.
                      warmup_steps=1_000_000 if cfg.train.warmup_steps > 0 else 0,
                      pretrain_lr=1e-4, pretrain_milestones=(), pretrain_gamma=0.5,
                      gan_steps=200_000,  # sec. 3.2: 10^5 + 10^5 updates
                      log_every=100, val_every=5_000, ckpt_every=5_000),
    )


def _esrgan_schedule(cfg: ExperimentConfig) -> ExperimentConfig:
    """ESRGAN's schedule (Wang et al. 2018, sec. 4.1) on the RRDB preset."""
    return replace(
        cfg,
        # sec. 4.1: lambda = 5e-3 (adversarial), eta = 1e-2 (L1), perceptual weight 1 (eq. 3), relativistic D.
        loss=replace(cfg.loss, pixel_type="l1", pixel_weight=1e-2, perceptual_weight=1.0, adv_weight=5e-3,
                     adv_type="relativistic"),
        data=replace(cfg.data,
                     patch_size=_fit(128, cfg.scale),  # sec. 4.1: 128 x 128 HR patches
                     batch_size=16,  # sec. 4.1: mini-batch 16
                     train_dirs=PAPER_TRAIN_DIRS),  # sec. 4.1 "Data": DIV2K (+ Flickr2K, OST)
        optim=replace(cfg.optim,
                      lr_g=1e-4, lr_d=1e-4,  # sec. 4.1: GAN stage lr 1e-4
                      milestones=(50_000, 100_000, 200_000, 300_000), gamma=0.5,  # sec. 4.1: halved at 50/100/200/300k
                      betas=(0.9, 0.999)),  # sec. 4.1: Adam, beta1 = 0.9, beta2 = 0.999 (BasicSR: 0.99)
        train=replace(cfg.train,
                      schedule="paper",
                      # PSNR-oriented stage, L1 only. The paper gives no total: 10^6 is BasicSR's
                      # train_RRDBNet_PSNR_x4.yml (total_iter: 1000000).
                      warmup_steps=1_000_000,
                      pretrain_lr=2e-4,  # sec. 4.1: PSNR stage starts at lr 2e-4
                      # sec. 4.1: halved every 2x10^5 updates
                      pretrain_milestones=(200_000, 400_000, 600_000, 800_000), pretrain_gamma=0.5,
                      gan_steps=400_000,  # not in the paper: BasicSR's train_ESRGAN_x4.yml (total_iter: 400000)
                      log_every=100, val_every=5_000, ckpt_every=5_000),  # BasicSR: print 100, val/save 5e3
    )


def paper_schedule(cfg: ExperimentConfig) -> ExperimentConfig:
    """The `paper` size of a full-size preset: ESRGAN's published schedule for RRDB generators, SRGAN's
    otherwise."""
    paper = _esrgan_schedule(cfg) if cfg.generator.arch == "rrdbnet" else _srgan_schedule(cfg)
    return replace(paper, name=f"{cfg.name}-paper", train=replace(paper.train, size="paper"))


_SRGAN_DEPARTURES = (
    "data: SRGAN trained on 350k ImageNet images (sec. 3.2); here DIV2K training sub-images",
    "pixel range: SRGAN's HR targets are in [-1, 1] (sec. 3.2), twice the [0, 1] range used here (its MSE is 4x "
    "ours), so its loss weights (adversarial 1e-3, sec. 2.2 eq. 3) do not carry over one to one",
    "Adam beta2: not stated by SRGAN; 0.999 (Adam's default)",
    "discriminator: SRGAN flattens its 6x6 map at 96 px; here an adaptive 4x4 average pool precedes the dense head",
)
_SRGAN_PERCEPTUAL = (
    "content loss: SRGAN's VGG54 is the MSE of conv5_4 features after ReLU rescaled by 1/12.75 (loss x ~0.006, "
    "sec. 3.2) with no pixel term and adversarial 1e-3; this version keeps the study's ESRGAN-style loss "
    "(L1 on conv5_4 before ReLU, 1e-2 L1 + 1 perceptual + adversarial weight as set)"
)
_ESRGAN_DEPARTURES = (
    "data: DIV2K (+ Flickr2K when present); the paper's GAN stage also uses OST (sec. 4.1, Data)",
    "totals: the paper gives no step totals; 10^6 PSNR and 4x10^5 GAN steps are BasicSR's option files",
    "PSNR-stage lr: the paper's halving every 2x10^5 (sec. 4.1); BasicSR's option file uses cosine annealing "
    "with restarts (4 x 250k, eta_min 1e-7) instead",
    "EMA of G (0.999) is BasicSR's, not in the paper (which interpolates networks, sec. 3.4)",
    "discriminator: VGG-128 with 3x3 stride-2 convs (BasicSR: 4x4) and an adaptive 4x4 pool before the dense head",
)


def _size_departures(cfg: ExperimentConfig) -> list[str]:
    """How a reduced size (`tiny`, `cpu`) departs from the papers (see `tiny` and `cpu`)."""
    g, t = cfg.generator, cfg.train
    if t.size == "tiny":
        return ["size tiny: a test size (networks of a few thousand parameters, a handful of steps); its numbers "
                "test the code, not the methods"]
    net = (f"SRResNet {g.num_blocks} blocks x {g.num_features} features" if g.arch == "srresnet"
           else f"RRDBNet {g.num_blocks} RRDB x {g.num_features} features")
    notes = [f"size cpu: {net}{' without BatchNorm' if g.norm == 'none' and g.arch == 'srresnet' else ''} and a "
             f"{cfg.discriminator.num_stages}-stage discriminator, instead of the papers' (SRGAN: 16 blocks x 64; "
             "ESRGAN: 23 RRDB x 64 and VGG-128), to learn in minutes on a 2-core CPU",
             f"size cpu: {t.total_steps} steps in this run (pretraining {CPU_PRETRAIN_STEPS} "
             f"pixel-loss steps of {t.pretrain_batch_size} {t.pretrain_patch_size}-px patches at lr 5e-4, GAN "
             f"{CPU_GAN_STEPS} steps of "
             f"{cfg.data.batch_size} {cfg.data.patch_size}-px patches) instead of 10^6 + 2x10^5 (SRGAN sec. 3.2) or "
             "10^6 + 4x10^5 (ESRGAN, BasicSR's options)"]
    if g.skip == "bicubic":
        notes.append("size cpu: the generator adds a bicubic upscale of its input (global residual learning)")
    if cfg.loss.perceptual_weight > 0 and cfg.loss.perceptual_layer == "conv2_2":
        notes.append("size cpu: perceptual loss on VGG19 conv2_2 (SRGAN's VGG22, sec. 3.4), 2.7x cheaper a step "
                     "here than conv5_4 (SRGAN's VGG54, ESRGAN's layer)")
    if cfg.optim.ema_decay > 0:
        notes.append(f"size cpu: EMA decay {cfg.optim.ema_decay:.3f} to fit {CPU_GAN_STEPS} GAN steps "
                     "(BasicSR's ESRGAN: 0.999)")
    return notes


def departures(cfg: ExperimentConfig) -> list[str]:
    """Where a config departs from its paper: a reduced size (tiny, cpu) and a paper-schedule config's remaining
    differences; empty for the full size's default schedule (its own short schedule, not a paper's)."""
    if cfg.train.size in ("tiny", "cpu"):
        return _size_departures(cfg)
    if cfg.train.schedule != "paper":
        return []
    if cfg.generator.arch == "rrdbnet":
        return list(_ESRGAN_DEPARTURES)
    notes = list(_SRGAN_DEPARTURES)
    if cfg.train.warmup_steps == 0:
        notes.append("no SRResNet initialisation: v1 keeps its single-stage recipe (SRGAN sec. 3.2 starts from "
                     "the MSE-trained SRResNet)")
    elif cfg.loss.pixel_type != "mse":
        notes.append("pretraining loss: L1 (this version's change); SRGAN's SRResNet was trained with MSE")
    if cfg.loss.perceptual_weight > 0:
        notes.append(_SRGAN_PERCEPTUAL)
    return notes


def with_present_train_dirs(cfg: ExperimentConfig, data_root: str | Path) -> ExperimentConfig:
    """A paper-schedule config with the optional training folders (Flickr2K) that exist under `data_root`."""
    if cfg.train.schedule != "paper":
        return cfg
    extra = tuple(d for d in PAPER_OPTIONAL_TRAIN_DIRS
                  if d not in cfg.data.train_dirs and (Path(data_root) / d).is_dir())
    return replace(cfg, data=replace(cfg.data, train_dirs=cfg.data.train_dirs + extra)) if extra else cfg


# ------------------------------------------------------------------------------------------------- stages


def two_stage(cfg: ExperimentConfig) -> bool:
    """Whether a preset splits into a shared pretraining and a GAN stage (it has a warmup; v1 does not)."""
    return cfg.train.stage == "single" and cfg.train.warmup_steps > 0


def pretrain_stage(cfg: ExperimentConfig) -> ExperimentConfig:
    """The pixel-only, PSNR-oriented first stage of a two-stage preset.

    The preset's warmup steps become the run's steps (no GAN phase, no perceptual network), with the
    pretraining lr schedule (`train.pretrain_*`) moved into `optim`. Raises for presets without a warmup (v1)."""
    t, o = cfg.train, cfg.optim
    if t.stage != "single":
        raise ValueError(f"{cfg.name}: pretrain_stage() takes a single-stage config, got stage {t.stage!r}")
    if t.warmup_steps <= 0:
        raise ValueError(f"{cfg.name} has no pixel warmup to pretrain: its recipe is single-stage")
    return replace(
        cfg,
        name=pretrain_name(cfg.generator.arch),
        loss=replace(cfg.loss, pixel_weight=1.0, perceptual_weight=0.0),  # the warmup step is pixel loss only
        optim=replace(o, lr_g=t.pretrain_lr or o.lr_g, milestones=t.pretrain_milestones, gamma=t.pretrain_gamma),
        data=replace(cfg.data, batch_size=t.pretrain_batch_size or cfg.data.batch_size,
                     patch_size=t.pretrain_patch_size or cfg.data.patch_size),
        train=replace(t, stage="pretrain", gan_steps=0),
    )


def gan_stage(cfg: ExperimentConfig, init_from: str | Path) -> ExperimentConfig:
    """The GAN stage of a preset: no warmup, GAN steps only, starting from the generator at `init_from`."""
    if not str(init_from):
        raise ValueError(f"{cfg.name}: gan_stage() needs the pretrained generator to start from (init_from)")
    if cfg.train.stage == "pretrain":
        raise ValueError(f"{cfg.name}: gan_stage() takes a preset, not a pretrain-stage config")
    return replace(cfg, train=replace(cfg.train, stage="gan", init_from=str(init_from), warmup_steps=0))


def continued_stage(cfg: ExperimentConfig) -> ExperimentConfig:
    """The equal-budget control of a GAN stage (`gan_stage`): its pretraining continued with the pixel loss only.

    Every one of the stage's generator updates becomes a pixel-loss warmup step (no D step, no perceptual
    network: cheaper than a GAN step); everything else is the GAN stage's own: pretrained generator, seed (hence
    the data order: sample i depends only on the seed and i), batch, patch, lr schedule (a "gan" stage's warmup
    runs `optim`'s schedule from its first step, as its GAN phase would: `srgan.engine.learning_rates`), EMA
    and validation cadence. The pixel loss is unweighted (`pixel_weight` 1), as in the pretraining: Adam's update
    does not depend on a constant loss scale."""
    t = cfg.train
    if t.stage != "gan" or t.warmup_steps:
        raise ValueError(f"{cfg.name}: continued_stage() takes a GAN-stage config (gan_stage), got stage {t.stage!r}")
    return replace(cfg, name=continued_name(cfg.generator.arch),
                   loss=replace(cfg.loss, pixel_weight=1.0, perceptual_weight=0.0, adv_weight=0.0),
                   train=replace(t, warmup_steps=t.gan_steps, gan_steps=0))


VALIDATION_FIELDS = ("val_set", "val_dirs", "val_count", "val_crop")


def _held_out(data: DataConfig) -> list | None:
    """What of the validation setting changes the training images: the holdout's size, or the val_dirs (their
    images are left out of training); a benchmark validation set changes none."""
    if data.val_set == "holdout":
        return ["holdout", data.val_count]
    if data.val_set == "dirs":
        return ["dirs", list(data.val_dirs)]
    return None


def pretrain_key(cfg: ExperimentConfig) -> str:
    """A stable hash of exactly what makes two pretrainings identical.

    In: generator config, scale, training data (folders, degradation, patch, batch, augmentation, any other
    data field except loader workers and validation, and which validation images leave the training folders),
    pixel loss type, pretraining steps, lr schedule, Adam betas, EMA decay, AMP and seed. Out: names, loss weights
    (the warmup step uses the unweighted pixel loss), perceptual and adversarial settings, the discriminator and the
    GAN schedule. So v2, v3 and ragan share one SRResNet pretraining and esrgan has its own RRDB one. Takes a preset
    or a pretrain-stage config."""
    p = cfg if cfg.train.stage == "pretrain" else pretrain_stage(cfg)
    o = p.optim
    identity = {
        "scale": p.scale,
        "generator": asdict(p.generator),
        "data": {k: v for k, v in asdict(p.data).items() if k not in VALIDATION_FIELDS + ("num_workers",)},
        "held_out": _held_out(p.data),  # the validation images leave the training data (srgan.holdout)
        "pixel_type": p.loss.pixel_type,
        "steps": p.train.warmup_steps,
        "lr": o.lr_g,
        "milestones": list(o.milestones),
        "gamma": o.gamma if o.milestones else None,
        "betas": list(o.betas),
        "ema_decay": o.ema_decay,
        "amp": o.amp,
        "seed": p.train.seed,
    }
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


PRESETS: dict[str, Callable[..., ExperimentConfig]] = {
    "v1": v1,
    "v2": v2,
    "v3": v3,
    "ragan": ragan,
    "esrgan": esrgan,
}

# The size ladder (module docstring); "full" has no suffix in a preset's name.
SIZES = ("tiny", "cpu", "full", "paper")
_SIZED = {"tiny": tiny, "cpu": cpu, "paper": paper_schedule}
# What a pretraining is named for: its generator family.
GENERATOR_FAMILIES = {"srresnet": "srresnet", "rrdbnet": "rrdb"}


def check_size(size: str) -> str:
    """`size` if it is on the ladder; else a ValueError naming the ladder (and today's name of an old one)."""
    if size in SIZES:
        return size
    if size in RENAMED_SIZES:
        raise ValueError(f"size {size!r} was renamed: use {RENAMED_SIZES[size]!r} (sizes: {', '.join(SIZES)})")
    raise ValueError(f"unknown size {size!r}; sizes: {', '.join(SIZES)}")


def sized_name(version: str, size: str) -> str:
    """The preset name of `version` at `size`: "v3" (full), "v3-tiny", "v3-cpu", "v3-paper"."""
    return version if check_size(size) == "full" else f"{version}-{size}"


def split_name(name: str) -> tuple[str, str]:
    """("v3", "cpu") for "v3-cpu"; ("v3", "full") for "v3". Unknown presets and sizes raise, naming the known."""
    version, _, suffix = name.partition("-")
    if version not in PRESETS:
        known = [sized_name(v, size) for size in SIZES for v in PRESETS]
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(known)}")
    return version, check_size(suffix or "full")


def pretrain_name(arch: str) -> str:
    """A pretraining's name: its generator family's ("srresnet-pretrain", "rrdb-pretrain")."""
    return f"{GENERATOR_FAMILIES[arch]}-pretrain"


def continued_name(arch: str) -> str:
    """An equal-budget control's name (`continued_stage`): its generator family's ("srresnet-continued")."""
    return f"{GENERATOR_FAMILIES[arch]}-continued"


def preset(name: str, *, scale: int = 4) -> ExperimentConfig:
    """Build a preset by name at its size: "v3" (full), "v3-tiny", "v3-cpu" or "v3-paper" (`SIZES`)."""
    version, size = split_name(name)
    cfg = PRESETS[version](scale=scale)
    return _SIZED[size](cfg) if size in _SIZED else cfg
