"""results.study: the study tables of a synthetic folder, recomputed independently (study_reference.py), and the
folder's hard cases: shared and per-seed pretrainings, unequal or unknown budgets, selection on test data, one
seed, non-finite values, duplicate trials, and results folders written before this version."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from study_reference import (
    reference_components,
    reference_mdd,
    reference_row,
    reference_seeds_needed,
    reference_study,
)

from results import io, schema, stats, study, study_power
from results.rows import trial_version

SEEDS = (0, 1, 2)
DATASETS = {"Set5": [f"s5_{k}" for k in range(5)], "Set14": [f"s14_{k}" for k in range(4)]}
LPIPS_REASON = "LPIPS weights (AlexNet v0.1) unavailable: no pyiqa cache"
# mean PSNR of each version (the GAN stages trade PSNR for texture, as the study expects)
PSNR = {"bicubic": 28.4, "v1": 28.0, "srresnet-pretrain": 29.6, "v2": 28.9, "v3": 28.5, "ragan": 28.6}
GAN_STEPS = 20
PRETRAIN_STEPS = 100
ADV_WEIGHT = {"v1": 1e-3, "v2": 1e-3, "v3": 5e-3, "ragan": 5e-3}
# per trial: the discriminator's gap on the GAN reports; v3 collapses on 5 of 20 reports of seed 1
COLLAPSED = {("v3", 1): 5, ("ragan", 2): 20}
METRICS = list(schema.HIGHER_IS_BETTER)  # psnr, ssim, lpips (and niqe where the schema has it)


def _trial(trial_id: str, preset: str, seed: int | None, *, stage: str, status: str = "ok",
           init_from: str | None = None, stop_reason: str | None = None, flags: tuple[str, ...] = (),
           g_updates: int | None = None) -> dict:
    config = None
    if stage != schema.STAGE_BASELINE:
        version = "srresnet" if stage == schema.STAGE_PRETRAIN else preset
        config = {"name": f"{preset}-tiny", "generator": {"arch": "srresnet"},
                  "data": {"patch_size": 96 if version == "v1" else 128, "train_dirs": ["train/T91"],
                           "degradation": "naive" if version == "v1" else "matlab", "batch_size": 4},
                  "loss": {"perceptual_weight": 1.0 if version in ("v3", "ragan") else 0.0,
                           "perceptual_weights": "untrained", "adv_type": "vanilla",
                           "adv_weight": ADV_WEIGHT.get(version, 0.0), "pixel_type": "l1"},
                  "train": {"warmup_steps": PRETRAIN_STEPS if stage == schema.STAGE_PRETRAIN else 0,
                            "gan_steps": GAN_STEPS, "log_every": 1, "val_every": 10}}
    row = {name: None for name in schema.TRIAL_COLUMNS}
    row.update(trial_id=trial_id, label=f"{preset} #{seed}", preset=preset, seed=seed, status=status, stage=stage,
               init_from=init_from, stop_reason=stop_reason, g_updates=g_updates, selection="final",
               steps=PRETRAIN_STEPS if stage == schema.STAGE_PRETRAIN else GAN_STEPS,
               flags=json.dumps(list(flags)), config_json=json.dumps(config) if config else None)
    return row


def _history(trial_id: str, version: str, seed: int, rng: np.random.Generator, *, new_columns: bool) -> list[dict]:
    rows = []
    if version == "srresnet-pretrain":
        for step in (50, 100):
            rows.append({"trial_id": trial_id, "step": step, "phase": "warmup", "loss_pixel": 0.05,
                         "val_psnr": PSNR[version] - 0.1 * (step == 50) + 0.01 * seed})
        return rows
    collapsed = COLLAPSED.get((version, seed), 0)
    for step in range(1, GAN_STEPS + 1):
        gap = 0.99 if step <= collapsed else 0.5
        raw = float(rng.normal(1.0, 0.1 * (1 + seed)))
        row = {"trial_id": trial_id, "step": step, "phase": "gan", "d_real": 0.995 if gap > 0.98 else 0.75,
               "d_fake": 0.995 - gap if gap > 0.98 else 0.25, "loss_adv_g": ADV_WEIGHT[version] * raw}
        if new_columns:
            # the engine's own gap: here it disagrees with d_real - d_fake on the first report (a relativistic D
            # can saturate while its sigmoid outputs look apart), so the test sees which one is used
            row.update(loss_adv_raw=raw, d_gap=0.99 if step == 1 or step <= collapsed else 0.4)
        if step % 10 == 0:
            row["val_psnr"] = PSNR[version] + 0.01 * seed - 0.05 * (step == GAN_STEPS)
        rows.append(row)
    return rows


def write_study_folder(folder: Path, *, with_stage_columns: bool = True, shared_pretrain: bool = False,
                       old_format: bool = False, seeds: tuple[int, ...] = SEEDS, v1_updates: int | None = None) -> dict:
    """A study-shaped results folder with known structure; returns what was written, for the checks.

    `shared_pretrain`: one pretraining (seed 0) starts every seed's GAN stages, else one per seed.
    `old_format`: as written before pretrainings had their own names and trials their budgets: pretraining
    preset "v2" and id "pretrain-<hex>", no g_updates / selection / loss_adv_raw / d_gap columns.
    `v1_updates`: v1's g_updates (default: equal to the two-stage versions')."""
    rng = np.random.default_rng(0)
    two_stage = PRETRAIN_STEPS + GAN_STEPS
    trials = [_trial("bicubic", "bicubic", None, stage=schema.STAGE_BASELINE, status=schema.STATUS_BASELINE)]
    versions: dict[str, str] = {"bicubic": "bicubic"}
    for seed in seeds:
        pretrain_seed = seeds[0] if shared_pretrain else seed
        if old_format:
            pretrain = f"pretrain-{pretrain_seed:012x}"
        else:
            pretrain = "srresnet-pretrain" if shared_pretrain else f"srresnet-pretrain-seed{seed}"
        if pretrain not in versions:
            trials.append(_trial(pretrain, "v2" if old_format else "srresnet-pretrain", pretrain_seed,
                                 stage=schema.STAGE_PRETRAIN, g_updates=PRETRAIN_STEPS))
            versions[pretrain] = "srresnet-pretrain"
        trials.append(_trial(f"v1_{seed}", "v1", seed, stage=schema.STAGE_GAN,
                             g_updates=two_stage if v1_updates is None else v1_updates))
        for preset in ("v2", "v3", "ragan"):
            stopped = preset == "ragan" and seed == 2
            trials.append(_trial(f"{preset}_{seed}", preset, seed, stage=schema.STAGE_GAN, init_from=pretrain,
                                 status="stopped" if stopped else "ok", g_updates=two_stage,
                                 flags=("untrained-perceptual-vgg19",) if preset in ("v3", "ragan") else ()))
        versions.update({f"{p}_{seed}": p for p in ("v1", "v2", "v3", "ragan")})
    first_pretrain = next(t for t, v in versions.items() if v == "srresnet-pretrain")
    trials.append(_trial("v3_failed", "v3", 3, stage=schema.STAGE_GAN, status="failed", init_from=first_pretrain))
    diverged = _trial("v2_diverged", "v2", 4, stage=schema.STAGE_GAN, status="failed", init_from=first_pretrain)
    trials.append({**diverged, "error": "diverged: non-finite loss at step 7"})  # no checkpoint: failed
    stops = {"ragan_2": "discriminator collapse: D(real)-D(fake) > 0.98 for 3 reports (step 3)"}

    image_effect = {im: rng.normal(0, 1.5) for images in DATASETS.values() for im in images}
    scores, summary, history = [], [], []
    for trial in trials:
        trial_id = trial["trial_id"]
        if trial["status"] == "failed":
            continue
        version = versions[trial_id]
        # each trained trial has its own seed effect (the seed-to-seed variation a study measures)
        seed_effect = 0.0 if trial["seed"] is None else rng.normal(0, 0.05)
        for dataset, images in DATASETS.items():
            lpips_missing = dataset == "Set14"
            for image in images:
                psnr = PSNR[version] + seed_effect + image_effect[image] + rng.normal(0, 0.1)
                scores.append({"trial_id": trial_id, "dataset": dataset, "image": image, "scale": 4, "psnr": psnr,
                               "ssim": 0.8 + psnr / 1000, "lpips": None if lpips_missing else 0.5 - psnr / 100})
            summary.append({"trial_id": trial_id, "dataset": dataset, "lpips_missing": LPIPS_REASON if lpips_missing
                            else None})
        if trial["stage"] != schema.STAGE_BASELINE:
            history += _history(trial_id, version, trial["seed"], rng, new_columns=not old_format)

    def frame(rows: list[dict], columns: dict[str, str]) -> pl.DataFrame:
        return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema=schema.polars_schema(columns))

    trials_frame = frame(trials, schema.TRIAL_COLUMNS)
    history_columns = {**schema.HISTORY_COLUMNS, "loss_adv_raw": "f64", "d_gap": "f64"}
    history_frame = frame(history, history_columns)
    if old_format:
        trials_frame = trials_frame.drop("g_updates", "images_seen", "selection", strict=False)
        history_frame = history_frame.drop("loss_adv_raw", "d_gap")
    if not with_stage_columns:
        trials_frame = trials_frame.drop("stage", "init_from").filter(
            ~pl.col("trial_id").str.contains("pretrain"))
    folder.mkdir(parents=True, exist_ok=True)
    trials_frame.write_parquet(folder / schema.TRIALS_FILE)
    frame(scores, schema.SCORE_COLUMNS).write_parquet(folder / schema.SCORES_FILE)
    frame(summary, schema.SUMMARY_COLUMNS).write_parquet(folder / schema.SUMMARY_FILE)
    history_frame.write_parquet(folder / schema.HISTORY_FILE)
    (folder / schema.STOPS_FILE).write_text(json.dumps(stops))
    return {"versions": versions, "history": history}


def _row(table: pl.DataFrame, comparison: str, dataset: str = "Set5", metric: str = "psnr") -> dict:
    return table.filter((pl.col("comparison") == comparison) & (pl.col("dataset") == dataset)
                        & (pl.col("metric") == metric)).row(0, named=True)


def _assert_rows_equal_the_reference(folder: Path) -> pl.DataFrame:
    table = pl.read_parquet(folder / schema.STUDY_FILE)
    reference = reference_study(folder, list(DATASETS), METRICS)
    assert {(r["a"], r["b"], r["dataset"], r["metric"]) for r in table.iter_rows(named=True)} == set(reference)
    for row in table.iter_rows(named=True):
        ref = reference[row["a"], row["b"], row["dataset"], row["metric"]]
        where = (row["comparison"], row["dataset"], row["metric"])
        for key in ("n", "n_seeds", "n_images", "verdict"):
            assert row[key] == ref[key], (where, key)
        for key in ("mean_diff", "ci_low", "ci_high", "df", "p_value", "p_holm", "p_improve", "mdd", "sd_seed",
                    "sd_image", "sd_resid"):
            if ref[key] is None:
                assert row[key] is None, (where, key)
            else:
                assert row[key] == pytest.approx(ref[key], abs=1e-9, rel=1e-9), (where, key)
        if ref["ci_low"] is not None:
            assert row["excludes_zero"] == (ref["ci_low"] > 0 or ref["ci_high"] < 0)
            assert row["distinguishable"] == (ref["p_holm"] < 0.05)
    return table


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("study")
    written = write_study_folder(folder)
    study.compute_study(folder)
    return folder, written


def test_study_rows_equal_an_independent_recomputation(study_folder: tuple[Path, dict]) -> None:
    folder, _ = study_folder
    table = _assert_rows_equal_the_reference(folder)
    assert list(table.columns) == list(schema.STUDY_COLUMNS)
    expected = {("v2", "v1"), ("v3", "v2"), ("ragan", "v3"), ("v2", "srresnet-pretrain"),
                ("v3", "srresnet-pretrain"), ("ragan", "srresnet-pretrain")}
    assert set(zip(table["a"], table["b"], strict=True)) == expected  # no esrgan, v1 has no pretraining
    assert table.height == len(expected) * len(DATASETS) * len(METRICS)
    assert set(table["method"].drop_nulls()) == {stats.METHOD} and set(table["ci_level"]) == {0.95}
    # the GAN stages cost ~0.7-1.1 dB against their pretraining: clearly below zero, after Holm too
    v3 = _row(table, "v3 - srresnet-pretrain")
    assert v3["ci_high"] < 0 and v3["p_holm"] < 0.05 and v3["verdict"] == "b better" and v3["distinguishable"]
    assert "srresnet-pretrain-seed0" in v3["note"] and v3["p_improve"] == 0.0
    lpips = _row(table, "v3 - srresnet-pretrain", metric="lpips")
    assert lpips["higher_is_better"] is False and lpips["mean_diff"] > 0 and lpips["verdict"] == "b better"
    assert lpips["p_improve"] == 0.0  # lower is better: every seed of v3 has the higher (worse) LPIPS


def test_holm_runs_over_every_comparison_and_dataset_of_a_metric(study_folder: tuple[Path, dict]) -> None:
    folder, _ = study_folder
    table = pl.read_parquet(folder / schema.STUDY_FILE)
    for metric in METRICS:
        family = table.filter(pl.col("metric") == metric)
        tested = family.filter(pl.col("p_value").is_not_null())
        m = tested.height
        assert m == {"psnr": 12, "ssim": 12, "lpips": 6}.get(metric, 0)  # LPIPS has no Set14 scores, NIQE none
        if not m:
            continue
        ranked = sorted(tested["p_value"].to_list())
        smallest = tested.filter(pl.col("p_value") == ranked[0]).row(0, named=True)
        assert smallest["p_holm"] == pytest.approx(min(1.0, m * ranked[0]))
        assert all(h >= p for h, p in zip(tested["p_holm"], tested["p_value"], strict=True))
        assert family.filter(pl.col("p_value").is_null())["p_holm"].null_count() == family.height - m


def test_missing_lpips_is_skipped_with_its_reason(study_folder: tuple[Path, dict]) -> None:
    folder, _ = study_folder
    table = pl.read_parquet(folder / schema.STUDY_FILE)
    missing = table.filter((pl.col("dataset") == "Set14") & (pl.col("metric") == "lpips"))
    assert missing.height == 6 and missing["n"].to_list() == [0] * 6
    assert missing["mean_diff"].null_count() == 6 and set(missing["verdict"]) == {"no data"}
    assert missing["distinguishable"].null_count() == 6 and missing["variance_sources"].null_count() == 6
    assert all(LPIPS_REASON in note for note in missing["note"])
    records = json.loads((folder / schema.STUDY_JSON).read_text())
    assert len(records) == table.height and list(records[0]) == list(schema.STUDY_COLUMNS)


def test_budgets_selection_and_variance_sources(study_folder: tuple[Path, dict]) -> None:
    folder, _ = study_folder
    table = pl.read_parquet(folder / schema.STUDY_FILE)
    step = _row(table, "v2 - v1")
    assert (step["g_updates_a"], step["g_updates_b"], step["budget"]) == (120, 120, None)
    gan_vs_pre = _row(table, "v3 - srresnet-pretrain")
    assert (gan_vs_pre["g_updates_a"], gan_vs_pre["g_updates_b"]) == (120, 100)
    assert gan_vs_pre["budget"] == "unequal-budget"  # the GAN stage's 20 updates on top of the pretraining's
    assert table["selection"].null_count() == table.height
    assert set(table["variance_sources"].drop_nulls()) == {
        "training seed of the GAN stage and image; one pretraining per seed (included)"}


def test_version_aggregates(study_folder: tuple[Path, dict]) -> None:
    folder, written = study_folder
    versions = pl.read_parquet(folder / schema.STUDY_VERSIONS_FILE)
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    assert versions["version"].unique(maintain_order=True).to_list() == [
        "bicubic", "v1", "srresnet-pretrain", "v2", "v3", "ragan"]
    for version in ("v3", "srresnet-pretrain", "bicubic"):
        ids = [t for t, v in written["versions"].items() if v == version]
        per_seed = [np.mean([r["psnr"] for r in scores.iter_rows(named=True) if r["trial_id"] == t
                             and r["dataset"] == "Set5"]) for t in ids]
        row = versions.filter((pl.col("version") == version) & (pl.col("dataset") == "Set5")
                              & (pl.col("metric") == "psnr")).row(0, named=True)
        assert row["n_seeds"] == len(ids) and row["mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert row["std"] == (pytest.approx(np.std(per_seed, ddof=1), abs=1e-12) if len(ids) > 1 else None)
    lpips = versions.filter((pl.col("dataset") == "Set14") & (pl.col("metric") == "lpips"))
    assert lpips["mean"].null_count() == lpips.height and set(lpips["missing"]) == {LPIPS_REASON}


def test_profile_measures_stability_on_the_unweighted_loss_and_the_logged_gap(study_folder: tuple[Path, dict]) -> None:
    folder, written = study_folder
    profile = {r["version"]: r for r in pl.read_parquet(folder / schema.STUDY_PROFILE_FILE).iter_rows(named=True)}
    assert set(profile) == {"bicubic", "v1", "srresnet-pretrain", "v2", "v3", "ragan"}
    v3, ragan, v1 = profile["v3"], profile["ragan"], profile["v1"]
    assert v3["collapse_gap"] == schema.COLLAPSE_GAP == 0.98
    # d_gap > 0.98 on the first report of every trial and on the collapsed ones (d_real - d_fake would miss the
    # first: there it is 0.5)
    assert (v3["gan_reports"], v3["collapse_reports"]) == (60, 2 + 5)
    assert v3["collapse_share"] == pytest.approx(7 / 60) and v3["collapse_share_max"] == pytest.approx(5 / 20)
    assert v3["collapse_source"] == "d_gap" and v3["adv_loss_source"] == "loss_adv_raw"
    assert ragan["collapse_reports"] == 20 + 1 + 1 and ragan["divergence_stops"] == 1 and ragan["stopped"] == 1
    assert v3["failed"] == 1 and v3["n_trials"] == 3 and v3["divergence_stops"] == 0
    assert profile["v2"]["failed"] == 1 and profile["v2"]["divergence_stops"] == 1
    # adversarial-loss spread of the unweighted loss: the std over steps 11..20 (the second half of 1..20), mean
    # over seeds; v2 (weight 1e-3) and v3 (5e-3) draw the same raw spread, so they compare
    for version in ("v2", "v3", "ragan"):
        spreads = [np.std([h["loss_adv_raw"] for h in written["history"] if h["trial_id"] == f"{version}_{s}"
                           and h["step"] >= 10.5], ddof=1) for s in SEEDS]
        assert profile[version]["adv_loss_std"] == pytest.approx(np.mean(spreads), abs=1e-12)
        assert profile[version]["adv_loss_std_sd"] == pytest.approx(np.std(spreads, ddof=1), abs=1e-12)
    # PSNR drift: the final GAN validation minus the pretraining's final validation (same seed)
    drift = [(PSNR["v3"] + 0.01 * s - 0.05) - (PSNR["srresnet-pretrain"] + 0.01 * s) for s in SEEDS]
    assert v3["psnr_drift"] == pytest.approx(np.mean(drift)) and "pretraining" in v3["drift_from"]
    assert v1["psnr_drift"] == pytest.approx(-0.05) and v1["drift_from"] == "the first GAN-stage validation"
    assert v1["pretrained_from"] is None and v3["pretrained_from"] == "srresnet-pretrain"
    assert v3["pretrain_steps"] == PRETRAIN_STEPS
    assert (v1["patch_size"], v3["patch_size"], v1["degradation"], v3["perceptual_weight"]) == (96, 128, "naive", 1.0)
    assert json.loads(v3["flags"]) == ["untrained-perceptual-vgg19"] and v3["val_points"] == 2
    assert profile["srresnet-pretrain"]["collapse_share"] is None and profile["bicubic"]["arch"] is None
    assert json.loads(profile["srresnet-pretrain"]["seeds"]) == list(SEEDS)


def test_power_functions_read_the_components_a_study_measured(study_folder: tuple[Path, dict]) -> None:
    """The components each comparison measured, and the plan made from them, against the independent reference
    (study_reference.py: the grid's own ANOVA, the mean squares another design expects, scipy's non-central t, and
    a search over the seeds one at a time). The PSNR rows cover every branch: seed and image components both
    positive (v2 - srresnet-pretrain on Set5), one of them, and neither (v2 - v1)."""
    folder, _ = study_folder
    table = pl.read_parquet(folder / schema.STUDY_FILE)
    components = study_power.variance_components_of(folder)
    assert len(components) == table.filter(pl.col("n") > 0).height
    plan = {(r["comparison"], r["dataset"], r["metric"]): r
            for r in study_power.plan(folder, n_seeds=12, target_diff=0.15)}
    at_measured = {(r["comparison"], r["dataset"], r["metric"]): r["mdd"] for r in study_power.plan(folder, n_seeds=3)}
    branches = set()
    for row in table.filter((pl.col("metric") == "psnr") & (pl.col("n") > 0)).iter_rows(named=True):
        key = (row["comparison"], row["dataset"], "psnr")
        variances, seeds, images = reference_components(folder, row["a"], row["b"], row["dataset"], "psnr")
        branches.add((variances[0] > 0, variances[1] > 0))
        measured = components[key]
        assert measured.components.sd() == pytest.approx(tuple(math.sqrt(v) for v in variances), abs=1e-12), key
        assert (measured.n_seeds, measured.n_images) == (seeds, images) == (3, 5 if row["dataset"] == "Set5" else 4)
        # at the design it measured, the plan gives the mdd the reference computes from the mean squares themselves
        assert at_measured[key] == pytest.approx(reference_row(folder, row["a"], row["b"], row["dataset"],
                                                               "psnr")["mdd"], rel=1e-9), key
        planned = plan[key]
        assert planned["n_images"] == images and planned["note"] is None
        assert planned["mdd"] == pytest.approx(reference_mdd(variances, 12, images), rel=1e-9), key
        assert planned["seeds_needed"] == reference_seeds_needed(variances, 0.15, images) is not None, key
    assert branches == {(True, True), (True, False), (False, True), (False, False)}
    assert all(r["note"] == "one seed: no seed-level test" for r in study_power.plan(folder, n_seeds=1))


def test_one_pretraining_shared_by_every_seed(tmp_path: Path) -> None:
    """One pretraining starts every seed's GAN stage: each seed is paired with the same one, and the interval
    says that the pretraining's own variance is not in it."""
    written = write_study_folder(tmp_path, shared_pretrain=True)
    assert sum(v == "srresnet-pretrain" for v in written["versions"].values()) == 1
    study.compute_study(tmp_path)
    table = _assert_rows_equal_the_reference(tmp_path)
    row = _row(table, "v3 - srresnet-pretrain")
    assert (row["n"], row["n_seeds"]) == (15, 3)
    shared = "training seed of the GAN stage and image; pretraining shared by all seeds (one run: its variance is " \
             "not included)"
    assert row["variance_sources"] == shared and _row(table, "v3 - v2")["variance_sources"] == shared
    assert _row(table, "v2 - v1")["variance_sources"] == shared  # v2's side shares it
    versions = pl.read_parquet(tmp_path / schema.STUDY_VERSIONS_FILE)
    pre = versions.filter((pl.col("version") == "srresnet-pretrain") & (pl.col("metric") == "psnr")).row(0, named=True)
    assert pre["n_seeds"] == 1 and pre["std"] is None
    profile = pl.read_parquet(tmp_path / schema.STUDY_PROFILE_FILE).filter(pl.col("version") == "v3").row(0, named=True)
    drift = [(PSNR["v3"] + 0.01 * s - 0.05) - PSNR["srresnet-pretrain"] for s in SEEDS]  # all from one final value
    assert profile["psnr_drift"] == pytest.approx(np.mean(drift))


