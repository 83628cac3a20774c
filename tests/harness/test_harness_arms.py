"""A study's equal-budget controls and its loss-weight ladder (harness.sweeps.arms, issue 25): planned before Ray
starts,
each control the same generator updates, data order, lr schedule, seed and pretraining as its GAN partners, every
ladder arm from the same pretraining with the same budget, no run trained twice, and bad --ladder input refused
with rc 2 before Ray starts. The real tiny study (tests/conftest.py `tiny_study`) is checked for the same."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch

from harness.cluster import local_ray
from harness.run.storage import resolve_train_dirs
from harness.sweeps import arms, plan, study
from srgan.batches import TrainingBatches
from srgan.engine import learning_rates
from srgan.holdout import training_exclusions

SRRESNET_PARTNERS = ("v2", "v3", "ragan")


def _plan(tmp_path: Path, data_root: Path, *argv: str) -> plan.SweepPlan:
    args = study.build_parser().parse_args([*argv, "--vgg-fallback", "untrained", "--datasets", "set5",
                                            "--data-root", str(data_root)])
    return plan.plan_sweep(study.study_request(args), tmp_path / "study")


def _runs(sweep_plan: plan.SweepPlan) -> dict[tuple[str, int], object]:
    """(trial name, seed) -> the config the trial trains."""
    return {(params["preset"], params["train.seed"]): cfg
            for (params, _), cfg in zip(sweep_plan.trials, sweep_plan.runs, strict=True)}


@pytest.fixture(scope="module")
def cpu_plan(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> plan.SweepPlan:
    """The main job's plan (`--size cpu`, its default ladder), at two seeds."""
    return _plan(tmp_path_factory.mktemp("arms"), data_root, "--size", "cpu", "--seeds", "2")


def test_a_control_has_exactly_its_gan_partners_updates_data_lr_seed_and_pretraining(cpu_plan) -> None:
    runs = _runs(cpu_plan)
    pairs = [("srresnet-continued", p) for p in SRRESNET_PARTNERS] + [("rrdb-continued", "esrgan")]
    for seed in (0, 1):
        for control_name, partner_name in pairs:
            control, partner = runs[control_name, seed], runs[partner_name, seed]
            c, g = control.train, partner.train
            # exactly the GAN stage's generator updates, every one a pixel-loss step: no D step, no GAN phase
            assert c.total_steps == g.total_steps == g.gan_steps and c.warmup_steps == g.gan_steps
            assert c.gan_steps == 0 and control.loss.adv_weight == 0 and control.loss.perceptual_weight == 0
            # same seed, pretrained generator, data (hence data order), optimiser, EMA and validation cadence
            assert c.seed == g.seed == seed and c.stage == g.stage == "gan" and c.init_from == g.init_from
            assert control.data == partner.data and control.generator == partner.generator
            assert control.optim == partner.optim and (c.val_every, c.ckpt_every) == (g.val_every, g.ckpt_every)
            # the lr of every generator update, as the engine computes it, is the partner's
            assert [learning_rates(control, s)[0] for s in range(c.total_steps)] == [
                learning_rates(partner, s)[0] for s in range(g.total_steps)]
    # one control per generator family and seed: v2, v3 and RaGAN's GAN stages would continue identically
    assert sorted(name for name, arm in cpu_plan.settings.arms.items()
                  if arm["control"] and not arm.get("seed_offset")) == ["rrdb-continued", "srresnet-continued"]


def test_a_control_sees_its_partners_batches(cpu_plan, data_root: Path) -> None:
    """The data order, measured: the first batches a control and its GAN partner train on are the same tensors."""
    runs = _runs(cpu_plan)
    control, partner = runs["srresnet-continued", 1], runs["v3", 1]
    batches = []
    for cfg in (control, partner):
        folders = resolve_train_dirs(cfg, data_root)
        loader = TrainingBatches(cfg, folders, device="cpu", start_step=0, num_steps=2, num_workers=0,
                                 exclude=training_exclusions(cfg, folders, data_root))
        batches.append([gt for _, gt in loader])
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a, b)


