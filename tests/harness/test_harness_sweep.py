"""What a sweep plans (its grid, one shared pretraining, each stage's steps), checked without Ray, and
`harness.train --init-from` a finished run's pretraining (the session's real tiny study, `tiny_study` in
tests/conftest.py, which also holds the real interrupted-and-resumed run: tests/harness/test_harness_study.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.sweeps.plan import SweepRequest, plan_sweep


def test_the_sweeps_grid_is_planned_with_one_shared_pretraining(data_root: Path, tmp_path: Path) -> None:
    """v3 and RaGAN x two adversarial weights, 6 steps: one SRResNet pretraining of the 3 pixel-loss steps, run
    once for all four GAN trials of 3 GAN steps each, which start from its folder; Tune's grid is the presets x
    the weights. Planning starts nothing and writes nothing."""
    request = SweepRequest(presets=("v3", "ragan"), grid={"loss.adv_weight": [0.001, 0.005]}, steps=6,
                           datasets=("set5",), vgg_fallback="untrained", scheduler="none", max_concurrent=1,
                           data_root=str(data_root))
    out = tmp_path / "sweep"
    sweep = plan_sweep(request, out)
    assert list(sweep.settings.pretrainings) == ["srresnet-pretrain"]
    pretrain = sweep.pretrain_configs["srresnet-pretrain"]
    assert (pretrain.train.warmup_steps, pretrain.train.gan_steps) == (3, 0)
    assert sweep.pretrain_users == {"srresnet-pretrain": ["v3", "v3", "ragan", "ragan"]}
    assert sorted((p["preset"], p["loss.adv_weight"]) for p, _ in sweep.trials) == [
        ("ragan", 0.001), ("ragan", 0.005), ("v3", 0.001), ("v3", 0.005)]
    for (params, _), run in zip(sweep.trials, sweep.runs, strict=True):
        assert (run.train.warmup_steps, run.train.gan_steps) == (0, 3)  # the warmup half went to the pretraining
        assert run.train.init_from == str(out / "trials" / "srresnet-pretrain")
        assert run.loss.adv_weight == params["loss.adv_weight"] and run.loss.perceptual_weights == "untrained"
    space = sweep.gan_space()
    assert space["preset"] == {"grid_search": ["v3", "ragan"]}
    assert space["loss.adv_weight"] == {"grid_search": [0.001, 0.005]}
    assert sweep.step_counts() == (3 + 4 * 3, 4 * 6)  # W + K*G against K*(W + G)
    assert not out.exists()


@pytest.mark.parametrize("source", ["trial", "checkpoint"])
@pytest.mark.slow
def test_init_from_a_results_trial_or_a_checkpoint_folder(tiny_study, local_ray, data_root, tmp_path, source) -> None:
    """`harness.train --init-from` a study's pretraining trial (its last checkpoint) or a checkpoint folder: the
    GAN stage starts from exactly those weights, and says so in its config. The CLI's `main` in this process, on
    the session's Ray."""
    from safetensors.torch import load_file

    from harness.run import train
    from harness.run.worker import state_digest

    out = tiny_study.out
    pretrain = out / "trials" / "srresnet-pretrain"
    last = sorted(p for p in pretrain.glob("checkpoint_*") if p.is_dir())[-1]
    init = pretrain if source == "trial" else last
    argv = ["--preset", "v3-tiny", "--init-from", str(init), "--vgg-fallback", "untrained", "--storage", str(tmp_path),
            "--name", "gan", "--data-root", str(data_root), "--set", "train.gan_steps=2", "--set", "train.log_every=1"]
    assert train.main(argv) == 0
    record = json.loads((tmp_path / "gan" / "init.json").read_text())
    assert record["generator_digest"] == state_digest(load_file(str(last / "generator.safetensors")))
    config = json.loads((tmp_path / "gan" / "config.json").read_text())
    assert config["stage"] == "gan" and config["config"]["train"]["warmup_steps"] == 0
    assert config["init_from"] == str(init.resolve())
