"""A sweep driver interrupted mid-sweep and restarted with --resume completes without repeating finished
trials (the session's `resumed_sweep`, see tests/conftest.py); what the finished sweep folder holds."""

from __future__ import annotations

import json

import polars as pl
import pytest

from results import schema

pytestmark = pytest.mark.slow


def test_resume_completes_without_repeating_finished_trials(resumed_sweep) -> None:
    out = resumed_sweep.out
    assert len(resumed_sweep.finished_before_interrupt) == 1
    trials = pl.read_parquet(out / schema.TRIALS_FILE).filter(pl.col("status") != "baseline")
    assert sorted(trials["preset"].to_list()) == ["ragan", "v1"]
    assert trials["status"].to_list() == ["ok", "ok"]
    assert trials["steps"].to_list() == [6, 6]
    for trial_id in trials["trial_id"]:
        starts = (out / "trials" / trial_id / "starts.log").read_text().split()
        if trial_id in resumed_sweep.finished_before_interrupt:
            assert len(starts) == 1, "a finished trial was run again"
        else:
            assert len(starts) >= 1


def test_sweep_folder_follows_the_schema(resumed_sweep) -> None:
    out = resumed_sweep.out
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    assert list(trials.columns) == list(schema.TRIAL_COLUMNS)
    assert trials.filter(pl.col("status") == "baseline")["trial_id"].to_list() == ["bicubic"]
    ragan = trials.filter(pl.col("preset") == "ragan")
    assert json.loads(ragan["flags"][0]) == ["untrained-perceptual-vgg19"]  # the opt-in travels with results
    summary = pl.read_parquet(out / schema.SUMMARY_FILE)
    assert summary.height == 3 and summary["psnr"].is_not_null().all()
    bicubic = summary.filter(pl.col("trial_id") == "bicubic")
    assert bicubic["psnr"][0] == pytest.approx(28.42, abs=0.05)  # the papers' Set5 x4 bicubic
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert scores.height == 3 * 5
    history = pl.read_parquet(out / schema.HISTORY_FILE)
    assert set(history["phase"]) == {"warmup", "gan"}  # RaGAN's warmup then GAN phase
    assert history.filter(pl.col("val_psnr").is_not_null()).height >= 2
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert run["kind"] == "sweep" and run["protocol"]["color"] == "ycbcr_bt601"
    assert (out / schema.IMAGES_DIR / schema.HR_DIR / "set5").is_dir()
    assert (out / "report" / "index.html").exists()
    assert f"report: {out / 'report' / 'index.html'}" in resumed_sweep.resume_stdout
