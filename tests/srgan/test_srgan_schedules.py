"""Paper schedules resolve to the published numbers (SRGAN, Ledig et al. 2017, sec. 2.2 and 3.2; ESRGAN, Wang et
al. 2018, sec. 4.1; totals the papers leave out from BasicSR's option files), and say where they depart.

Learning rates are read from `srgan.engine.learning_rates`, the function the engine sets its optimisers with, and
compared with curves written out here from the papers' numbers, on every route to a run: a single-stage run
(warmup then GAN in one run), `--stage pretrain` (`pretrain_stage`) and `--stage gan` (`gan_stage`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srgan.config import override
from srgan.engine import GanEngine, learning_rates
from srgan.versions import (
    PAPER_OPTIONAL_TRAIN_DIRS,
    PAPER_TRAIN_DIRS,
    PRESETS,
    departures,
    gan_stage,
    preset,
    pretrain_stage,
    with_present_train_dirs,
)

SRRESNET_PRESETS = ["v1", "v2", "v3", "ragan"]


def lr_curve(cfg, steps: list[int]) -> list[float]:
    """G's learning rate at each 0-based step of the run `cfg` describes."""
    return [learning_rates(cfg, s)[0] for s in steps]


def d_lr_curve(cfg, steps: list[int]) -> list[float]:
    return [learning_rates(cfg, s)[1] for s in steps]


M = 1_000_000  # both papers' pretraining length (SRGAN sec. 3.2; ESRGAN: BasicSR's PSNR option file)
# SRGAN sec. 3.2: SRResNet 10^6 updates at 1e-4; the GAN 10^5 updates at 1e-4, then 10^5 at 1e-5
SRGAN_PRETRAIN = {0: 1e-4, 100_000: 1e-4, 500_000: 1e-4, M - 1: 1e-4}
SRGAN_GAN = {0: 1e-4, 99_999: 1e-4, 100_000: 1e-5, 199_999: 1e-5}
# ESRGAN sec. 4.1: PSNR stage 2e-4 halved every 2x10^5 updates; GAN stage 1e-4 halved at 50k, 100k, 200k, 300k
ESRGAN_PRETRAIN = {0: 2e-4, 199_999: 2e-4, 200_000: 1e-4, 400_000: 5e-5, 600_000: 2.5e-5, 800_000: 1.25e-5,
                   M - 1: 1.25e-5}
ESRGAN_GAN = {0: 1e-4, 49_999: 1e-4, 50_000: 5e-5, 100_000: 2.5e-5, 200_000: 1.25e-5, 300_000: 6.25e-6,
              399_999: 6.25e-6}


def assert_curve(cfg, curve: dict[int, float], *, offset: int = 0) -> None:
    steps = [offset + s for s in curve]
    assert lr_curve(cfg, steps) == pytest.approx(list(curve.values()), rel=1e-12), cfg.name


@pytest.mark.parametrize("name", ["v2", "v3", "ragan", "esrgan"])
def test_paper_learning_rates_on_every_route(name: str) -> None:
    pretrain, gan = (ESRGAN_PRETRAIN, ESRGAN_GAN) if name == "esrgan" else (SRGAN_PRETRAIN, SRGAN_GAN)
    single = preset(f"{name}-paper")
    assert single.train.stage == "single" and single.train.warmup_steps == M
    assert_curve(single, pretrain)  # the warmup is the pretraining
    assert_curve(single, gan, offset=M)  # then the GAN phase, counted from its first step
    assert d_lr_curve(single, [M + s for s in gan]) == pytest.approx(list(gan.values()), rel=1e-12)
    pre = pretrain_stage(single)  # --stage pretrain
    assert pre.train.warmup_steps == M and pre.train.gan_steps == 0
    assert_curve(pre, pretrain)
    after = gan_stage(single, init_from="runs/pre")  # --stage gan
    assert after.train.warmup_steps == 0
    assert_curve(after, gan)
    assert d_lr_curve(after, list(gan)) == pytest.approx(list(gan.values()), rel=1e-12)


def test_v1_paper_schedule_is_the_gan_curve_from_step_0() -> None:
    cfg = preset("v1-paper")
    assert cfg.train.warmup_steps == 0
    assert_curve(cfg, SRGAN_GAN)


def test_the_engine_sets_those_learning_rates() -> None:
    """A tiny run with a 3-step warmup: the optimiser's lr at each step, written out by hand."""
    cfg = override(preset("v2-tiny"), {
        "data.patch_size": 24, "data.batch_size": 2, "train.warmup_steps": 3, "train.gan_steps": 3,
        "train.pretrain_lr": 3e-4, "train.pretrain_milestones": "2", "train.pretrain_gamma": 0.1,
        "optim.lr_g": 5e-4, "optim.lr_d": 2e-4, "optim.milestones": "1", "optim.gamma": 0.5})
    engine = GanEngine(cfg, device="cpu")
    gen = torch.Generator().manual_seed(0)
    lq, gt = torch.rand(2, 3, 6, 6, generator=gen), torch.rand(2, 3, 24, 24, generator=gen)
    seen_g, seen_d, reported = [], [], []
    for _ in range(6):
        engine.train_step(lq, gt)
        seen_g.append(engine.opt_g.param_groups[0]["lr"])
        seen_d.append(engine.opt_d.param_groups[0]["lr"])
        reported.append(engine.pop_metrics()["lr_g"])
    assert seen_g == pytest.approx([3e-4, 3e-4, 3e-5, 5e-4, 2.5e-4, 2.5e-4], rel=1e-12)
    assert seen_d[3:] == pytest.approx([2e-4, 1e-4, 1e-4], rel=1e-12)  # D trains in the GAN phase only
    assert reported == seen_g


