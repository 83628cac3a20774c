"""Config trees: dotted overrides, unknown keys, Literal choices, and dict/JSON round trips of every preset."""

from __future__ import annotations

import json

import pytest

from srgan.config import ConfigError, ExperimentConfig, from_dict, override, parse_set_args, to_dict, to_json
from srgan.versions import CPU_GAN_STEPS, CPU_PRETRAIN_STEPS, PRESETS, preset


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", sorted(PRESETS) + [f"{n}-tiny" for n in sorted(PRESETS)])
def test_every_preset_round_trips_through_dict_and_json(name: str, scale: int) -> None:
    cfg = preset(name, scale=scale)
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg
    # JSON turns tuples into lists; from_dict must turn them back
    assert from_dict(ExperimentConfig, json.loads(to_json(cfg))) == cfg


@pytest.mark.parametrize("key", ["loss.adv_wieght", "nope", "loss.adv_weight.deeper", "trainer.seed"])
def test_unknown_dotted_key_is_an_error_naming_it(key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        override(preset("v3"), {key: 1})


def test_unknown_nested_key_in_a_dict_names_its_full_path() -> None:
    tree = to_dict(preset("v3"))
    tree["optim"]["ema"] = 0.5
    with pytest.raises(ConfigError, match=r"optim\.ema"):
        from_dict(ExperimentConfig, tree)


def test_bad_literal_value_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        override(preset("v3"), {"loss.adv_type": "wgan"})
    message = str(err.value)
    assert "loss.adv_type" in message and "'wgan'" in message
    assert "'vanilla'" in message and "'relativistic'" in message


def test_overrides_coerce_cli_strings_and_reject_bad_values() -> None:
    cfg = override(preset("v3"), parse_set_args(["loss.adv_weight=1e-3", "data.augment=false",
                                                 "optim.milestones=100,200", "data.batch_size=8",
                                                 "optim.betas=[0.5, 0.9]"]))
    assert cfg.loss.adv_weight == 1e-3 and cfg.data.augment is False
    assert cfg.optim.milestones == (100, 200) and cfg.data.batch_size == 8 and cfg.optim.betas == (0.5, 0.9)
    assert preset("v3").loss.adv_weight == 5e-3  # presets are frozen values, overrides make copies
    with pytest.raises(ConfigError, match="data.batch_size"):
        override(cfg, {"data.batch_size": "eight"})
    with pytest.raises(ConfigError, match="data.batch_size"):
        override(cfg, {"data.batch_size": 2.5})
    with pytest.raises(ConfigError, match="optim.amp"):
        override(cfg, {"optim.amp": "maybe"})
    with pytest.raises(ConfigError, match="scale must be 2, 3 or 4"):
        override(cfg, {"scale": 5})
    with pytest.raises(ConfigError, match="not a multiple of scale"):
        override(cfg, {"data.patch_size": 98})
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["loss.adv_weight"])


def test_presets_differ_only_where_their_version_did() -> None:
    v1, v2, v3, ragan, esrgan = (preset(n) for n in ("v1", "v2", "v3", "ragan", "esrgan"))
    assert (v1.generator.output, v2.generator.output) == ("sigmoid", "linear")
    assert (v1.data.degradation, v2.data.degradation) == ("naive", "matlab")
    assert v2.loss.perceptual_weight == 0 and v3.loss.perceptual_weight == 1.0
    assert (v3.loss.adv_type, ragan.loss.adv_type) == ("vanilla", "relativistic")
    assert esrgan.generator.arch == "rrdbnet" and esrgan.optim.ema_decay > 0 and ragan.optim.ema_decay == 0
    with pytest.raises(ValueError, match="unknown preset"):
        preset("v4")


def test_a_run_trains_its_pixel_loss_and_gan_steps_in_all() -> None:
    """TrainConfig.total_steps, the one place the sum is written: the v2 preset's 1000 warmup and 1000 GAN steps
    (srgan.versions), the cpu size's 600 + 80, single-stage v1's 2000 GAN steps alone."""
    assert [preset(name).train.total_steps for name in ("v2", "v2-cpu", "v1")] == [2000, 680, 2000]
    assert (CPU_PRETRAIN_STEPS, CPU_GAN_STEPS) == (600, 80)