def test_a_results_folder_from_before_this_version(tmp_path: Path) -> None:
    """Pretraining preset "v2" with id "pretrain-<hex>", no g_updates, no loss_adv_raw / d_gap: the study still
    runs, names the pretraining by its generator family, and says what it could not know."""
    write_study_folder(tmp_path, old_format=True)
    study.compute_study(tmp_path)
    table = _assert_rows_equal_the_reference(tmp_path)
    assert "v3 - srresnet-pretrain" in set(table["comparison"])
    assert set(table["budget"]) == {"unknown"} and table["g_updates_a"].null_count() == table.height
    profile = {r["version"]: r for r in pl.read_parquet(tmp_path / schema.STUDY_PROFILE_FILE).iter_rows(named=True)}
    v3 = profile["v3"]
    assert v3["adv_loss_source"] == "loss_adv_g / adv_weight (older history)"
    assert v3["collapse_source"] == "d_real - d_fake (older history; for a relativistic D it can miss a saturated D_Ra)"
    assert v3["collapse_reports"] == 5  # d_real - d_fake: only the collapsed reports
    history = pl.read_parquet(tmp_path / schema.HISTORY_FILE)
    spreads = []
    for s in SEEDS:  # the weighted loss divided by v3's adv_weight
        part = history.filter((pl.col("trial_id") == f"v3_{s}") & (pl.col("step") >= 10.5))
        spreads.append(np.std(part["loss_adv_g"].to_numpy() / ADV_WEIGHT["v3"], ddof=1))
    assert v3["adv_loss_std"] == pytest.approx(np.mean(spreads), rel=1e-9)
    pretrain = {"stage": schema.STAGE_PRETRAIN}  # older folders' pretraining names (tests/reports/test_reports_load.py)
    assert trial_version({**pretrain, "preset": "esrgan", "config_json": json.dumps({"generator": {"arch": "rrdbnet"}})}
                         ) == "rrdb-pretrain"
    assert trial_version({**pretrain, "preset": "rrdb-pretrain-seed2"}) == "rrdb-pretrain"
    assert trial_version({**pretrain, "preset": "srresnet-pretrain-0a1b2c3d"}) == "srresnet-pretrain"
    assert trial_version(pretrain) == "pretrain"


