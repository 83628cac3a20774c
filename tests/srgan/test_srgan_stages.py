"""Two-stage training on the config side: which pretrainings are shared (pretrain_key), what the stages train,
and a GAN stage initialised from a checkpoint folder, a run folder or a bare weights file."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from srgan_helpers import make_dataset, micro, tiny, train_metrics

from srgan.checkpoint import (
    CheckpointError,
    init_generator,
    load_config,
    load_init_generator,
    resolve_init_source,
    save_checkpoint,
)
from srgan.config import ConfigError, ExperimentConfig, from_dict, override, to_dict
from srgan.engine import GanEngine
from srgan.versions import gan_stage, preset, pretrain_key, pretrain_stage, two_stage

# ------------------------------------------------------------------------------------------ pretrain_key


@pytest.mark.parametrize("variant", [lambda n: preset(n), lambda n: preset(n, scale=2), lambda n: preset(f"{n}-tiny"),
                                     lambda n: preset(f"{n}-paper")])
def test_v2_v3_ragan_share_one_pretraining_and_esrgan_has_its_own(variant) -> None:
    keys = {name: pretrain_key(variant(name)) for name in ("v2", "v3", "ragan", "esrgan")}
    assert keys["v2"] == keys["v3"] == keys["ragan"]
    assert keys["esrgan"] != keys["v3"]
    assert len(keys["v3"]) == 16 and int(keys["v3"], 16) >= 0


def test_pretrain_key_is_what_makes_pretrainings_identical() -> None:
    base = preset("v3")
    key = pretrain_key(base)
    assert pretrain_key(pretrain_stage(base)) == key  # a preset or its pretrain stage: the same key
    same = {  # what the pixel-only stage never uses
        "loss.adv_weight": 1e-2, "loss.perceptual_weight": 0.5, "loss.pixel_weight": 1.0,
        "loss.adv_type": "relativistic", "discriminator.num_features": 32, "optim.lr_d": 1e-3,
        "optim.milestones": "10,20", "train.gan_steps": 7,
        "data.val_crop": 64, "name": "other", "train.log_every": 3,
    }
    for dotted, value in same.items():
        assert pretrain_key(override(base, {dotted: value})) == key, dotted
    different = {
        "train.seed": 1, "train.warmup_steps": 999, "train.pretrain_lr": 3e-4, "train.pretrain_milestones": "100",
        "generator.num_blocks": 8, "generator.skip": "bicubic", "data.batch_size": 8, "data.patch_size": 96,
        "data.degradation": "naive", "data.train_dirs": "train/T91", "loss.pixel_type": "mse",
        "optim.betas": "0.9,0.99", "optim.ema_decay": 0.999, "optim.lr_g": 2e-4,
        # the held-out validation images leave the training data; a benchmark validation set takes none out
        "data.val_count": 3, "data.val_set": "set14",
    }
    for dotted, value in different.items():
        assert pretrain_key(override(base, {dotted: value})) != key, dotted
    assert pretrain_key(preset("v3", scale=2)) != key
    on_set14 = override(base, {"data.val_set": "set14"})
    assert pretrain_key(override(on_set14, {"data.val_set": "bsd100"})) == pretrain_key(on_set14)


def test_v1_keeps_its_single_stage_recipe() -> None:
    assert not two_stage(preset("v1")) and not two_stage(preset("v1-paper"))
    assert all(two_stage(preset(n)) for n in ("v2", "v3", "ragan", "esrgan", "v3-tiny"))
    assert not two_stage(pretrain_stage(preset("v3"))) and not two_stage(gan_stage(preset("v3"), "x"))
    with pytest.raises(ValueError, match="single-stage"):
        pretrain_key(preset("v1"))


# ------------------------------------------------------------------------------------------------ stages


def test_pretrain_stage_trains_the_generator_on_pixels_only(image_folder: Path) -> None:
    cfg = pretrain_stage(micro("v3", train__warmup_steps=3))
    assert (cfg.train.stage, cfg.train.warmup_steps, cfg.train.gan_steps) == ("pretrain", 3, 0)
    assert cfg.loss.perceptual_weight == 0 and cfg.name == "srresnet-pretrain"
    engine = GanEngine(cfg, device="cpu")
    assert engine.perceptual is None  # no VGG19 is built for a pixel-only stage
    d_before = {k: v.clone() for k, v in engine.net_d.state_dict().items()}
    g_before = {k: v.clone() for k, v in engine.net_g.state_dict().items()}
    history = train_metrics(engine, make_dataset(cfg, image_folder), start_step=0, num_steps=engine.total_steps)
    assert engine.step == 3 and all("loss_adv_g" not in m for m in history)
    assert all(torch.equal(v, d_before[k]) for k, v in engine.net_d.state_dict().items())  # D untouched
    assert any(not torch.equal(v, g_before[k]) for k, v in engine.net_g.state_dict().items())


def test_pretrain_stage_moves_the_pretraining_schedule_into_optim() -> None:
    cfg = override(preset("esrgan"), {"train.pretrain_lr": 2e-4, "train.pretrain_milestones": "10,20",
                                      "train.pretrain_gamma": 0.25, "optim.milestones": "5"})
    pre = pretrain_stage(cfg)
    assert (pre.optim.lr_g, pre.optim.milestones, pre.optim.gamma) == (2e-4, (10, 20), 0.25)
    assert pretrain_stage(preset("v2")).optim.lr_g == preset("v2").optim.lr_g  # 0: the preset's lr
    with pytest.raises(ValueError, match="single-stage config"):
        pretrain_stage(pre)


def test_gan_stage_records_its_source_and_survives_json() -> None:
    cfg = gan_stage(preset("ragan"), "runs/pre/checkpoint_0001000")
    assert (cfg.train.stage, cfg.train.warmup_steps, cfg.train.init_from) == ("gan", 0, "runs/pre/checkpoint_0001000")
    assert cfg.train.gan_steps == preset("ragan").train.gan_steps
    assert from_dict(ExperimentConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    with pytest.raises(ValueError, match="init_from"):
        gan_stage(preset("ragan"), "")
    with pytest.raises(ConfigError, match="stage"):
        override(preset("v3"), {"train.stage": "finetune"})


# -------------------------------------------------------------------------------------------------- init


def _pretrained(cfg: ExperimentConfig, folder: Path, image_folder: Path, *, steps: int = 2) -> GanEngine:
    """Train `steps` pixel-only steps and save a checkpoint at `folder`."""
    engine = GanEngine(cfg, device="cpu")
    train_metrics(engine, make_dataset(cfg, image_folder), start_step=0, num_steps=steps)
    save_checkpoint(engine, folder)
    return engine


def _same(state_a: dict, state_b: dict) -> bool:
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@pytest.mark.parametrize("name", ["v3", "esrgan"])
def test_gan_stage_starts_from_the_pretrained_weights(name: str, tmp_path: Path, image_folder: Path) -> None:
    pre_cfg = pretrain_stage(micro(name, train__warmup_steps=2))
    _pretrained(pre_cfg, tmp_path / "pre", image_folder)
    source = load_file(str(tmp_path / "pre" / "generator.safetensors"))  # the EMA copy for esrgan
    cfg = gan_stage(micro(name), tmp_path / "pre")
    engine = GanEngine(cfg, device="cpu")
    assert not _same(engine.net_g.state_dict(), source)
    used = init_generator(engine, cfg.train.init_from)
    assert used == tmp_path / "pre" / "generator.safetensors"
    assert _same(engine.net_g.state_dict(), source)
    if engine.net_g_ema is not None:
        assert _same(engine.net_g_ema.state_dict(), source)
    history = train_metrics(engine, make_dataset(cfg, image_folder), start_step=0, num_steps=1)
    assert "loss_adv_g" in history[0]  # the GAN phase from the first step


def test_run_folder_gives_its_last_checkpoint(tmp_path: Path, image_folder: Path) -> None:
    cfg = pretrain_stage(micro("v2", train__warmup_steps=4))
    engine = GanEngine(cfg, device="cpu")
    data = make_dataset(cfg, image_folder)
    run = tmp_path / "run"
    train_metrics(engine, data, start_step=0, num_steps=2)
    save_checkpoint(engine, run / "checkpoint_0000002")
    train_metrics(engine, data, start_step=2, num_steps=2)
    save_checkpoint(engine, run / "checkpoint_0000004")
    (run / "checkpoint_0000009").mkdir()  # a half-written checkpoint (no weights yet) is not a candidate
    assert resolve_init_source(run) == run / "checkpoint_0000004" / "generator.safetensors"
    state = load_init_generator(run, gan_stage(micro("v2"), run))
    assert _same(state, engine.net_g.state_dict())


def test_bare_weights_files(tmp_path: Path, image_folder: Path) -> None:
    cfg = pretrain_stage(micro("v3", train__warmup_steps=2))
    _pretrained(cfg, tmp_path / "pre", image_folder)
    bare = tmp_path / "elsewhere" / "g.safetensors"  # no config.json beside it: keys and shapes are checked
    bare.parent.mkdir()
    shutil.copy(tmp_path / "pre" / "generator.safetensors", bare)
    state = load_init_generator(bare, micro("v2"))
    assert _same(state, load_file(str(bare)))
    with pytest.raises(CheckpointError, match="unexpected keys body.1") as err:
        load_init_generator(bare, micro("v3", generator__num_blocks=1))
    assert str(bare) in str(err.value)
    with pytest.raises(CheckpointError, match="missing keys body.0.blocks.0.convs.0.bias.*unexpected keys body.0.act"):
        load_init_generator(bare, micro("esrgan"))


def test_published_pth_initialises_a_matching_rrdbnet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = micro("esrgan", generator__skip="none")
    source = GanEngine(cfg, device="cpu").net_g
    renames = {"conv_body": "trunk_conv", "conv_up.0": "upconv1", "conv_up.1": "upconv2", "conv_hr": "HRconv"}
    official = {}
    for key, value in source.state_dict().items():
        module, _, param = key.rpartition(".")
        if module.startswith("body."):
            _, n, _, k, _, j = module.split(".")
            module = f"RRDB_trunk.{n}.RDB{int(k) + 1}.conv{int(j) + 1}"
        official[f"{renames.get(module, module)}.{param}"] = value
    path = tmp_path / "RRDB_PSNR_x4.pth"
    torch.save(official, path)
    assert _same(load_init_generator(path, cfg), source.state_dict())
    with pytest.raises(CheckpointError, match="generator.skip: source 'none', config 'bicubic'"):
        load_init_generator(path, micro("esrgan"))


def test_architecture_mismatch_names_the_differences(tmp_path: Path, image_folder: Path) -> None:
    _pretrained(pretrain_stage(micro("v3", train__warmup_steps=2)), tmp_path / "pre", image_folder)
    with pytest.raises(CheckpointError, match="generator.arch: source 'srresnet', config 'rrdbnet'"):
        load_init_generator(tmp_path / "pre", micro("esrgan"))
    with pytest.raises(CheckpointError, match="scale: source 4, config 2"):
        load_init_generator(tmp_path / "pre", micro("v3", scale=2))
    with pytest.raises(CheckpointError, match="not found"):
        load_init_generator(tmp_path / "nowhere", micro("v3"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        load_init_generator(tmp_path / "empty", micro("v3"))
    assert load_config(tmp_path / "pre").train.stage == "pretrain"  # the stage travels in config.json


def test_tiny_helper_configs_are_single_stage() -> None:
    assert tiny("v3").train.stage == "single" and replace(tiny("v3").train, stage="gan").stage == "gan"
