"""Config values are range-checked where the config is built, with the key named (issue 9.9): a batch of 0, a
NaN learning rate or `val_every=0` fail at once, not inside a training worker after Ray has started."""

from __future__ import annotations

import json

import pytest

from srgan.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    from_dict,
    override,
    parse_set_args,
    to_dict,
)
from srgan.versions import PRESETS, preset

BAD = [
    ("data.batch_size", "0", "at least 1"),
    ("data.batch_size", "-4", "at least 1"),
    ("optim.lr_g", "nan", "finite number > 0"),
    ("optim.lr_d", "inf", "finite number > 0"),
    ("optim.lr_g", "0", "finite number > 0"),
    ("optim.lr_d", "-1e-4", "finite number > 0"),
    ("train.val_every", "0", "at least 1"),
    ("train.log_every", "0", "at least 1"),
    ("train.ckpt_every", "-1", "at least 1"),
    ("train.gan_steps", "-1", "at least 0"),
    ("train.warmup_steps", "-5", "at least 0"),
    ("train.time_limit_s", "nan", "finite number of seconds"),
    ("generator.num_blocks", "0", "between 1 and 256"),
    ("generator.num_blocks", "10000", "between 1 and 256"),
    ("generator.num_features", "0", "between 1 and 1024"),
    ("generator.num_features", "640000", "between 1 and 1024"),
    ("generator.growth", "0", "between 1 and 1024"),
    ("generator.res_scale", "0", "in (0, 1]"),
    ("discriminator.num_stages", "0", "between 1 and 8"),
    ("discriminator.num_features", "0", "between 1 and 1024"),
    ("loss.adv_weight", "-0.001", "finite number >= 0"),
    ("loss.perceptual_weight", "nan", "finite number >= 0"),
    ("optim.betas", "1.0,0.99", "two numbers in [0, 1)"),
    ("optim.ema_decay", "1", "in [0, 1)"),
    ("optim.gamma", "0", "finite number > 0"),
    ("optim.milestones", "0,100", "steps >= 1"),
    ("data.patch_size", "0", "at least scale 4"),
    ("data.num_workers", "-1", "at least 0"),
    ("data.val_set", "", "a benchmark set name"),
    ("data.val_dirs", "val/images", "set exactly when data.val_set is 'dirs'"),  # with the default holdout
    ("data.val_count", "0", "between 1 and 10000"),
    ("data.val_crop", "16", "between 32 and 4096 px"),
    ("name", "../../..", "plain folder name"),
    ("name", "a/b", "plain folder name"),
    ("name", "", "plain folder name"),
]


@pytest.mark.parametrize("key,value,must", BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_out_of_range_values_are_refused_naming_the_key(key: str, value: str, must: str) -> None:
    with pytest.raises(ConfigError) as err:
        override(preset("v3"), parse_set_args([f"{key}={value}"]))
    message = str(err.value)
    assert message.startswith(f"{key} must be ") and must in message, message


def test_no_steps_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"train.gan_steps must be at least 0, with at least 1 step in all "
                                          r"\(train.warmup_steps and train.gan_steps together\)"):
        override(preset("v2"), {"train.warmup_steps": 0, "train.gan_steps": 0})


def test_limits_are_not_too_tight() -> None:
    """Legitimate extremes pass: a diverging lr (an experiment, not an error), no EMA, no adversarial loss,
    a one-step run, a patch of one LR pixel, every preset at every scale."""
    cfg = override(preset("esrgan"), {"optim.lr_g": 1e6, "optim.lr_d": 1e6, "optim.ema_decay": 0.0,
                                      "loss.adv_weight": 0.0, "train.warmup_steps": 0, "train.gan_steps": 1,
                                      "data.patch_size": 4, "data.batch_size": 1, "name": "run x4 (copy)"})
    assert cfg.optim.lr_g == 1e6 and cfg.data.patch_size == 4
    for name in list(PRESETS) + [f"{n}-tiny" for n in PRESETS]:
        for scale in (2, 3, 4):
            preset(name, scale=scale)


def test_an_empty_set_value_is_a_clear_error_not_a_json_error() -> None:
    with pytest.raises(ConfigError, match=r"^data.train_dirs must be at least one training folder .*names none"):
        override(preset("v3"), parse_set_args(["data.train_dirs="]))
    with pytest.raises(ConfigError, match=r"^data.batch_size: expected an integer, got ''"):
        override(preset("v3"), parse_set_args(["data.batch_size="]))
    assert override(preset("v3"), parse_set_args(["optim.milestones="])).optim.milestones == ()  # empty list: ok
    with pytest.raises(ConfigError, match=r"^optim.betas: '\[0.5, x\]' is not a valid JSON list"):
        override(preset("v3"), parse_set_args(["optim.betas=[0.5, x]"]))


def test_direct_construction_and_saved_configs_are_checked_too() -> None:
    with pytest.raises(ValueError, match="data.batch_size must be at least 1, got 0"):
        ExperimentConfig(data=DataConfig(batch_size=0))
    with pytest.raises(ValueError, match="train.val_every must be at least 1, got 0"):
        ExperimentConfig(train=TrainConfig(val_every=0))
    saved = json.loads(json.dumps(to_dict(preset("v1"))))
    saved["optim"]["lr_g"] = float("nan")  # json writes NaN, and a checkpoint's config.json may hold it
    with pytest.raises(ConfigError, match="optim.lr_g must be a finite number > 0, got nan"):
        from_dict(ExperimentConfig, saved)


def test_a_validation_folder_needs_val_set_dirs_and_the_reverse() -> None:
    with pytest.raises(ConfigError, match=r"^data.val_dirs must be set exactly when data.val_set is 'dirs'"):
        override(preset("v3"), {"data.val_set": "dirs"})  # names no folder
    cfg = override(preset("v3"), {"data.val_set": "dirs", "data.val_dirs": "val/a,val/b"})
    assert cfg.data.val_dirs == ("val/a", "val/b") and preset("v3").data.val_set == "holdout"
