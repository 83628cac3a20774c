"""An independent, plain-Python recomputation of one row of study.parquet from trials.parquet and scores.parquet.

Written for reading, not speed, and sharing no code with `results.study`: tests (the study's smoke run
included) compare its numbers with the table. It follows the draws that `results.study.paired_bootstrap`
documents: `rng = np.random.default_rng(seed)`, the seeds `rng.integers(0, S, (R, S))`, then the images
`rng.integers(0, I, (R, I))`, the mean of the drawn seeds x images grid per resample, numpy's default
(linear) quantiles.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

USED = ("ok", "stopped", "baseline")


def loop_bootstrap(diff: np.ndarray, *, n_resamples: int, seed: int, ci: float) -> tuple[float, float, float]:
    """(mean, low, high) of a (seeds, images) grid of differences, NaN = no pair; rows/columns without any pair
    must already be removed."""
    rng = np.random.default_rng(seed)
    n_seeds, n_images = diff.shape
    seed_draws = rng.integers(0, n_seeds, (n_resamples, n_seeds))
    image_draws = rng.integers(0, n_images, (n_resamples, n_images))
    means = []
    for r in range(n_resamples):
        cells = [diff[s, i] for s in seed_draws[r] for i in image_draws[r] if not math.isnan(diff[s, i])]
        if cells:
            means.append(sum(cells) / len(cells))
    means.sort()

    def quantile(q: float) -> float:  # linear interpolation between order statistics
        pos = q * (len(means) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(means) - 1)
        return means[lo] + (means[hi] - means[lo]) * (pos - lo)

    present = diff[~np.isnan(diff)]
    return float(sum(present) / len(present)), quantile((1 - ci) / 2), quantile((1 + ci) / 2)


def difference_grid(results_dir: Path, a: str, b: str, dataset: str, metric: str) -> np.ndarray:
    """a - b per (seed, image) from the raw tables. `a` is a preset's GAN stage; `b` another preset's GAN stage
    (paired by seed) or `<a>-pretrain` (each GAN trial paired with the trial its `init_from` names)."""
    trials = [t for t in pl.read_parquet(results_dir / "trials.parquet").iter_rows(named=True) if t["status"] in USED]
    by_id = {t["trial_id"]: t for t in trials}
    value = {}
    for r in pl.read_parquet(results_dir / "scores.parquet").iter_rows(named=True):
        if r["dataset"] == dataset and r[metric] is not None and math.isfinite(r[metric]):
            value[r["trial_id"], r["image"]] = r[metric]

    def gan_trials(preset: str) -> dict[int, str]:
        return {t["seed"]: t["trial_id"] for t in trials
                if t["preset"] == preset and (t.get("stage") or "gan") == "gan"}

    pairs = {}  # seed -> (a trial, b trial)
    for seed, a_id in gan_trials(a).items():
        if b == f"{a}-pretrain":
            source = by_id[a_id].get("init_from")
            if source in by_id and by_id[source].get("stage") == "pretrain":
                pairs[seed] = (a_id, source)
        elif seed in gan_trials(b):
            pairs[seed] = (a_id, gan_trials(b)[seed])
    images = sorted({image for (_, image) in value})
    rows = []
    for seed in sorted(pairs):
        a_id, b_id = pairs[seed]
        row = [value[a_id, im] - value[b_id, im] if (a_id, im) in value and (b_id, im) in value else math.nan
               for im in images]
        rows.append(row)
    grid = np.array(rows, dtype=np.float64).reshape(len(rows), len(images))
    keep_rows = ~np.all(np.isnan(grid), axis=1)
    grid = grid[keep_rows]
    return grid[:, ~np.all(np.isnan(grid), axis=0)] if grid.size else grid


def reference_row(results_dir: Path, a: str, b: str, dataset: str, metric: str, *, n_resamples: int = 2000,
                  seed: int = 0, ci: float = 0.95) -> dict:
    """The row study.parquet should hold for (a, b, dataset, metric): n, mean_diff, ci_low, ci_high."""
    grid = difference_grid(Path(results_dir), a, b, dataset, metric)
    n = int(np.isfinite(grid).sum())
    if n == 0:
        return {"n": 0, "mean_diff": None, "ci_low": None, "ci_high": None}
    mean, low, high = loop_bootstrap(grid, n_resamples=n_resamples, seed=seed, ci=ci)
    return {"n": n, "mean_diff": mean, "ci_low": low, "ci_high": high}