@pytest.mark.parametrize("name", SRRESNET_PRESETS)
def test_srgan_schedule(name: str) -> None:
    cfg = preset(f"{name}-paper")
    assert cfg.train.schedule == "paper"
    assert cfg.data.batch_size == 16 and cfg.data.patch_size == 96
    assert cfg.optim.betas[0] == 0.9
    # GAN: 10^5 updates at 1e-4, then 10^5 at 1e-5
    assert cfg.train.gan_steps == 200_000
    gan = [cfg.train.warmup_steps + s for s in (0, 99_999, 100_000, 199_999)]  # the GAN phase's first step on
    assert lr_curve(cfg, gan) == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5])
    assert cfg.optim.lr_d == cfg.optim.lr_g
    if name == "v1":  # the study's v1: no SRResNet initialisation
        assert cfg.train.warmup_steps == 0
        with pytest.raises(ValueError, match="single-stage"):
            pretrain_stage(cfg)
        assert cfg.loss.adv_weight == 1e-3  # SRGAN eq. 3
    else:  # SRResNet: 10^6 updates at 1e-4, constant
        pre = pretrain_stage(cfg)
        assert pre.train.warmup_steps == 1_000_000 and pre.train.gan_steps == 0
        assert lr_curve(pre, [0, 500_000, 999_999]) == pytest.approx([1e-4] * 3)
    assert departures(cfg)


def test_esrgan_schedule() -> None:
    cfg = preset("esrgan-paper")
    assert cfg.data.batch_size == 16 and cfg.data.patch_size == 128
    assert cfg.data.train_dirs == PAPER_TRAIN_DIRS and "DIV2K" in PAPER_TRAIN_DIRS[0]
    assert cfg.optim.betas == (0.9, 0.999)
    loss = cfg.loss
    assert (loss.pixel_type, loss.pixel_weight, loss.perceptual_weight, loss.adv_weight) == ("l1", 1e-2, 1.0, 5e-3)
    assert loss.adv_type == "relativistic" and loss.perceptual_layer == "conv5_4"
    # GAN stage: 4x10^5 updates at 1e-4, halved at 50k, 100k, 200k, 300k
    assert cfg.train.gan_steps == 400_000
    steps = [cfg.train.warmup_steps + s for s in (0, 49_999, 50_000, 100_000, 200_000, 300_000, 399_999)]
    assert lr_curve(cfg, steps) == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6, 6.25e-6])
    # PSNR stage: 10^6 updates, L1, 2e-4 halved every 2x10^5
    pre = pretrain_stage(cfg)
    assert pre.train.warmup_steps == 1_000_000 and pre.train.stage == "pretrain"
    assert pre.loss.pixel_type == "l1" and pre.loss.perceptual_weight == 0
    steps = [0, 199_999, 200_000, 400_000, 600_000, 800_000, 999_999]
    assert lr_curve(pre, steps) == pytest.approx([2e-4, 2e-4, 1e-4, 5e-5, 2.5e-5, 1.25e-5, 1.25e-5])
    notes = " ".join(departures(cfg))
    assert "BasicSR" in notes and "OST" in notes


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_default_schedule_is_unchanged_and_records_itself(name: str) -> None:
    assert preset(name, scale=3).name == name  # full size: no suffix
    cfg = preset(name)
    assert cfg.train.schedule == "default" and cfg.train.stage == "single" and departures(cfg) == []


def test_paper_schedule_keeps_each_version_and_the_scale() -> None:
    for name in PRESETS:
        default, paper = preset(name, scale=3), preset(f"{name}-paper", scale=3)
        assert paper.generator == default.generator and paper.discriminator == default.discriminator
        assert paper.data.degradation == default.data.degradation and paper.scale == 3
        assert paper.data.patch_size % 3 == 0
        if name != "esrgan":
            assert paper.loss == default.loss


def test_bad_and_renamed_size_names() -> None:
    with pytest.raises(ValueError, match="unknown size 'fast'"):
        preset("v3-fast")
    with pytest.raises(ValueError, match="'small' was renamed: use 'cpu'"):
        preset("v3-small")
    with pytest.raises(ValueError, match="unknown preset 'v9-cpu'"):
        preset("v9-cpu")
    assert preset("v3-paper").name == "v3-paper" and preset("v3-paper").train.schedule == "paper"


def test_optional_train_dirs_are_added_when_present(tmp_path: Path) -> None:
    cfg = preset("esrgan-paper")
    assert with_present_train_dirs(cfg, tmp_path) == cfg
    (tmp_path / PAPER_OPTIONAL_TRAIN_DIRS[0]).mkdir(parents=True)
    assert with_present_train_dirs(cfg, tmp_path).data.train_dirs == PAPER_TRAIN_DIRS + PAPER_OPTIONAL_TRAIN_DIRS
    default = preset("esrgan")
    assert with_present_train_dirs(default, tmp_path) == default  # only paper schedules take them
