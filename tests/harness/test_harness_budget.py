"""Equal budgets, or a flag: the study gives single-stage v1 as many generator updates as v2's pretraining + GAN
stage at every size, and trials.parquet records the updates and HR patches behind every scored model. Also the
pretraining-seed choice (`--pretrain-seed per-seed|shared`) of the study and the sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.sweeps import cli, plan, study
from harness.sweeps.collect import budget
from srgan.versions import CPU_GAN_STEPS, CPU_PRETRAIN_STEPS, preset


def _study_plan(tmp_path: Path, data_root: Path, *argv: str) -> plan.SweepPlan:
    args = study.build_parser().parse_args([*argv, "--vgg-fallback", "untrained", "--datasets", "set5",
                                            "--data-root", str(data_root)])
    return plan.plan_sweep(study.study_request(args), tmp_path / "study")


def _total(cfg) -> int:
    return cfg.train.total_steps


@pytest.mark.parametrize("size", ["cpu", "full", "paper"])
def test_v1_trains_as_many_generator_updates_as_v2_at_every_size(size: str, data_root: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    if size == "paper":  # the paper schedule trains on DIV2K sub-images, absent here: an empty stand-in folder
        folder = tmp_path / "data"
        for entry in data_root.iterdir():
            (folder / entry.name).parent.mkdir(parents=True, exist_ok=True)
            (folder / entry.name).symlink_to(entry)
        sub = folder / "DIV2K" / "DIV2K_train_HR_sub"
        sub.mkdir(parents=True)
        for image in sorted((data_root / "train" / "T91").iterdir())[:20]:
            (sub / image.name).symlink_to(image)
        data_root = folder
    sweep_plan = _study_plan(tmp_path, data_root, "--size", size, "--seeds", "1")
    runs = {cfg.name.split("-")[0]: cfg for cfg in sweep_plan.runs}
    pretrain = sweep_plan.pretrain_configs["srresnet-pretrain"]
    v1, v2 = runs["v1"], runs["v2"]
    assert v1.train.stage == "single" and v1.train.warmup_steps == 0 and v2.train.stage == "gan"
    assert _total(v1) == pretrain.train.warmup_steps + v2.train.gan_steps  # pretraining + GAN stage
    own = preset(f"v1-{size}" if size != "full" else "v1")
    reports = math.ceil(_total(own) / own.train.val_every)  # as many validations as its own schedule made
    assert math.ceil(_total(v1) / v1.train.val_every) == reports and v1.train.log_every == own.train.log_every
    if size == "cpu":
        assert _total(v1) == CPU_PRETRAIN_STEPS + CPU_GAN_STEPS
    text = "\n".join(sweep_plan.budget_lines())
    assert f"v1 {_total(v1)}, v2 {_total(v1)}" in text
    if size != "full":  # at full size the presets' own steps are already equal (1000 + 1000 = 2000)
        assert "v1 trains in one stage as many generator updates as v2's pretraining + GAN stage" in text


def test_preset_budgets_keep_v1s_own_steps_and_say_the_budgets_differ(data_root: Path, tmp_path: Path) -> None:
    args = cli.sweep_parser().parse_args(["--presets", "v1,v2", "--size", "cpu", "--steps", "0", "--grid", "none",
                                            "--preset-budgets", "--datasets", "set5", "--data-root", str(data_root),
                                            "--vgg-fallback", "untrained"])
    sweep_plan = plan.plan_sweep(cli.request_from_args(args), tmp_path / "sweep")
    v1 = next(cfg for cfg in sweep_plan.runs if cfg.name == "v1-cpu")
    assert _total(v1) == CPU_GAN_STEPS
    assert "unequal budgets are flagged unequal-budget" in "\n".join(sweep_plan.budget_lines())


def test_budget_counts_the_pretraining_behind_a_gan_stage(tmp_path: Path) -> None:
    trials = tmp_path / "moved" / "trials"  # a results folder moved since it ran: init.json's paths are stale
    pre, gan = trials / "srresnet-pretrain", trials / "v2-trial"
    for folder, batch, init_from in ((pre, 16, ""), (gan, 8, "/gone/trials/srresnet-pretrain")):
        folder.mkdir(parents=True)
        config = {"data": {"batch_size": batch}, "train": {"init_from": init_from}}
        (folder / "config.json").write_text(json.dumps({"config": config}))
    (pre / "checkpoint_0000700").mkdir()
    (gan / "init.json").write_text(json.dumps({
        "init_from": "/gone/trials/srresnet-pretrain",
        "weights": "/gone/trials/srresnet-pretrain/checkpoint_0000700/generator.safetensors"}))
    assert budget(pre, 700) == (700, 700 * 16)
    assert budget(gan, 60) == (700 + 60, 700 * 16 + 60 * 8)
    (gan / "init.json").write_text(json.dumps({"init_from": "RRDB_PSNR_x4.pth", "weights": "RRDB_PSNR_x4.pth"}))
    assert budget(gan, 60) == (None, None)  # published weights: what trained them is unknown, not guessed


# ----------------------------------------------------------------------------------------- pretraining seed


def test_study_defaults_pretrain_seed_by_size_and_per_seed_gives_each_seed_its_own(data_root: Path,
                                                                                   tmp_path: Path) -> None:
    for size, expected in (("tiny", "shared"), ("cpu", "shared"), ("full", "per-seed"), ("paper", "per-seed")):
        args = study.build_parser().parse_args(["--size", size])
        assert study.study_request(args).pretrain_seed == expected
    sweep_plan = _study_plan(tmp_path, data_root, "--size", "tiny", "--seeds", "2", "--pretrain-seed", "per-seed")
    assert sorted(sweep_plan.settings.pretrainings) == ["rrdb-pretrain-seed0", "rrdb-pretrain-seed1",
                                                        "srresnet-pretrain-seed0", "srresnet-pretrain-seed1"]
    for name, cfg in sweep_plan.pretrain_configs.items():
        assert cfg.train.seed == int(name[-1])
    for params, _ in sweep_plan.trials:
        if params["preset"] == "v1":
            continue
        cfg = plan.run_config(sweep_plan.settings, params)
        family = "rrdb" if params["preset"] in ("esrgan", "rrdb-continued") else "srresnet"  # its control too
        assert Path(cfg.train.init_from).name == f"{family}-pretrain-seed{params['train.seed']}"
    assert "one per seed (per-seed: pretraining variance included)" in "\n".join(sweep_plan.protocol_lines())
    shared = _study_plan(tmp_path, data_root, "--size", "tiny", "--seeds", "2")
    assert sorted(shared.settings.pretrainings) == ["rrdb-pretrain", "srresnet-pretrain"]


def test_the_old_word_trial_is_an_error_naming_per_seed(capsys) -> None:
    for parser in (cli.sweep_parser(), study.build_parser()):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["--pretrain-seed", "trial"])
        assert exit_.value.code == 2
        assert "--pretrain-seed 'trial' was renamed: use 'per-seed'" in capsys.readouterr().err
    record = plan.SweepRequest.from_record({"pretrain_seed": "trial"})  # a sweep.json written before the rename
    assert record.pretrain_seed == "per-seed" and record.equal_g_updates is False