def test_a_sweep_without_stages_still_gets_a_study(tmp_path: Path) -> None:
    """Results from before two-stage training (no stage/init_from columns): version steps only."""
    write_study_folder(tmp_path, with_stage_columns=False)
    study.compute_study(tmp_path)
    table = pl.read_parquet(tmp_path / schema.STUDY_FILE)
    assert set(table["comparison"]) == {"v2 - v1", "v3 - v2", "ragan - v3"}
    assert set(table["variance_sources"].drop_nulls()) == {"training seed and image"}


def test_unequal_budgets_are_flagged(tmp_path: Path) -> None:
    write_study_folder(tmp_path, v1_updates=GAN_STEPS)  # v1 trained 20 steps, v2 100 + 20
    study.compute_study(tmp_path)
    row = _row(pl.read_parquet(tmp_path / schema.STUDY_FILE), "v2 - v1")
    assert (row["budget"], row["g_updates_a"], row["g_updates_b"]) == ("unequal-budget", 120, 20)
    write_study_folder(tmp_path, v1_updates=119)  # within 1 %
    study.compute_study(tmp_path)
    assert _row(pl.read_parquet(tmp_path / schema.STUDY_FILE), "v2 - v1")["budget"] is None


def test_selection_on_test_data_is_flagged_on_both_sides_comparisons(tmp_path: Path) -> None:
    write_study_folder(tmp_path)
    path = tmp_path / schema.TRIALS_FILE
    trials = pl.read_parquet(path)
    flagged = pl.when(pl.col("trial_id") == "v2_1").then(pl.lit('["selected-on-test"]')).otherwise(pl.col("flags"))
    trials.with_columns(flagged.alias("flags")).write_parquet(path)
    study.compute_study(tmp_path)
    table = pl.read_parquet(tmp_path / schema.STUDY_FILE)
    flagged_rows = set(table.filter(pl.col("selection") == "selected-on-test")["comparison"])
    assert flagged_rows == {"v2 - v1", "v3 - v2", "v2 - srresnet-pretrain"}


