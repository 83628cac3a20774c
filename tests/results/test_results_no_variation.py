"""A paired difference that is exactly constant and non-zero (issue 27.9): every seed and image says the same
+0.5 dB, so the mean squares are zero and the t statistic is d/0. It used to get p = 0 and "distinguishable"
(a verdict from no measured variation at all); it now gets no p-value and its own verdict, "no variation", which
the report shows as such."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from study_reference import holm
from test_results_study import _row, write_study_folder

from reports.verdicts import assess
from results import schema, stats, study, study_comparisons


def test_a_constant_difference_has_no_test() -> None:
    b = np.random.default_rng(4).normal(28, 2, (3, 5))
    exact = stats.seed_image_t(np.full((3, 5), 30.0), np.full((3, 5), 29.0))  # exactly +1 everywhere
    rounded = stats.seed_image_t(b + 0.5, b)  # +0.5 up to float rounding (~1e-15)
    for result, diff in ((exact, 1.0), (rounded, 0.5)):
        assert result.p_value is None and result.se == 0.0 and result.df is None and result.no_variation
        assert result.mean_diff == pytest.approx(diff, abs=1e-12) and result.ci_low == result.ci_high
        assert result.n_seeds == 3 and result.n_images == 5
    one_image = stats.seed_image_t(np.array([[30.0], [30.0], [30.0]]), np.array([[29.0], [29.0], [29.0]]))
    assert one_image.no_variation and one_image.p_value is None
    # none at all: identical versions are "not distinguishable" (p = 1), as before
    same = stats.seed_image_t(b, b.copy())
    assert not same.no_variation and (same.mean_diff, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    # a little real variation is a test as usual
    noisy = stats.seed_image_t(b + 0.5 + np.random.default_rng(5).normal(0, 1e-3, b.shape), b)
    assert not noisy.no_variation and noisy.p_value is not None and noisy.p_value < 1e-6 and noisy.se > 0
    # one seed has no seed-level interval whatever the values
    assert not stats.seed_image_t(np.full((1, 5), 30.0), np.full((1, 5), 29.0)).no_variation


def test_the_study_says_no_variation_and_leaves_it_out_of_holm(tmp_path: Path) -> None:
    write_study_folder(tmp_path)
    path = tmp_path / schema.SCORES_FILE
    scores = pl.read_parquet(path)
    v2 = scores.filter(pl.col("trial_id").str.starts_with("v2_")).select(
        pl.col("trial_id").str.replace("v2_", "v3_"), "dataset", "image", (pl.col("psnr") + 0.5).alias("v3_psnr"))
    scores = (scores.join(v2, on=["trial_id", "dataset", "image"], how="left")
              .with_columns(pl.coalesce("v3_psnr", "psnr").alias("psnr")).drop("v3_psnr"))
    scores.write_parquet(path)
    study.compute_study(tmp_path)
    table = pl.read_parquet(tmp_path / schema.STUDY_FILE)
    for dataset in ("Set5", "Set14"):
        row = _row(table, "v3 - v2", dataset=dataset)
        assert row["verdict"] == "no variation" == study_comparisons.VERDICT_NO_VARIATION
        assert row["p_value"] is None and row["p_holm"] is None and row["distinguishable"] is None
        assert row["mean_diff"] == pytest.approx(0.5, abs=1e-9) and row["ci_low"] == row["ci_high"]
        assert "every pair differs by +0.5" in row["note"]
        shown = assess(row, adjusted=True)
        assert shown.state == "no-variation" and "no variation" in shown.short and "+0.50" in shown.short
    # Holm's family is the rows that have a test: the two constant rows are not counted (study_reference.holm
    # writes Holm's procedure out independently of results.stats)
    psnr = table.filter(pl.col("metric") == "psnr")
    tested = psnr.filter(pl.col("p_value").is_not_null())
    assert tested.height == psnr.filter(pl.col("n_seeds") > 1).height - 2
    assert tested["p_holm"].to_list() == pytest.approx(holm(tested["p_value"].to_list()), rel=1e-12)
    assert psnr.filter(pl.col("p_value").is_null() & (pl.col("n_seeds") > 1))["verdict"].unique().to_list() == [
        "no variation"]
    # SSIM of the same comparison (its scores were left as they were) still varies, and is tested
    ssim = _row(table, "v3 - v2", metric="ssim")
    assert ssim["p_value"] is not None and ssim["verdict"] in ("a better", "b better", "not distinguishable")
