"""results.study: the paired bootstrap, and the study tables recomputed independently from a synthetic folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from study_reference import loop_bootstrap, reference_row

from results import io, schema, study

# ------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(28, 1, (3, 10)), rng.normal(28, 1, (3, 10))
    first = study.paired_bootstrap(a, b, seed=7)
    assert study.paired_bootstrap(a, b, seed=7) == first
    other = study.paired_bootstrap(a, b, seed=8)
    assert other.mean_diff == first.mean_diff and (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_identical_pair_gives_a_zero_width_interval_at_zero() -> None:
    a = np.random.default_rng(2).normal(28, 2, (3, 12))
    result = study.paired_bootstrap(a, a.copy())
    assert (result.mean_diff, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    assert result.n == 36 and not result.excludes_zero


def test_one_db_shift_gives_an_interval_around_one() -> None:
    b = np.random.default_rng(3).normal(28, 2, (3, 12))
    exact = study.paired_bootstrap(b + 1.0, b)
    assert exact.ci_low == pytest.approx(1.0, abs=1e-9) and exact.ci_high == pytest.approx(1.0, abs=1e-9)
    noisy = study.paired_bootstrap(b + 1.0 + np.random.default_rng(4).normal(0, 0.1, b.shape), b)
    assert noisy.ci_low < 1.0 < noisy.ci_high and noisy.ci_high - noisy.ci_low < 0.15 and noisy.excludes_zero


def test_bootstrap_equals_a_plain_loop_with_missing_pairs() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(27, 1, (4, 9)), rng.normal(26.5, 1, (4, 9))
    a[1, 3] = np.nan  # one missing value, and one image missing on every seed (dropped before resampling)
    b[:, 7] = np.nan
    result = study.paired_bootstrap(a, b, n_resamples=500, seed=11, ci=0.9)
    diff = (a - b)[:, [i for i in range(9) if i != 7]]
    mean, low, high = loop_bootstrap(diff, n_resamples=500, seed=11, ci=0.9)
    assert (result.n, result.n_seeds, result.n_images) == (4 * 8 - 1, 4, 8)
    assert result.mean_diff == pytest.approx(mean, abs=1e-12)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))


def test_interval_width_matches_normal_theory_for_independent_images() -> None:
    """One seed, 400 independent differences with sd 1: the 95 % interval is about 2 x 1.96 / sqrt(400) wide."""
    diff = np.random.default_rng(6).normal(0.3, 1.0, 400)
    result = study.paired_bootstrap(diff, np.zeros_like(diff))
    sd = diff.std(ddof=1)
    assert result.ci_high - result.ci_low == pytest.approx(2 * 1.96 * sd / 20, rel=0.12)
    assert result.ci_low < diff.mean() < result.ci_high


def test_seed_to_seed_variation_widens_the_interval() -> None:
    """Differences that vary only between seeds: resampling images alone would give a zero-width interval."""
    diff = np.repeat(np.array([[0.0], [1.0], [2.0]]), 10, axis=1)
    result = study.paired_bootstrap(diff, np.zeros_like(diff))
    assert result.mean_diff == pytest.approx(1.0)
    assert result.ci_low <= 1 / 3 + 1e-9 and result.ci_high >= 5 / 3 - 1e-9


def test_bootstrap_rejects_mismatched_grids() -> None:
    with pytest.raises(ValueError, match="same shape"):
        study.paired_bootstrap(np.zeros((2, 3)), np.zeros((3, 2)))


# ------------------------------------------------------------------------------------ synthetic folder

SEEDS = (0, 1, 2)
DATASETS = {"Set5": [f"s5_{k}" for k in range(5)], "Set14": [f"s14_{k}" for k in range(4)]}
LPIPS_REASON = "LPIPS weights (AlexNet v0.1) unavailable: no pyiqa cache"
# mean PSNR of each version (the GAN stages trade PSNR for texture, as the study expects)
PSNR = {"bicubic": 28.4, "v1": 28.0, "v2-pretrain": 29.6, "v2": 28.9, "v3": 28.5, "ragan": 28.6}
GAN_STEPS = 20
# per trial: D(real) - D(fake) of the GAN reports; v3 collapses on 5 of 20 reports of seed 1
COLLAPSED = {("v3", 1): 5, ("ragan", 2): 20}


def _trial(trial_id: str, preset: str, seed: int | None, *, stage: str, status: str = "ok",
           init_from: str | None = None, stop_reason: str | None = None, flags: tuple[str, ...] = ()) -> dict:
    config = None
    if stage != schema.STAGE_BASELINE:
        config = {"name": f"{preset}-tiny", "generator": {"arch": "srresnet"},
                  "data": {"patch_size": 96 if preset == "v1" else 128, "train_dirs": ["train/T91"],
                           "degradation": "naive" if preset == "v1" else "matlab", "batch_size": 4},
                  "loss": {"perceptual_weight": 1.0 if preset in ("v3", "ragan") else 0.0,
                           "perceptual_weights": "untrained", "adv_type": "vanilla", "adv_weight": 5e-3,
                           "pixel_type": "l1"},
                  "train": {"warmup_steps": 100 if stage == schema.STAGE_PRETRAIN else 0, "gan_steps": GAN_STEPS,
                            "log_every": 1, "val_every": 10}}
    row = {name: None for name in schema.TRIAL_COLUMNS}
    row.update(trial_id=trial_id, label=f"{preset} #{seed}", preset=preset, seed=seed, status=status, stage=stage,
               init_from=init_from, stop_reason=stop_reason, steps=100 if stage == schema.STAGE_PRETRAIN else GAN_STEPS,
               flags=json.dumps(list(flags)), config_json=json.dumps(config) if config else None)
    return row


def _history(trial_id: str, version: str, seed: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    if version == "v2-pretrain":
        for step in (50, 100):
            rows.append({"trial_id": trial_id, "step": step, "phase": "warmup", "loss_pixel": 0.05,
                         "val_psnr": PSNR[version] - 0.1 * (step == 50) + 0.01 * seed})
        return rows
    collapsed = COLLAPSED.get((version, seed), 0)
    for step in range(1, GAN_STEPS + 1):
        gap = 0.99 if step <= collapsed else 0.5
        row = {"trial_id": trial_id, "step": step, "phase": "gan", "d_real": 0.995 if gap > 0.98 else 0.75,
               "d_fake": 0.995 - gap if gap > 0.98 else 0.25, "loss_adv_g": float(rng.normal(1.0, 0.1 * (1 + seed)))}
        if step % 10 == 0:
            row["val_psnr"] = PSNR[version] + 0.01 * seed - 0.05 * (step == GAN_STEPS)
        rows.append(row)
    return rows


def write_study_folder(folder: Path, *, with_stage_columns: bool = True, shared_pretrain: bool = False) -> dict:
    """A study-shaped results folder with known structure; returns what was written, for the checks. With
    `shared_pretrain` one pretraining (seed 0) starts the GAN stages of every seed."""
    rng = np.random.default_rng(0)
    trials = [_trial("bicubic", "bicubic", None, stage=schema.STAGE_BASELINE, status=schema.STATUS_BASELINE)]
    versions: dict[str, str] = {"bicubic": "bicubic"}
    for seed in SEEDS:
        pretrain = "pre_0" if shared_pretrain else f"pre_{seed}"
        if pretrain not in versions:
            trials.append(_trial(pretrain, "v2", seed, stage=schema.STAGE_PRETRAIN))
            versions[pretrain] = "v2-pretrain"
        trials.append(_trial(f"v1_{seed}", "v1", seed, stage=schema.STAGE_GAN))
        for preset in ("v2", "v3", "ragan"):
            stopped = preset == "ragan" and seed == 2
            trials.append(_trial(f"{preset}_{seed}", preset, seed, stage=schema.STAGE_GAN, init_from=pretrain,
                                 status="stopped" if stopped else "ok",
                                 flags=("untrained-perceptual-vgg19",) if preset in ("v3", "ragan") else ()))
        versions.update({f"{p}_{seed}": p for p in ("v1", "v2", "v3", "ragan")})
    trials.append(_trial("v3_failed", "v3", 3, stage=schema.STAGE_GAN, status="failed", init_from="pre_0"))
    diverged = _trial("v2_diverged", "v2", 4, stage=schema.STAGE_GAN, status="failed", init_from="pre_0")
    trials.append({**diverged, "error": "diverged: non-finite loss at step 7"})  # no checkpoint: failed
    stops = {"ragan_2": "discriminator collapse: D(real)-D(fake) > 0.98 for 3 reports (step 3)"}

    image_effect = {im: rng.normal(0, 1.5) for images in DATASETS.values() for im in images}
    scores, summary, history = [], [], []
    for trial in trials:
        trial_id = trial["trial_id"]
        if trial["status"] == "failed":
            continue
        version = versions[trial_id]
        seed_effect = 0.0 if trial["seed"] is None else 0.05 * trial["seed"]
        for dataset, images in DATASETS.items():
            lpips_missing = dataset == "Set14"
            for image in images:
                psnr = PSNR[version] + seed_effect + image_effect[image] + rng.normal(0, 0.1)
                scores.append({"trial_id": trial_id, "dataset": dataset, "image": image, "scale": 4, "psnr": psnr,
                               "ssim": 0.8 + psnr / 1000, "lpips": None if lpips_missing else 0.5 - psnr / 100})
            summary.append({"trial_id": trial_id, "dataset": dataset, "lpips_missing": LPIPS_REASON if lpips_missing
                            else None})
        if trial["stage"] != schema.STAGE_BASELINE:
            history += _history(trial_id, version, trial["seed"], rng)

    def frame(rows: list[dict], columns: dict[str, str]) -> pl.DataFrame:
        return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=schema.polars_schema(columns))

    trials_frame = frame(trials, schema.TRIAL_COLUMNS)
    if not with_stage_columns:
        trials_frame = trials_frame.drop("stage", "init_from").filter(pl.col("trial_id").str.starts_with("pre_").not_())
    folder.mkdir(parents=True, exist_ok=True)
    trials_frame.write_parquet(folder / schema.TRIALS_FILE)
    frame(scores, schema.SCORE_COLUMNS).write_parquet(folder / schema.SCORES_FILE)
    frame(summary, schema.SUMMARY_COLUMNS).write_parquet(folder / schema.SUMMARY_FILE)
    frame(history, schema.HISTORY_COLUMNS).write_parquet(folder / schema.HISTORY_FILE)
    (folder / schema.STOPS_FILE).write_text(json.dumps(stops))
    return {"versions": versions, "history": history}


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("study")
    written = write_study_folder(folder)
    study.compute_study(folder, n_resamples=400)
    return folder, written


def test_study_rows_equal_an_independent_recomputation(study_folder: tuple[Path, dict]) -> None:
    folder, _ = study_folder
    table = pl.read_parquet(folder / schema.STUDY_FILE)
    assert set(schema.STUDY_COLUMNS) == set(table.columns)
    expected = {("v2", "v1"), ("v3", "v2"), ("ragan", "v3"),
                ("v2", "v2-pretrain"), ("v3", "v3-pretrain"), ("ragan", "ragan-pretrain")}
    assert set(zip(table["a"], table["b"], strict=True)) == expected  # no esrgan, v1 has no pretraining
    assert table.height == len(expected) * len(DATASETS) * 3
    for row in table.iter_rows(named=True):
        ref = reference_row(folder, row["a"], row["b"], row["dataset"], row["metric"], n_resamples=400)
        assert row["n"] == ref["n"] == (0 if (row["dataset"], row["metric"]) == ("Set14", "lpips")
                                        else len(SEEDS) * len(DATASETS[row["dataset"]]))
        if ref["n"]:
            assert row["mean_diff"] == pytest.approx(ref["mean_diff"], abs=1e-9)
            assert (row["ci_low"], row["ci_high"]) == (pytest.approx(ref["ci_low"], abs=1e-9),
                                                       pytest.approx(ref["ci_high"], abs=1e-9))
            assert row["excludes_zero"] == (ref["ci_low"] > 0 or ref["ci_high"] < 0)
    # the GAN stages cost ~0.7-1.1 dB against their pretraining: clearly below zero
    v3 = table.filter((pl.col("comparison") == "v3 - v3-pretrain") & (pl.col("dataset") == "Set5")
                      & (pl.col("metric") == "psnr")).row(0, named=True)
    assert v3["ci_high"] < 0 and v3["verdict"] == "b better" and "v2-pretrain" in v3["note"]
    lpips = table.filter((pl.col("dataset") == "Set5") & (pl.col("metric") == "lpips")
                         & (pl.col("comparison") == "v3 - v3-pretrain")).row(0, named=True)
    assert lpips["verdict"] == "a better" or lpips["verdict"] == "b better"  # LPIPS lower is better
    assert lpips["higher_is_better"] is False and (lpips["verdict"] == "b better") == (lpips["ci_low"] > 0)


def test_missing_lpips_is_skipped_with_its_reason(study_folder: tuple[Path, dict]) -> None:
    folder, _ = study_folder
    table = pl.read_parquet(folder / schema.STUDY_FILE)
    missing = table.filter((pl.col("dataset") == "Set14") & (pl.col("metric") == "lpips"))
    assert missing.height == 6 and missing["n"].to_list() == [0] * 6
    assert missing["mean_diff"].null_count() == 6 and set(missing["verdict"]) == {"no data"}
    assert all(LPIPS_REASON in note for note in missing["note"])
    records = json.loads((folder / schema.STUDY_JSON).read_text())
    assert len(records) == table.height and records[0].keys() == set(schema.STUDY_COLUMNS)


def test_version_aggregates(study_folder: tuple[Path, dict]) -> None:
    folder, written = study_folder
    versions = pl.read_parquet(folder / schema.STUDY_VERSIONS_FILE)
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    assert versions["version"].unique(maintain_order=True).to_list() == [
        "bicubic", "v1", "v2-pretrain", "v2", "v3", "ragan"]
    for version in ("v3", "v2-pretrain", "bicubic"):
        ids = [t for t, v in written["versions"].items() if v == version]
        per_seed = [np.mean([r["psnr"] for r in scores.iter_rows(named=True) if r["trial_id"] == t
                             and r["dataset"] == "Set5"]) for t in ids]
        row = versions.filter((pl.col("version") == version) & (pl.col("dataset") == "Set5")
                              & (pl.col("metric") == "psnr")).row(0, named=True)
        assert row["n_seeds"] == len(ids) and row["mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert row["std"] == (pytest.approx(np.std(per_seed, ddof=1), abs=1e-12) if len(ids) > 1 else None)
    lpips = versions.filter((pl.col("dataset") == "Set14") & (pl.col("metric") == "lpips"))
    assert lpips["mean"].null_count() == lpips.height and set(lpips["missing"]) == {LPIPS_REASON}


def test_profile_measures_stability_from_the_history(study_folder: tuple[Path, dict]) -> None:
    folder, written = study_folder
    profile = {r["version"]: r for r in pl.read_parquet(folder / schema.STUDY_PROFILE_FILE).iter_rows(named=True)}
    assert set(profile) == {"bicubic", "v1", "v2-pretrain", "v2", "v3", "ragan"}
    v3, ragan, v1 = profile["v3"], profile["ragan"], profile["v1"]
    assert v3["collapse_gap"] == study.COLLAPSE_GAP == 0.98
    assert (v3["gan_reports"], v3["collapse_reports"]) == (60, 5)
    assert v3["collapse_share"] == pytest.approx(5 / 60) and v3["collapse_share_max"] == pytest.approx(5 / 20)
    assert ragan["collapse_reports"] == 20 and ragan["divergence_stops"] == 1 and ragan["stopped"] == 1
    assert v3["failed"] == 1 and v3["n_trials"] == 3 and v3["divergence_stops"] == 0
    assert profile["v2"]["failed"] == 1 and profile["v2"]["divergence_stops"] == 1
    # adversarial-loss spread: the std over steps 11..20 (the second half of steps 1..20), mean over seeds
    for version in ("v3", "ragan"):
        spreads = [np.std([h["loss_adv_g"] for h in written["history"] if h["trial_id"] == f"{version}_{s}"
                           and h["step"] >= 10.5], ddof=1) for s in SEEDS]
        assert profile[version]["adv_loss_std"] == pytest.approx(np.mean(spreads), abs=1e-12)
        assert profile[version]["adv_loss_std_sd"] == pytest.approx(np.std(spreads, ddof=1), abs=1e-12)
    # PSNR drift: the final GAN validation minus the pretraining's final validation (same seed)
    drift = [(PSNR["v3"] + 0.01 * s - 0.05) - (PSNR["v2-pretrain"] + 0.01 * s) for s in SEEDS]
    assert v3["psnr_drift"] == pytest.approx(np.mean(drift)) and "pretraining" in v3["drift_from"]
    assert v1["psnr_drift"] == pytest.approx(-0.05) and v1["drift_from"] == "the first GAN-stage validation"
    assert v1["pretrained_from"] is None and v3["pretrained_from"] == "v2-pretrain" and v3["pretrain_steps"] == 100
    assert (v1["patch_size"], v3["patch_size"], v1["degradation"], v3["perceptual_weight"]) == (96, 128, "naive", 1.0)
    assert json.loads(v3["flags"]) == ["untrained-perceptual-vgg19"] and v3["val_points"] == 2
    assert profile["v2-pretrain"]["collapse_share"] is None and profile["bicubic"]["arch"] is None


def test_a_sweep_without_stages_still_gets_a_study(tmp_path: Path) -> None:
    """Results from before two-stage training (no stage/init_from columns): version steps only."""
    write_study_folder(tmp_path, with_stage_columns=False)
    study.compute_study(tmp_path, n_resamples=50)
    table = pl.read_parquet(tmp_path / schema.STUDY_FILE)
    assert set(table["comparison"]) == {"v2 - v1", "v3 - v2", "ragan - v3"}


def test_unreadable_inputs_name_the_file(tmp_path: Path) -> None:
    write_study_folder(tmp_path)
    (tmp_path / schema.STOPS_FILE).write_text("{not json")
    with pytest.raises(io.ResultsError, match="stops.json"):
        study.compute_study(tmp_path)
    (tmp_path / schema.STOPS_FILE).unlink()
    (tmp_path / schema.SCORES_FILE).write_bytes(b"PAR1 truncated")
    with pytest.raises(io.ResultsError, match="scores.parquet"):
        study.compute_study(tmp_path)


def test_one_pretraining_shared_by_every_seed(tmp_path: Path) -> None:
    """harness.study's default: one pretraining per generator; each GAN seed is paired with the same one."""
    written = write_study_folder(tmp_path, shared_pretrain=True)
    assert sum(v == "v2-pretrain" for v in written["versions"].values()) == 1
    study.compute_study(tmp_path, n_resamples=300)
    table = pl.read_parquet(tmp_path / schema.STUDY_FILE)
    row = table.filter((pl.col("comparison") == "v3 - v3-pretrain") & (pl.col("dataset") == "Set5")
                       & (pl.col("metric") == "psnr")).row(0, named=True)
    ref = reference_row(tmp_path, "v3", "v3-pretrain", "Set5", "psnr", n_resamples=300)
    assert (row["n"], row["n_seeds"]) == (ref["n"], 3) == (15, 3)
    assert (row["mean_diff"], row["ci_low"], row["ci_high"]) == (pytest.approx(ref["mean_diff"], abs=1e-9),
                                                                 pytest.approx(ref["ci_low"], abs=1e-9),
                                                                 pytest.approx(ref["ci_high"], abs=1e-9))
    versions = pl.read_parquet(tmp_path / schema.STUDY_VERSIONS_FILE)
    pre = versions.filter((pl.col("version") == "v2-pretrain") & (pl.col("metric") == "psnr")).row(0, named=True)
    assert pre["n_seeds"] == 1 and pre["std"] is None
    profile = pl.read_parquet(tmp_path / schema.STUDY_PROFILE_FILE).filter(pl.col("version") == "v3").row(0, named=True)
    drift = [(PSNR["v3"] + 0.01 * s - 0.05) - PSNR["v2-pretrain"] for s in SEEDS]  # all from pre_0's final value
    assert profile["psnr_drift"] == pytest.approx(np.mean(drift))


def test_gan_stage_from_a_failed_pretraining_is_left_out_and_said(tmp_path: Path) -> None:
    write_study_folder(tmp_path)
    path = tmp_path / schema.TRIALS_FILE
    trials = pl.read_parquet(path)
    trials.with_columns(pl.when(pl.col("trial_id") == "pre_0").then(pl.lit("failed")).otherwise(pl.col("status"))
                        .alias("status")).write_parquet(path)
    study.compute_study(tmp_path, n_resamples=100)
    row = (pl.read_parquet(tmp_path / schema.STUDY_FILE)
           .filter((pl.col("comparison") == "v3 - v3-pretrain") & (pl.col("dataset") == "Set5")
                   & (pl.col("metric") == "psnr")).row(0, named=True))
    assert (row["n"], row["n_seeds"]) == (10, 2) and "init_from is not a scored pretraining trial: pre_0" in row["note"]
