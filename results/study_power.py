"""Power for the next study (`harness.study --dry-run --variance-from DIR`): `variance_components_of(DIR)` gives
the variance components each comparison of a previous study measured, and `plan(DIR, ...)` turns them into the
minimum detectable difference at a number of seeds (`results.stats.mdd`) or the seeds a target difference needs
(`results.stats.seeds_needed`), for every comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results import stats
from results.stats import ALPHA, CI_LEVEL, POWER
from results.study_comparisons import comparisons, measure
from results.study_input import datasets_of, load_study_input, metrics_of


@dataclass(frozen=True)
class MeasuredComponents:
    """The variance components one comparison measured, with the design it measured them on."""

    comparison: str
    dataset: str
    metric: str
    components: stats.Components
    n_seeds: int
    n_images: int
    mean_diff: float


def variance_components_of(results_dir: str | Path) -> dict[tuple[str, str, str], MeasuredComponents]:
    """{(comparison, dataset, metric): components} of a previous study, recomputed from its trials and scores
    (so a study folder from before study.parquet had the components works too). Rows without data are absent."""
    data = load_study_input(results_dir)
    out = {}
    for comp in comparisons(data.trials):
        for dataset in datasets_of(data):
            for metric in metrics_of(data):
                measured, _ = measure(data, comp, dataset, metric, CI_LEVEL)
                r = measured.result
                if r is not None and math.isfinite(r.mean_diff):
                    out[comp.name, dataset, metric] = MeasuredComponents(comp.name, dataset, metric, r.components,
                                                                         r.n_seeds, r.n_images, r.mean_diff)
    return out


def plan(results_dir: str | Path, *, n_seeds: int, n_images: int | None = None, target_diff: float | None = None,
         alpha: float = ALPHA, power: float = POWER) -> list[dict[str, Any]]:
    """For every comparison of a previous study: the minimum detectable difference at `n_seeds` (x `n_images`,
    default: as many as it measured), and with `target_diff` the seeds needed to detect that difference.

    Each row: comparison, dataset, metric, n_seeds, n_images, sd_seed, sd_image, sd_resid, measured_diff, mdd,
    target_diff, seeds_needed, note (why a value is missing)."""
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    rows = []
    for key, m in variance_components_of(results_dir).items():
        images = n_images if n_images is not None else m.n_images
        sd_seed, sd_image, sd_resid = m.components.sd()
        value = stats.mdd(m.components, n_seeds, images, alpha=alpha, power=power)
        needed = (stats.seeds_needed(m.components, target_diff, images, alpha=alpha, power=power)
                  if target_diff is not None else None)
        note = None
        if m.components.seed is None:
            note = "the previous study had one seed: its seed-to-seed variance is unknown"
        elif n_seeds < 2:
            note = "one seed: no seed-level test"
        elif value is None:
            note = "the previous study had one image: the image variance is unknown"
        elif target_diff is not None and needed is None:
            note = "not reached within 10,000 seeds"
        rows.append({"comparison": key[0], "dataset": key[1], "metric": key[2], "n_seeds": n_seeds,
                     "n_images": images, "sd_seed": sd_seed, "sd_image": sd_image, "sd_resid": sd_resid,
                     "measured_diff": m.mean_diff, "mdd": value, "target_diff": target_diff,
                     "seeds_needed": needed, "note": note})
    return rows