def test_one_seed_gives_no_interval_and_says_why(tmp_path: Path) -> None:
    write_study_folder(tmp_path, seeds=(0,))
    study.compute_study(tmp_path)
    table = _assert_rows_equal_the_reference(tmp_path)
    scored = table.filter(pl.col("n") > 0)
    assert set(scored["verdict"]) == {"one seed"} and set(scored["n_seeds"]) == {1}
    for column in ("ci_low", "ci_high", "p_value", "p_holm", "distinguishable", "excludes_zero", "mdd", "p_improve",
                   "sd_seed", "df"):
        assert scored[column].null_count() == scored.height, column
    assert scored["mean_diff"].null_count() == 0
    assert all("one seed: no seed-level interval" in n for n in scored["note"])
    assert set(scored["variance_sources"]) == {"none at the seed level (one seed)"}


def test_non_finite_values_are_left_out_or_not_computed(tmp_path: Path) -> None:
    write_study_folder(tmp_path)
    path = tmp_path / schema.SCORES_FILE
    scores = pl.read_parquet(path)
    # an exact reconstruction (PSNR inf) on one image of v3 seed 0; values so large their squares overflow for
    # ragan on Set14
    inf = (pl.col("trial_id") == "v3_0") & (pl.col("image") == "s5_0")
    huge = pl.col("trial_id").str.starts_with("ragan") & (pl.col("dataset") == "Set14")
    scores.with_columns(pl.when(inf).then(math.inf).when(huge).then(1e300).otherwise(pl.col("psnr"))
                        .alias("psnr")).write_parquet(path)
    study.compute_study(tmp_path)
    table = pl.read_parquet(tmp_path / schema.STUDY_FILE)
    v3 = _row(table, "v3 - v2")
    assert "1 non-finite score(s) left out" in v3["note"] and "image s5_0" in v3["note"]
    assert (v3["n_seeds"], v3["n_images"]) == (3, 4) and math.isfinite(v3["ci_low"])
    overflow = _row(table, "ragan - v3", dataset="Set14")
    assert overflow["verdict"] == "no data" and overflow["mean_diff"] is None and overflow["ci_low"] is None
    assert "not computed: non-finite" in overflow["note"] and overflow["distinguishable"] is None
    for row in table.iter_rows(named=True):  # nothing non-finite is ever written
        assert all(not isinstance(v, float) or math.isfinite(v) for v in row.values()), row["comparison"]


