"""A sweep driver interrupted mid-sweep and restarted with --resume completes without repeating finished
trials (the session's `resumed_sweep`, see tests/conftest.py); what the finished sweep folder holds."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from results import schema

pytestmark = pytest.mark.slow


def test_resume_completes_without_repeating_finished_trials(resumed_sweep) -> None:
    out = resumed_sweep.out
    assert len(resumed_sweep.finished_before_interrupt) == 1
    trials = pl.read_parquet(out / schema.TRIALS_FILE).filter(pl.col("status") != "baseline")
    gan = trials.filter(pl.col("stage") == "gan")
    assert sorted(gan["preset"].to_list()) == ["ragan", "ragan", "v3", "v3"]
    assert trials["status"].to_list() == ["ok"] * 5
    assert gan["steps"].to_list() == [3] * 4  # 6 steps, the warmup half went to the shared pretraining
    starts = {t: len((out / "trials" / t / "starts.log").read_text().split()) for t in trials["trial_id"]}
    for trial_id in [*resumed_sweep.finished_before_interrupt, *(t for t in starts if t.endswith("-pretrain"))]:
        assert starts[trial_id] == 1, f"{trial_id} was run again after --resume"
    # the GAN trial that was running at Ctrl-C started twice (before and after --resume); the two not yet
    # started at Ctrl-C started once
    assert sorted(starts[t] for t in gan["trial_id"]) == [1, 1, 1, 2]


def test_one_shared_pretraining_starts_every_gan_trial(resumed_sweep) -> None:
    """v3 and RaGAN x two adversarial weights: one pretraining, whose final generator is each GAN trial's
    initial generator (digest of the weights the trial started from, written by the worker)."""
    from safetensors.torch import load_file

    from harness.worker import state_digest

    out = resumed_sweep.out
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    pretrain = trials.filter(pl.col("stage") == "pretrain")
    assert pretrain.height == 1 and pretrain["steps"][0] == 3
    pretrain_id = pretrain["trial_id"][0]
    assert pretrain_id == "srresnet-pretrain" and pretrain["preset"][0] == "srresnet-pretrain"  # named for what it is
    assert pretrain["adv_weight"][0] is None and pretrain["perceptual_weight"][0] is None  # a pretraining uses neither
    final = sorted(p for p in (out / "trials" / pretrain_id).glob("checkpoint_*") if p.is_dir())[-1]
    assert final.name == "checkpoint_0000003"
    expected = state_digest(load_file(str(final / "generator.safetensors")))
    gan = trials.filter(pl.col("stage") == "gan")
    assert gan["init_from"].to_list() == [pretrain_id] * 4
    for trial_id in gan["trial_id"]:
        init = json.loads((out / "trials" / trial_id / "init.json").read_text())
        assert init["step"] == 0 and init["generator_digest"] == expected
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert sorted(run["stages"][pretrain_id]["presets"]) == ["ragan", "ragan", "v3", "v3"]


def test_sweep_folder_follows_the_schema(resumed_sweep) -> None:
    out = resumed_sweep.out
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    assert list(trials.columns) == list(schema.TRIAL_COLUMNS)
    assert trials.filter(pl.col("status") == "baseline")["trial_id"].to_list() == ["bicubic"]
    ragan = trials.filter((pl.col("preset") == "ragan") & (pl.col("stage") == "gan"))
    assert json.loads(ragan["flags"][0]) == ["untrained-perceptual-vgg19"]  # the opt-in travels with results
    summary = pl.read_parquet(out / schema.SUMMARY_FILE)
    assert summary.height == 6 and summary["psnr"].is_not_null().all()  # bicubic, pretraining, 4 GAN trials
    bicubic = summary.filter(pl.col("trial_id") == "bicubic")
    assert bicubic["psnr"][0] == pytest.approx(28.42, abs=0.05)  # the papers' Set5 x4 bicubic
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert scores.height == 6 * 5
    history = pl.read_parquet(out / schema.HISTORY_FILE)
    assert set(history["phase"]) == {"warmup", "gan"}  # the pretraining's pixel-loss steps, then GAN trials
    assert history.filter(pl.col("val_psnr").is_not_null()).height >= 2
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert run["kind"] == "sweep" and run["protocol"]["color"] == "ycbcr_bt601"
    assert (out / schema.IMAGES_DIR / schema.HR_DIR / "set5").is_dir()
    assert (out / "report" / "index.html").exists()
    assert f"report: {out / 'report' / 'index.html'}" in resumed_sweep.resume_stdout


@pytest.mark.parametrize("source", ["trial", "checkpoint"])
def test_init_from_a_results_trial_or_a_checkpoint_folder(resumed_sweep, data_root, tmp_path, source) -> None:
    """`harness.train --init-from` a sweep's pretraining trial (its last checkpoint) or a checkpoint folder: the
    GAN stage starts from exactly those weights, and says so in its config."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from harness.worker import state_digest

    out = resumed_sweep.out
    pretrain = out / "trials" / "srresnet-pretrain"
    last = sorted(p for p in pretrain.glob("checkpoint_*") if p.is_dir())[-1]
    init = pretrain if source == "trial" else last
    cmd = [sys.executable, "-m", "harness.train", "--preset", "v3-tiny", "--init-from", str(init), "--vgg-fallback",
           "untrained", "--storage", str(tmp_path), "--name", "gan", "--data-root", str(data_root),
           "--set", "train.gan_steps=2", "--set", "train.log_every=1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "gan" / "init.json").read_text())
    assert record["generator_digest"] == state_digest(load_file(str(last / "generator.safetensors")))
    config = json.loads((tmp_path / "gan" / "config.json").read_text())
    assert config["stage"] == "gan" and config["config"]["train"]["warmup_steps"] == 0
    assert config["init_from"] == str(init.resolve())
