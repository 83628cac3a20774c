"""Scoring a sweep's models through Ray (`harness.sweeps.collect.score_all`: the baseline and the first jobs in the
driver
while the scoring processes start and read the benchmark images, the rest as Ray tasks) gives, job by job and in
the jobs' order, the scores of each model scored alone in this process."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from benchmarks.scoring import prepared
from harness.sweeps.collect import Scoring, score_all, score_job
from harness.sweeps.scoring_profile import make_trials


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
