"""results.dose: the ladder's slope against least squares, its interval's calibration by simulation (a null ladder
dominated by seed or by image variation at 3 seeds, the power at the effect the issue's probe measured, a known
effect recovered), and the study tables a study with controls and a ladder writes."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from study_reference import holm, reference_study

from results import dose, schema, stats, study

sys.path.insert(0, str(Path(__file__).parents[1] / "reports"))  # the synthetic study lives beside the report tests
from ladder_synthetic import LADDER_KEY, SLOPES, add_ladder, add_seeds  # noqa: E402
from reports_synthetic import write_synthetic_study  # noqa: E402

# ------------------------------------------------------------------------------------------- the slope


def test_the_slope_contrast_is_the_least_squares_slope_per_decade() -> None:
    rng = np.random.default_rng(3)
    for weights in ([0.01, 0.1, 1.0], [0.001, 0.003, 0.01, 0.1, 1.0], [2e-3, 5e-3]):
        y = rng.normal(28, 1, len(weights))
        expected = np.polyfit(np.log10(weights), y, 1)[0]
        assert float(dose.slope_contrast(weights) @ y) == pytest.approx(expected, rel=1e-12)
        assert dose.slope_contrast(weights).sum() == pytest.approx(0.0, abs=1e-12)  # a shared shift cancels


def test_an_exact_line_gives_its_slope_and_a_zero_width_interval() -> None:
    weights = [0.01, 0.1, 1.0]
    image = np.array([27.0, 30.5, 25.2, 29.9])
    seed = np.array([0.0, 0.4, -0.3])
    values = np.stack([image[None, :] + seed[:, None] - 0.7 * math.log10(w) for w in weights])  # (arms, S, I)
    result = dose.ladder_trend(values, weights)
    assert result is not None and result.mean_diff == pytest.approx(-0.7, abs=1e-12)
    assert result.ci_low == pytest.approx(-0.7, abs=1e-12) and result.ci_high == pytest.approx(-0.7, abs=1e-12)
    assert result.n_seeds == 3 and result.n_images == 4


def test_bad_ladders_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        dose.slope_contrast([0.0, 0.1, 1.0])
    with pytest.raises(ValueError, match="two distinct"):
        dose.slope_contrast([0.1, 0.1])
    with pytest.raises(ValueError, match="one arm per weight"):
        dose.ladder_trend(np.zeros((2, 3, 4)), [0.01, 0.1, 1.0])


def test_a_cell_missing_on_one_arm_leaves_the_contrast_without_it() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(28, 1, (3, 3, 5))
    values[1, 2, 4] = np.nan
    result = dose.ladder_trend(values, [0.01, 0.1, 1.0])
    assert result is not None and result.n_images == 4 and result.dropped_images == (4,)


# ------------------------------------------------------------------------------------------ calibration


@dataclass(frozen=True)
class Ladder:
    """A simulated ladder: y[k, s, i] = slope x log10(w_k) + a[s] + b[i] + u[k, s] + v[k, i] + e[k, s, i].

    a[s] (the seed's pretraining) and b[i] (the image's difficulty) are shared by every arm; u (arm x seed: a
    training seed's own response to the weight), v (arm x image) and e are what the slope's interval must cover."""

    name: str
    sd_seed: float  # u
    sd_image: float  # v
    sd_resid: float  # e
    slope: float = 0.0


SEED_NULL = Ladder("null, seed-dominated", sd_seed=0.3, sd_image=0.0, sd_resid=0.05)
IMAGE_NULL = Ladder("null, image-dominated", sd_seed=0.01, sd_image=0.3, sd_resid=0.05)
# The probe: about -0.7 dB per decade of adv_weight on PSNR (28.41 / 27.42 / 26.47 dB at 0.01 / 0.1 / 1,
# Set5, 2 seeds); arm x seed sd 0.3 dB is the project's seed-dominated regime (simulate_intervals.py) ...
PROBE_EFFECT = Ladder("probe's slope, seed sd 0.3", sd_seed=0.3, sd_image=0.0, sd_resid=0.05, slope=-0.7)
# ... and 1.3 dB is what the probe's two seeds at 0.1 disagree by (26.50 vs 28.33 dB: sd 1.3).
PROBE_SPREAD = Ladder("probe's slope, seed sd 1.3", sd_seed=1.3, sd_image=0.0, sd_resid=0.05, slope=-0.7)
N_LADDERS = 1000
N_SEEDS, N_IMAGES = 3, 5  # the study's 3 seeds, Set5
LADDERS = {"3 arms": (0.01, 0.1, 1.0), "4 arms": (0.001, 0.01, 0.1, 1.0)}


def simulate(ladder: Ladder, weights: tuple[float, ...], *, n: int = N_LADDERS, seed: int = 0) -> list:
    rng = np.random.default_rng([seed, len(weights), int(ladder.sd_image * 100), int(ladder.sd_seed * 100)])
    x = np.log10(weights)[:, None, None]
    K = len(weights)  # noqa: N806
    results = []
    for _ in range(n):
        shared = rng.normal(28, 2, (1, 1, N_IMAGES)) + rng.normal(0, 0.5, (1, N_SEEDS, 1))
        y = (shared + ladder.slope * x + rng.normal(0, ladder.sd_seed, (K, N_SEEDS, 1))
             + rng.normal(0, ladder.sd_image, (K, 1, N_IMAGES))
             + rng.normal(0, ladder.sd_resid, (K, N_SEEDS, N_IMAGES)))
        results.append(dose.ladder_trend(y, weights))
    return results


@pytest.mark.parametrize("arms", LADDERS)
@pytest.mark.parametrize("ladder", [SEED_NULL, IMAGE_NULL], ids=lambda r: r.name)
def test_a_null_ladder_excludes_zero_at_most_seven_percent_of_the_time(ladder: Ladder, arms: str) -> None:
    rate = np.mean([r.excludes_zero for r in simulate(ladder, LADDERS[arms])])
    assert rate <= 0.07, f"{ladder.name}, {arms}: {rate:.1%} of {N_LADDERS} null ladders exclude 0"
    assert rate >= 0.02  # not a vacuous pass: an interval that never excludes 0 is not calibrated either


def _analytic_power(ladder: Ladder, weights: tuple[float, ...]) -> float:
    """The t test's power from the non-central t, for the slope contrast's variance components (independent of
    the simulation: with no arm x image variance the seed mean square is exactly (scaled) chi-square on S - 1 df)."""
    c2 = float((dose.slope_contrast(weights) ** 2).sum())
    components = stats.Components(ladder.sd_seed ** 2 * c2, ladder.sd_image ** 2 * c2, ladder.sd_resid ** 2 * c2)
    design = stats.implied(components, N_SEEDS, N_IMAGES)
    assert design is not None and design.df is not None
    return stats.t_test_power(ladder.slope / math.sqrt(design.variance), design.df)


@pytest.mark.parametrize("ladder", [PROBE_EFFECT, PROBE_SPREAD], ids=lambda r: r.name)
def test_power_at_the_probes_slope_matches_the_non_central_t(ladder: Ladder) -> None:
    """Measured (1,000 ladders of 3 seeds x 5 images; arms 0.01 / 0.1 / 1): 80 % at arm x seed sd 0.3 dB, 13 % at
    the probe's 1.3 dB; with a fourth arm at 0.001: 98 % and 19 %."""
    weights = LADDERS["3 arms"]
    results = simulate(ladder, weights)
    power = np.mean([r.excludes_zero and r.mean_diff < 0 for r in results])
    assert power == pytest.approx(_analytic_power(ladder, weights), abs=0.04)
    if ladder is PROBE_EFFECT:
        assert power >= 0.75


@pytest.mark.parametrize("ladder", [PROBE_EFFECT, PROBE_SPREAD], ids=lambda r: r.name)
def test_a_known_slope_is_inside_its_interval_at_the_nominal_rate(ladder: Ladder) -> None:
    results = simulate(ladder, LADDERS["4 arms"], seed=1)
    covered = np.mean([r.ci_low <= ladder.slope <= r.ci_high for r in results])
    assert covered >= 0.93
    assert np.mean([r.mean_diff for r in results]) == pytest.approx(ladder.slope, abs=0.05)  # unbiased


# --------------------------------------------------------------------------------- the study's tables


@pytest.fixture(scope="module")
def ladder_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_synthetic_study(tmp_path_factory.mktemp("ladder"), compute=False)
    add_ladder(folder)
    study.compute_study(folder)
    return folder


def test_each_gan_version_is_compared_with_its_control_on_an_equal_budget(ladder_study: Path) -> None:
    rows = pl.read_parquet(ladder_study / schema.STUDY_FILE)
    control = rows.filter(pl.col("kind") == dose.KIND_CONTROL)
    expected = {"v2 - srresnet-continued", "v3 - srresnet-continued", "ragan - srresnet-continued",
                "esrgan - rrdb-continued"}
    assert set(control["comparison"].unique().to_list()) == expected
    assert control["budget"].null_count() == control.height  # equal
    assert (control["g_updates_a"] == control["g_updates_b"]).all()
    # the GAN stage against its pretraining stays, flagged unequal, and no ladder arm or control leaks into it
    pretrain = rows.filter(pl.col("kind") == schema.KIND_PRETRAIN)
    assert (pretrain["budget"] == "unequal-budget").all()
    assert not pretrain["a"].str.contains("continued|adv_weight").any()
    steps = rows.filter(pl.col("kind") == schema.KIND_STEP)["comparison"].unique().to_list()
    assert sorted(steps) == sorted(["v2 - v1", "v3 - v2", "ragan - v3", "esrgan - ragan"])


def test_the_control_difference_is_the_simulated_one(ladder_study: Path) -> None:
    """v2 - srresnet-continued, recomputed by hand from the scores: the mean over seeds and images."""
    scores = pl.read_parquet(ladder_study / schema.SCORES_FILE).filter(pl.col("dataset") == "Set5")
    a = scores.filter(pl.col("trial_id").str.starts_with("v2_s")).with_columns(
        pl.col("trial_id").str.extract(r"_s(\d+)$").alias("seed"))
    b = scores.filter(pl.col("trial_id").str.starts_with("srresnet-continued_s")).with_columns(
        pl.col("trial_id").str.extract(r"_s(\d+)$").alias("seed"))
    expected = a.join(b, on=["seed", "image"]).select((pl.col("psnr") - pl.col("psnr_right")).mean()).item()
    row = pl.read_parquet(ladder_study / schema.STUDY_FILE).filter(
        (pl.col("comparison") == "v2 - srresnet-continued") & (pl.col("dataset") == "Set5")
        & (pl.col("metric") == "psnr")).row(0, named=True)
    assert row["mean_diff"] == pytest.approx(expected, rel=1e-12) and row["n_seeds"] == 3


def test_each_arm_is_compared_with_the_zero_arm(ladder_study: Path) -> None:
    rows = pl.read_parquet(ladder_study / schema.STUDY_FILE).filter(pl.col("kind") == dose.KIND_ARM)
    assert set(rows["comparison"].unique().to_list()) == {
        f"v2@adv_weight={w} - srresnet-continued" for w in ("0.01", "0.1", "1")}
    assert rows["budget"].null_count() == rows.height
    top = rows.filter((pl.col("a") == "v2@adv_weight=1") & (pl.col("metric") == "psnr"))
    # the synthetic ladder puts the lowest weight one decade above 0: weight 1 is 3 decades of -0.7 dB
    assert all(r["ci_low"] <= 3 * SLOPES["psnr"] <= r["ci_high"] for r in top.iter_rows(named=True))


def test_the_trend_recovers_the_simulated_slope_within_its_interval(ladder_study: Path) -> None:
    trend = pl.read_parquet(ladder_study / schema.STUDY_DOSE_FILE)
    assert trend.height == 2 * 4  # 2 datasets x 4 metrics, one ladder
    for r in trend.iter_rows(named=True):
        assert r["recipe"] == "v2" and r["key"] == LADDER_KEY and r["n_seeds"] == 3 and r["zero_arm"]
        assert json.loads(r["weights"]) == [0.0, 0.01, 0.1, 1.0]
        assert r["ci_low"] <= SLOPES[r["metric"]] <= r["ci_high"], r
        assert len(json.loads(r["arm_means"])) == 4
        low, mean, high = (json.loads(r[c]) for c in ("arm_low", "arm_means", "arm_high"))
        assert all(lo <= m <= hi for lo, m, hi in zip(low, mean, high, strict=True))
    psnr = trend.filter(pl.col("metric") == "psnr")
    assert (psnr["verdict"] == dose.TREND_DOWN).all()


def test_the_trend_is_holm_adjusted_in_the_studys_family(ladder_study: Path) -> None:
    rows = pl.read_parquet(ladder_study / schema.STUDY_FILE)
    trend = pl.read_parquet(ladder_study / schema.STUDY_DOSE_FILE)
    for metric in ("psnr", "niqe"):
        family = rows.filter(pl.col("metric") == metric)
        extra = trend.filter(pl.col("metric") == metric)
        p = family["p_value"].to_list() + extra["p_value"].to_list()
        assert sum(v is not None for v in extra["p_value"].to_list()) > 0  # the trends are tested
        adjusted = holm(p)  # study_reference's Holm, written out apart from results.stats
        assert family["p_holm"].to_list() == pytest.approx(adjusted[:family.height], nan_ok=True)
        assert extra["p_holm"].to_list() == pytest.approx(adjusted[family.height:])


def test_arms_have_version_rows_but_no_profile_column(ladder_study: Path) -> None:
    versions = pl.read_parquet(ladder_study / schema.STUDY_VERSIONS_FILE)["version"].unique().to_list()
    assert {"v2@adv_weight=0.01", "v2@adv_weight=1", "srresnet-continued", "rrdb-continued"} <= set(versions)
    profile = pl.read_parquet(ladder_study / schema.STUDY_PROFILE_FILE)["version"].to_list()
    assert "srresnet-continued" in profile and not any("adv_weight" in v for v in profile)


def test_a_study_without_a_ladder_writes_an_empty_dose_table(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "plain", presets=("v2",), seeds=(0, 1))
    assert pl.read_parquet(folder / schema.STUDY_DOSE_FILE).height == 0
    assert not pl.read_parquet(folder / schema.STUDY_FILE)["kind"].is_in([dose.KIND_ARM, dose.KIND_CONTROL]).any()


def test_a_ladder_without_a_zero_arm_or_a_second_weight_says_so(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "no-zero", presets=("v2",), seeds=(0, 1), compute=False)
    add_ladder(folder, weights=(0.1,))
    study.compute_study(folder)
    arms = pl.read_parquet(folder / schema.STUDY_FILE).filter(pl.col("kind") == dose.KIND_ARM)
    assert arms.height and arms["note"].str.contains("the ladder has no 0 arm").all() and (arms["n"] == 0).all()
    trend = pl.read_parquet(folder / schema.STUDY_DOSE_FILE)
    assert trend["slope"].null_count() == trend.height
    assert (trend["note"] == "fewer than two non-zero weights: no slope").all()


def test_a_run_with_two_roles_is_compared_once(tmp_path: Path) -> None:
    """The 0 arm is the control and v2's own trial is the arm at v2's weight (interface-25's sharing): the
    comparison v2 - srresnet-continued is one row (the control's), and the ladder still has all five arms."""
    folder = write_synthetic_study(tmp_path / "shared", presets=("v2",), seeds=(0, 1, 2), compute=False)
    add_ladder(folder, v2_arm=1e-3)
    study.compute_study(folder)
    rows = pl.read_parquet(folder / schema.STUDY_FILE)
    assert rows.group_by("comparison", "dataset", "metric").len()["len"].max() == 1
    assert rows.filter(pl.col("comparison") == "v2 - srresnet-continued")["kind"].unique().to_list() == [
        dose.KIND_CONTROL]
    assert rows.filter(pl.col("kind") == dose.KIND_ARM)["a"].unique().sort().to_list() == [
        "v2@adv_weight=0.01", "v2@adv_weight=0.1", "v2@adv_weight=1"]
    trend = pl.read_parquet(folder / schema.STUDY_DOSE_FILE).filter(pl.col("metric") == "psnr")
    assert json.loads(trend["weights"][0]) == [0.0, 0.001, 0.01, 0.1, 1.0]
    assert all(r["ci_low"] <= SLOPES["psnr"] <= r["ci_high"] for r in trend.iter_rows(named=True))
    profile = pl.read_parquet(folder / schema.STUDY_PROFILE_FILE)["version"].to_list()
    assert "v2" in profile and "srresnet-continued" in profile


def check_controls_of_a_real_study(folder: Path) -> None:
    """What a real study's tables say about its controls (the harness's rows, not this file's synthetic ones)."""
    trials = pl.read_parquet(folder / schema.TRIALS_FILE)
    rows = pl.read_parquet(folder / schema.STUDY_FILE)
    control = rows.filter(pl.col("kind") == dose.KIND_CONTROL)
    gan = trials.filter((pl.col("stage") == schema.STAGE_GAN) & pl.col("control").is_not_null()
                        & pl.col("ladder_key").is_null())["version"].unique().to_list()
    assert set(control["a"].unique().to_list()) == set(gan) and gan
    assert set(control["b"].unique().to_list()) <= {"srresnet-continued", "rrdb-continued"}
    assert control["budget"].null_count() == control.height
    assert (control["g_updates_a"] == control["g_updates_b"]).all()
    assert (control.filter(pl.col("n") > 0)["n_seeds"] >= 2).all()  # (a metric not measured has no pairs)
    pretrain = rows.filter(pl.col("kind") == schema.KIND_PRETRAIN)
    assert (pretrain["budget"] == "unequal-budget").all()
    assert not pretrain["a"].str.ends_with("-continued").any()


@pytest.mark.slow
def test_a_real_tiny_study_compares_each_gan_stage_with_its_control(tiny_study) -> None:
    check_controls_of_a_real_study(tiny_study.out)


def test_the_tables_equal_an_independent_recomputation(ladder_study: Path) -> None:
    """Every comparison (controls and arms included) and the trend, with the family's p_holm, against
    tests/results/study_reference.py (plain Python, scipy, np.polyfit per cell; no code shared with results)."""
    reference = reference_study(ladder_study, ["Set5", "Set14"], ["psnr", "ssim", "lpips", "niqe"])
    rows = pl.read_parquet(ladder_study / schema.STUDY_FILE)
    assert {(r["a"], r["b"], r["dataset"], r["metric"]) for r in rows.iter_rows(named=True)} == {
        k for k in reference if not k[0].startswith("trend ")}
    for r in rows.iter_rows(named=True):
        ref = reference[r["a"], r["b"], r["dataset"], r["metric"]]
        for name in ("mean_diff", "ci_low", "ci_high", "p_value", "p_holm"):
            assert r[name] == pytest.approx(ref[name], rel=1e-7, abs=1e-10), (r["comparison"], name)
        assert r["verdict"] == ref["verdict"]
    for r in pl.read_parquet(ladder_study / schema.STUDY_DOSE_FILE).iter_rows(named=True):
        ref = reference[f"trend {r['recipe']} {r['key']}", "", r["dataset"], r["metric"]]
        assert r["slope"] == pytest.approx(ref["mean_diff"], rel=1e-9)
        for name in ("ci_low", "ci_high", "p_value", "p_holm", "mdd"):
            assert r[name] == pytest.approx(ref[name], rel=1e-7, abs=1e-10), (r["metric"], name)
        assert r["verdict"] == ref["verdict"]


def test_further_seeds_of_the_top_and_zero_arms_serve_their_comparison_only(tmp_path: Path) -> None:
    """The ladder's top arm and 0 arm with three more seeds (the cpu size's LADDER_SEED_FACTOR): their comparison is
    paired over all six; every other comparison and the trend use the seeds their sides share, and say nothing of
    the seeds only the two arms have."""
    folder = write_synthetic_study(tmp_path / "more", presets=("v2",), seeds=(0, 1, 2), compute=False)
    add_ladder(folder)
    add_seeds(folder, ["srresnet-continued", "v2@adv_weight=1"], [3, 4, 5])
    study.compute_study(folder)
    rows = pl.read_parquet(folder / schema.STUDY_FILE).filter(pl.col("metric") == "psnr")
    seeds = {r["comparison"]: r["n_seeds"] for r in rows.iter_rows(named=True)}
    assert seeds["v2@adv_weight=1 - srresnet-continued"] == 6
    assert seeds["v2@adv_weight=0.1 - srresnet-continued"] == seeds["v2 - srresnet-continued"] == 3
    assert not rows["note"].str.contains("left out").any()  # no seed "missing": the others never had them
    trend = pl.read_parquet(folder / schema.STUDY_DOSE_FILE).filter(pl.col("metric") == "psnr")
    assert (trend["n_seeds"] == 3).all() and trend["note"].null_count() == trend.height
    assert all(r["ci_low"] <= SLOPES["psnr"] <= r["ci_high"] for r in trend.iter_rows(named=True))