def test_the_ladder_shares_its_zero_arm_with_the_control_and_its_own_value_with_v2(cpu_plan) -> None:
    settings, runs = cpu_plan.settings, _runs(cpu_plan)
    key, values = next(iter(arms.parse_ladder(study.LADDER["cpu"]).items()))
    assert key == "loss.adv_weight" and 0.0 in values and len(values) >= 4 and max(values) / min(
        v for v in values if v > 0) >= 100  # four values or more, two decades or more, 0 included
    members = {role["ladder_value"]: name for name, role in settings.roles.items()
               if role.get("ladder_key") == key and not settings.arms.get(name, {}).get("seed_offset")}
    assert sorted(members) == values  # one trial name per value (and a further seed block: the next test)
    assert members[0.0] == "srresnet-continued"  # the 0 arm is the control: not trained twice
    assert members[0.001] == "v2"  # v2's own weight is v2's study trial
    assert not any(name.startswith("v2@") and name.endswith("=0") for name in settings.arms)
    for value, name in members.items():
        assert settings.roles[name]["ladder_recipe"] == "v2"
        for seed in (0, 1):
            cfg, v2 = runs[name, seed], runs["v2", seed]
            # the same pretraining per seed, the same budget, the arm's own weight
            assert cfg.train.init_from == v2.train.init_from and cfg.train.total_steps == v2.train.total_steps
            assert cfg.loss.adv_weight == value and cfg.train.seed == seed
            if name != "srresnet-continued":
                assert settings.roles[name]["control"] == "srresnet-continued"
    gan_trials = {p for p, _ in runs}
    # five presets, two controls, the arms of their own, and a further seed block of the top arm and the 0 arm
    extra = study.LADDER_SEED_FACTOR["cpu"] - 1
    assert len(cpu_plan.trials) == 2 * len(gan_trials) == 2 * (5 + 2 + len(values) - 2 + 2 * extra)


def test_the_top_arm_and_the_zero_arm_get_further_seeds_and_nothing_else(cpu_plan) -> None:
    """At size cpu the ladder's top arm and its 0 arm train LADDER_SEED_FACTOR times --seeds (here 2: seeds 0 to
    2 * factor - 1), each further trial the arm's own config with its seed moved past the study's; every other trial
    keeps the study's seeds."""
    settings, runs = cpu_plan.settings, _runs(cpu_plan)
    factor = study.LADDER_SEED_FACTOR["cpu"]
    assert factor >= 2
    top = max(arms.parse_ladder(study.LADDER["cpu"])["loss.adv_weight"])
    top_name = arms.arm_name("v2", "loss.adv_weight", top)
    offsets = [2 * k for k in range(1, factor)]
    blocks = {name: arm for name, arm in settings.arms.items() if arm.get("seed_offset")}
    assert sorted(blocks) == sorted(f"{base} (seed+{o})" for base in (top_name, "srresnet-continued") for o in offsets)
    for name, arm in blocks.items():
        base, _, offset = name.partition(" (seed+")
        offset = int(offset.removesuffix(")"))
        assert arm["seed_offset"] == offset and settings.roles[name] == settings.roles[base]
        for seed in (0, 1):
            further, own = runs[name, seed], runs[base, seed]
            assert further.train.seed == seed + offset and own.train.seed == seed
            assert replace(further, train=replace(further.train, seed=seed)) == own  # nothing else differs
    seeds = {}
    for (name, _), cfg in runs.items():
        seeds.setdefault(settings.roles[name]["version"], set()).add(cfg.train.seed)
    assert seeds[top_name] == seeds["srresnet-continued"] == set(range(2 * factor))
    assert all(s == {0, 1} for v, s in seeds.items() if v not in (top_name, "srresnet-continued"))
    assert arms.expand(settings.arms, {"preset": f"{top_name} (seed+2)", "train.seed": 1}) == (
        {"preset": "v2", "train.seed": 3, "loss.adv_weight": top}, False)
    with pytest.raises(ValueError, match="needs the trial's train.seed"):
        arms.expand(settings.arms, {"preset": f"{top_name} (seed+2)"})