def test_duplicate_trials_and_unreadable_inputs_name_the_file(tmp_path: Path) -> None:
    write_study_folder(tmp_path)
    (tmp_path / schema.STOPS_FILE).write_text("{not json")
    with pytest.raises(io.ResultsError, match="stops.json"):
        study.compute_study(tmp_path)
    (tmp_path / schema.STOPS_FILE).unlink()
    path = tmp_path / schema.TRIALS_FILE
    trials = pl.read_parquet(path)
    pl.concat([trials, trials.filter(pl.col("trial_id") == "v3_1")]).write_parquet(path)
    with pytest.raises(io.ResultsError, match=r"trials.parquet: duplicate trial_id: v3_1"):
        study.compute_study(tmp_path)
    assert not (tmp_path / schema.STUDY_FILE).exists()  # nothing half-written
    trials.write_parquet(path)
    (tmp_path / schema.SCORES_FILE).write_bytes(b"PAR1 truncated")
    with pytest.raises(io.ResultsError, match="scores.parquet"):
        study.compute_study(tmp_path)


def test_gan_stage_from_a_failed_pretraining_is_left_out_and_said(tmp_path: Path) -> None:
    write_study_folder(tmp_path)
    path = tmp_path / schema.TRIALS_FILE
    trials = pl.read_parquet(path)
    failed = pl.when(pl.col("trial_id") == "srresnet-pretrain-seed0").then(pl.lit("failed"))
    trials.with_columns(failed.otherwise(pl.col("status")).alias("status")).write_parquet(path)
    study.compute_study(tmp_path)
    row = _row(pl.read_parquet(tmp_path / schema.STUDY_FILE), "v3 - srresnet-pretrain")
    assert (row["n"], row["n_seeds"]) == (10, 2)
    assert "init_from is not a scored pretraining trial: srresnet-pretrain-seed0" in row["note"]
