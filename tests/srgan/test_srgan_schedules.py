"""Paper schedules resolve to the published numbers (SRGAN, Ledig et al. 2017, sec. 2.2 and 3.2; ESRGAN, Wang et
al. 2018, sec. 4.1; totals the papers leave out from BasicSR's option files), and say where they depart."""

from __future__ import annotations

from pathlib import Path

import pytest

from srgan.engine import lr_at
from srgan.versions import (
    PAPER_OPTIONAL_TRAIN_DIRS,
    PAPER_TRAIN_DIRS,
    PRESETS,
    departures,
    preset,
    pretrain_stage,
    with_present_train_dirs,
)

SRRESNET_PRESETS = ["v1", "v2", "v3", "ragan"]


def lr_curve(cfg, steps: list[int]) -> list[float]:
    o = cfg.optim
    return [lr_at(o.lr_g, o.milestones, o.gamma, s) for s in steps]


@pytest.mark.parametrize("name", SRRESNET_PRESETS)
def test_srgan_schedule(name: str) -> None:
    cfg = preset(f"{name}-paper")
    assert cfg.train.schedule == "paper"
    assert cfg.data.batch_size == 16 and cfg.data.patch_size == 96
    assert cfg.optim.betas[0] == 0.9
    # GAN: 10^5 updates at 1e-4, then 10^5 at 1e-5
    assert cfg.train.gan_steps == 200_000
    assert lr_curve(cfg, [0, 99_999, 100_000, 199_999]) == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5])
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
    steps = [0, 49_999, 50_000, 100_000, 200_000, 300_000, 399_999]
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
