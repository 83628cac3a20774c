"""Scoring a sweep's models through Ray (`harness.sweeps.collect.score_all`: the baseline and the first jobs in the
driver
while the scoring processes start and read the benchmark images, the rest as Ray tasks) gives, job by job and in
the jobs' order, the scores of each model scored alone in this process; a rescoring of a folder keeps the scores of
the models whose weights it scored before, the same way (`harness.sweeps.scored`)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch

from benchmarks.scoring import prepared
from harness.sweeps.collect import Outcome, Scoring, collect_results, score_all, score_job
from harness.sweeps.scoring_profile import make_trials
from results import schema
from srgan.checkpoint import save_config, save_generator
from srgan.generator import build_generator
from srgan.versions import preset


@pytest.mark.slow
def test_score_all_on_ray_equals_each_model_scored_alone(local_ray, data_root: Path, tmp_path: Path) -> None:
    outcomes = make_trials(tmp_path, 3, data_root)  # the two pretrainings and a v2 trial, cpu size
    scoring = Scoring(datasets=["set5"], scale=4, data_root=data_root, images_dir=tmp_path / "images",
                      save_images=("set5",))
    jobs = [None, *outcomes]
    parts, at_once = score_all(jobs, scoring, {})
    assert at_once == 2 and len(parts) == len(jobs)
    prepared.clear()  # alone: nothing read before
    for job, (part, seconds) in zip(jobs, parts, strict=True):
        alone, _ = score_job(job, scoring, {}, threads=1)
        assert seconds > 0 and [t["trial_id"] for t in part.trials] == [t["trial_id"] for t in alone.trials]
        assert part.trials[0]["status"] in ("ok", "baseline")
        got, expected = pl.concat(part.scores), pl.concat(alone.scores)
        assert got.height == 5 and got.equals(expected)  # equal to the last digit, not close
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(
        ["_hr", "bicubic", *(o.trial_id for o in outcomes)])


def _trial(out: Path, name: str, seed: int) -> Outcome:
    """A finished tiny v1 trial folder (random weights, seeded) with its final checkpoint."""
    cfg = preset("v1-tiny")
    run = out / "trials" / name
    torch.manual_seed(seed)
    save_config(cfg, run, workers=1)
    save_generator(build_generator(cfg.generator, scale=cfg.scale).eval(), cfg,
                   run / f"checkpoint_{cfg.train.total_steps:07d}", step=cfg.train.total_steps)
    (run / "history.jsonl").write_text(json.dumps({"step": cfg.train.total_steps, "phase": "gan", "time": 1.0}) + "\n")
    return Outcome(trial_id=name, run_dir=run, stage="gan")


def test_a_rescoring_keeps_the_scores_of_weights_scored_the_same_way_and_scores_the_rest(
        data_root: Path, tmp_path: Path, caplog) -> None:
    """A resume's scoring (`collect_results` on a folder that was scored before) takes a model's rows from the tables
    when its weights and the way it is scored are unchanged (run.json `scored`), and scores every other model."""
    out = tmp_path / "sweep"
    outcomes = [_trial(out, "kept", 0), _trial(out, "retrained", 1)]
    scoring = Scoring(datasets=["set5"], scale=4, data_root=data_root, images_dir=out / "images",
                      save_images=("set5",))
    collect_results(out, outcomes, scoring, started=time.time(), command="first")
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert set(json.loads((out / schema.RUN_FILE).read_text())["scored"]["weights"]) == {"bicubic", "kept",
                                                                                         "retrained"}
    # a marker in the table: where it survives, the row was taken, not scored again
    pl.concat([scores.filter(pl.col("trial_id") != "kept"),
               scores.filter(pl.col("trial_id") == "kept").with_columns(psnr=pl.lit(-1.0))]).write_parquet(
        out / schema.SCORES_FILE)
    _trial(out, "retrained", 2)  # other weights in its final checkpoint
    with caplog.at_level("INFO"):
        collect_results(out, outcomes, scoring, started=time.time(), command="resume")
    assert "2 of 3 models keep the scores" in caplog.text
    again = pl.read_parquet(out / schema.SCORES_FILE)
    assert (again.filter(pl.col("trial_id") == "kept")["psnr"] == -1.0).all()
    assert again.filter(pl.col("trial_id") == "bicubic").equals(scores.filter(pl.col("trial_id") == "bicubic"))
    assert not again.filter(pl.col("trial_id") == "retrained").equals(scores.filter(pl.col("trial_id") == "retrained"))
    # scored another way (no kept images): every model is scored again, the retrained one as the resume scored it
    caplog.clear()
    with caplog.at_level("INFO"):
        collect_results(out, outcomes, replace(scoring, save_images=()), started=time.time(), command="other")
    assert "keep the scores" not in caplog.text
    third = pl.read_parquet(out / schema.SCORES_FILE)
    assert (third.filter(pl.col("trial_id") == "kept")["psnr"] > 0).all()
    assert third.filter(pl.col("trial_id") == "retrained").equals(again.filter(pl.col("trial_id") == "retrained"))


def test_the_scoring_profile_times_each_layer_once() -> None:
    """`layer_seconds`: one entry per layer kind and place (a residual block's layers summed over the blocks), each
    leaf's own seconds (they add up to no more than the whole forward pass)."""
    import time as clock

    from harness.sweeps.scoring_profile import layer_seconds

    torch.manual_seed(0)
    net = build_generator(preset("v2-tiny").generator, scale=4).eval()
    images = [torch.rand(1, 3, 24, 20), torch.rand(1, 3, 16, 16)]
    started = clock.process_time()
    seconds = layer_seconds(net, images)
    total = clock.process_time() - started
    assert "body.*.conv1 Conv2d 16->16 3x3" in seconds and not any(".0." in key or ".1." in key for key in seconds)
    assert "tail Conv2d 16->3 9x9" in seconds and "upsample.* PixelShuffle" in seconds
    assert all(value >= 0 for value in seconds.values()) and sum(seconds.values()) <= total
    assert not net._forward_hooks and not any(m._forward_pre_hooks or m._forward_hooks for m in net.modules())


def test_every_profiled_phase_names_a_function_that_exists() -> None:
    """The profile matches phases by "folder/file.py:function" (cProfile's names): a function renamed or moved would
    silently drop out of its phase (scoring/prepared.py:prepared_sets did, when it became benchmark_images)."""
    import importlib

    from harness.sweeps.scoring_profile import PHASES

    for phase, names in PHASES:
        for name in names:
            path, _, function = name.partition(":")
            package = {"scoring": "benchmarks.scoring", "srgan": "srgan"}[path.split("/")[0]]
            module = importlib.import_module(f"{package}.{path.split('/')[1].removesuffix('.py')}")
            assert callable(getattr(module, function, None)), f"{phase}: {name} names no function"