def test_no_further_seeds_without_a_zero_arm_or_at_factor_one(tmp_path: Path, data_root: Path) -> None:
    no_zero = _plan(tmp_path, data_root, "--size", "cpu", "--seeds", "1", "--ladder", "loss.adv_weight=0.01,1")
    assert not any(arm.get("seed_offset") for arm in no_zero.settings.arms.values())
    tiny = _plan(tmp_path, data_root, "--size", "tiny", "--seeds", "1", "--ladder", "loss.adv_weight=0,1")
    assert study.LADDER_SEED_FACTOR["tiny"] == 1
    assert not any(arm.get("seed_offset") for arm in tiny.settings.arms.values())


def test_roles_give_every_trial_its_study_version(cpu_plan) -> None:
    s = cpu_plan.settings
    role = arms.trial_role(s.pretrainings, s.roles, {"run_name": "srresnet-pretrain"})
    assert role == {"version": "srresnet-pretrain"}
    assert arms.trial_role(s.pretrainings, s.roles, {"preset": "v3", "train.seed": 1}) == {
        "version": "v3", "control": "srresnet-continued"}
    assert arms.trial_role(s.pretrainings, s.roles, {"preset": "esrgan"})["control"] == "rrdb-continued"
    assert arms.trial_role(s.pretrainings, s.roles, {"preset": "v1"}) == {"version": "v1"}  # single stage
    assert arms.trial_role(s.pretrainings, s.roles, None) == {}


def test_tiny_runs_controls_but_no_ladder_and_ladder_none_turns_it_off(tmp_path: Path, data_root: Path) -> None:
    tiny = _plan(tmp_path, data_root, "--size", "tiny", "--seeds", "2")
    assert sorted(tiny.settings.arms) == ["rrdb-continued", "srresnet-continued"]
    assert len(tiny.trials) == 2 * 7
    off = _plan(tmp_path, data_root, "--size", "cpu", "--seeds", "1", "--ladder", "none")
    assert sorted(off.settings.arms) == ["rrdb-continued", "srresnet-continued"]
    small = _plan(tmp_path, data_root, "--size", "tiny", "--seeds", "1", "--ladder", "loss.adv_weight=1,0,0.01",
                  "--ladder-presets", "v2,esrgan")
    # on ESRGAN's recipe (perceptual loss on) the 0 arm is a GAN stage of its own, not the pixel-only control
    assert sorted(small.settings.arms) == ["esrgan@adv_weight=0", "esrgan@adv_weight=0.01", "esrgan@adv_weight=1",
                                           "rrdb-continued", "srresnet-continued", "v2@adv_weight=0.01",
                                           "v2@adv_weight=1"]
    assert small.settings.roles["esrgan@adv_weight=0"]["control"] == "rrdb-continued"


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("Ray was started although the input was bad")

    monkeypatch.setattr(local_ray, "init_ray", refuse)
    yield
    import ray

    assert not ray.is_initialized()


@pytest.mark.parametrize(("ladder", "presets", "said"), [
    ("loss.adv_wieght=0,1", "v2", "--ladder loss.adv_wieght: unknown config key"),
    ("loss.adv_weight=0,abc", "v2", "--ladder loss.adv_weight: 'abc' is not a number"),
    ("loss.adv_weight=0,nan", "v2", "is not a finite number"),
    ("loss.adv_weight=1", "v2", "at least two values"),
    ("loss.adv_weight=0,1,1", "v2", "a value is given twice"),
    ("loss.adv_weight=-1,1", "v2", "loss.adv_weight must be a finite number >= 0"),  # the config's own check
    ("loss.adv_weight", "v2", "--ladder expects KEY=V1,V2,..."),
    ("generator.num_blocks=2,4", "v2", "changes v2's pretraining"),
    ("train.gan_steps=4,8", "v2", "changes v2's budget"),
    ("train.seed=0,1", "v2", "--seeds"),
    ("loss.adv_weight=0,1", "v1", "v1 is single-stage"),
    ("loss.adv_weight=0,1", "v9", "--ladder-presets: unknown preset 'v9'"),
    ("none", "v2", "--ladder-presets v2: no ladder at size tiny"),
])
def test_a_bad_ladder_is_refused_before_ray_starts(ladder: str, presets: str, said: str, no_ray, capsys,
                                                   tmp_path: Path, data_root: Path) -> None:
    argv = ["--size", "tiny", "--seeds", "1", "--datasets", "set5", "--vgg-fallback", "untrained", "--ladder",
            ladder, "--ladder-presets", presets, "--data-root", str(data_root), "--out", str(tmp_path / "out")]
    assert study.main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and err.startswith("error: ")
    assert not (tmp_path / "out" / "trials").exists()  # nothing ran


@pytest.mark.slow
def test_the_real_tiny_study_trained_each_control_as_its_partners(tiny_study) -> None:
    """In a real run (the session's tiny study, resumed once): each control's config, history and budget."""
    out = tiny_study.out
    trials = pl.read_parquet(out / "trials.parquet")
    by_version = {v: trials.filter(pl.col("version") == v) for v in trials["version"].unique().to_list()}
    assert {"srresnet-continued", "rrdb-continued", "srresnet-pretrain", "rrdb-pretrain", "bicubic"} <= set(
        by_version)
    history = pl.read_parquet(out / "history.parquet")
    for control, partners in (("srresnet-continued", SRRESNET_PARTNERS), ("rrdb-continued", ("esrgan",))):
        for row in by_version[control].iter_rows(named=True):
            assert row["status"] == "ok" and row["stage"] == "gan" and row["control"] is None
            config = json.loads(row["config_json"])
            own = history.filter(pl.col("trial_id") == row["trial_id"])
            assert set(own["phase"]) == {"warmup"} and own["loss_d_real"].is_null().all()  # no D step
            for name in partners:
                (partner,) = by_version[name].filter(pl.col("seed") == row["seed"]).iter_rows(named=True)
                assert partner["control"] == control
                other = json.loads(partner["config_json"])
                assert row["g_updates"] == partner["g_updates"] and row["images_seen"] == partner["images_seen"]
                assert row["init_from"] == partner["init_from"] and config["train"]["seed"] == other["train"]["seed"]
                assert config["data"] == other["data"] and config["optim"] == other["optim"]
                assert config["train"]["warmup_steps"] == other["train"]["gan_steps"]
                assert own["step"].max() == history.filter(pl.col("trial_id") == partner["trial_id"])["step"].max()


def test_a_further_seed_blocks_row_is_labelled_by_the_seed_it_trained(tmp_path: Path) -> None:
    """Tune knows the trial as seed 0 of "v2@adv_weight=10 (seed+3)"; its row says seed 3, and so does its label."""
    from harness.sweeps.collect import Outcome, _seed_block_label

    def outcome(name: str, tune_seed: int) -> Outcome:
        return Outcome(trial_id="t", run_dir=tmp_path, stage="gan", params={"preset": name, "train.seed": tune_seed},
                       role={"version": "v2@adv_weight=10"})

    config = {"train": {"seed": 3}}
    assert _seed_block_label("v2@adv_weight=10 (seed+3) seed=0", outcome("v2@adv_weight=10 (seed+3)", 0),
                             config) == "v2@adv_weight=10 seed=3"
    assert _seed_block_label("v2@adv_weight=10 seed=3", outcome("v2@adv_weight=10", 3), config) == (
        "v2@adv_weight=10 seed=3")  # a trial that trained its Tune seed keeps its label
