"""`python -m harness.study --size tiny` end to end (the session's `tiny_study`, tests/conftest.py): five versions
x two seeds with shared pretraining, interrupted with Ctrl-C after its first GAN trial and finished by
`harness.sweep --resume`; the study tables, the study folder and the report's Study section. The tables'
intervals are recomputed here, independently, from scores.parquet (tests/results/study_reference.py shares no
code with results.study)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

from harness.sweeps import study
from results import schema

REPO = Path(__file__).resolve().parents[2]


def _reference():
    spec = importlib.util.spec_from_file_location("study_reference", REPO / "tests" / "results" / "study_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_study_runs_every_version_and_seed_from_shared_pretrainings(tiny_study) -> None:
    out, stdout = tiny_study.out, tiny_study.resume.stdout
    trials = pl.read_parquet(out / "trials.parquet")
    gan = trials.filter(pl.col("stage") == "gan")
    # every preset, and the equal-budget control of each pretraining's GAN stages (issue 25), x seeds
    assert sorted(zip(gan["preset"], gan["seed"], strict=True)) == [
        (p, s) for p in sorted([*study.PRESETS, "srresnet-continued", "rrdb-continued"]) for s in (0, 1)]
    assert set(gan["status"]) == {"ok"}
    pretrain = trials.filter(pl.col("stage") == "pretrain")
    assert pretrain.height == 2  # one SRResNet (v2, v3, ragan) and one RRDB (esrgan), shared by both seeds
    # named for what they are, in trials.parquet, the run folders and the study tables
    assert sorted(zip(pretrain["trial_id"], pretrain["preset"], strict=True)) == [
        ("rrdb-pretrain", "rrdb-pretrain"), ("srresnet-pretrain", "srresnet-pretrain")]
    assert all((out / "trials" / name).is_dir() for name in pretrain["trial_id"])
    for row in gan.iter_rows(named=True):
        if row["preset"] == "v1":
            assert row["init_from"] is None  # v1 keeps its single-stage recipe
        else:
            rrdb = row["preset"] in ("esrgan", "rrdb-continued")  # ESRGAN's control starts where ESRGAN does
            assert row["init_from"] == ("rrdb-pretrain" if rrdb else "srresnet-pretrain")
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "study"
    assert "W + K*G" in stdout and f"report: {out / 'report' / 'index.html'}" in stdout
    # equal budgets (issue 17): single-stage v1 makes as many generator updates as pretraining + GAN stage
    assert set(gan["g_updates"]) == {8} and set(pretrain["g_updates"]) == {4}
    assert "v1 8, v2 8, v3 8, ragan 8, esrgan 8" in stdout
    # the final weights are scored; validation was a held-out split of T91 listed in run.json, no scored set
    assert set(trials.filter(pl.col("stage") != "baseline")["selection"]) == {"final"}
    (split,) = run["validation"]
    assert split["kind"] == "holdout" and split["folders"] == ["train/T91"] and len(split["images"]) == 10
    assert sorted(split["runs"]) == sorted(["rrdb-pretrain", "srresnet-pretrain", "rrdb-continued",
                                           "srresnet-continued", *(f"{p}-tiny" for p in study.PRESETS)])
    assert all("selected-on-test" not in flags for flags in trials["flags"])


@pytest.mark.slow
def test_the_study_table_has_every_comparison_and_its_intervals_recompute(tiny_study) -> None:
    out = tiny_study.out
    table = pl.read_parquet(out / "study.parquet")
    for column in ("dataset", "metric", "a", "b", "n", "mean_diff", "ci_low", "ci_high"):
        assert column in table.columns
    pairs = set(zip(table["a"], table["b"], strict=True))
    expected = {("v2", "v1"), ("v3", "v2"), ("ragan", "v3"), ("esrgan", "ragan"), ("v2", "srresnet-pretrain"),
                ("v3", "srresnet-pretrain"), ("ragan", "srresnet-pretrain"), ("esrgan", "rrdb-pretrain")}
    assert expected <= pairs
    reference = _reference()
    checked = 0
    for row in table.filter(pl.col("metric").is_in(["psnr", "ssim"])).iter_rows(named=True):
        ref = reference.reference_row(out, row["a"], row["b"], row["dataset"], row["metric"])
        assert row["n"] == ref["n"] == 2 * 5  # two seeds x Set5's five images
        for key in ("mean_diff", "ci_low", "ci_high"):
            assert row[key] == pytest.approx(ref[key], abs=1e-9), (row["a"], row["b"], row["metric"], key)
        assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]
        checked += 1
    assert checked == 2 * len(pairs)


@pytest.mark.slow
def test_the_report_opens_with_the_study(tiny_study) -> None:
    out = tiny_study.out
    html = (out / "report" / "index.html").read_text()
    assert "Study" in html and html.index("Study") < html.index("Summary")
    # no LPIPS weights here: said once near the top, and the plane's perception axis is NIQE, named as such
    import html as html_lib

    reason = json.loads((out / "run.json").read_text())["metrics_missing"]["lpips"]
    assert html.count(html_lib.escape(reason, quote=False)) == 1 and "Missing metrics" in html
    assert "NIQE (no-reference), lower is better" in html
    assert "untrained" in html.lower()  # what this run could not test


def test_dry_run_prints_the_cost_and_starts_nothing(capsys, data_root: Path, tmp_path: Path) -> None:
    """In this process (`study.main`): a dry run starts no Ray, so none is started here either."""
    import ray

    out = tmp_path / "dry"
    argv = ["--size", "tiny", "--seeds", "3", "--datasets", "set5", "--vgg-fallback", "untrained", "--out", str(out),
            "--data-root", str(data_root), "--dry-run"]
    assert study.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "cost estimate" in stdout and "device-hours" in stdout and "s/step" in stdout
    assert "2 shared pretraining(s), 21 GAN trial(s)" in stdout  # 5 presets + 2 controls (issue 25), x 3 seeds
    # a dry run writes nothing (issue 18.9): no step-time cache, no trial, no Tune state, no Ray
    assert not out.exists()
    assert "sweep folder" not in stdout
    assert not ray.is_initialized()


# ------------------------------------------------------------------ the interrupted study and its resume


# GAN-stage trials per seed: the five versions and each pretraining's equal-budget control (issue 25)
GAN_STAGES = (*study.PRESETS, "srresnet-continued", "rrdb-continued")


def _starts(out: Path) -> dict[str, int]:
    return {d.name: len((d / "starts.log").read_text().split()) for d in (out / schema.TRIALS_DIR).iterdir()}


@pytest.mark.slow
def test_an_interrupted_study_resumes_without_repeating_finished_trials(tiny_study) -> None:
    """Ctrl-C once Tune had finished a GAN trial: rc 130 naming the study's own resume command (18.6); the
    sweep's entry point resumes the study folder as a study; nothing Tune had finished trains again."""
    out = tiny_study.out
    assert f"continue it with: python -m harness.study --resume {out}" in tiny_study.first_log
    assert tiny_study.finished and set(tiny_study.finished) <= set(tiny_study.started)
    trials = pl.read_parquet(out / schema.TRIALS_FILE).filter(pl.col("status") != "baseline")
    # two pretrainings; five versions and the two equal-budget controls (issue 25) x two seeds
    assert trials["status"].to_list() == ["ok"] * (2 + len(GAN_STAGES) * 2)
    gan = trials.filter(pl.col("stage") == "gan")
    steps = dict(zip(gan["trial_id"], gan["steps"], strict=True))
    assert {p: s for p, s in zip(gan["preset"], gan["steps"], strict=True)} == {
        p: 8 if p == "v1" else 4 for p in GAN_STAGES}  # v1 in one stage; the others after 4 shared steps
    assert len(steps) == len(GAN_STAGES) * 2
    starts = _starts(out)
    for trial_id in [*tiny_study.finished, "srresnet-pretrain", "rrdb-pretrain"]:
        assert starts[trial_id] == 1, f"{trial_id} was run again after --resume"
    # a GAN trial running at Ctrl-C started twice (before and after --resume); one not yet started, once
    for trial_id in steps:
        expected = 1 if trial_id in tiny_study.finished or trial_id not in tiny_study.started else 2
        assert starts[trial_id] == expected, (trial_id, starts)
    assert (out / schema.STUDY_FILE).is_file() and "study tables:" in tiny_study.resume.stdout
    n = 1 + 2 + len(GAN_STAGES) * 2  # bicubic, 2 pretrainings, the GAN stages; each scored on Set5's 5 images
    assert tiny_study.rows == {"trials": n, "pretrain": 2, "scores": n * 5}


@pytest.mark.slow
def test_each_gan_trial_starts_from_its_shared_pretraining(tiny_study) -> None:
    """One SRResNet pretraining for v2, v3 and RaGAN, one RRDB for ESRGAN, shared by both seeds: its final
    generator is each of its GAN trials' initial generator (digest of the weights the trial started from,
    written by the worker)."""
    from safetensors.torch import load_file

    from harness.run.worker import state_digest

    out = tiny_study.out
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    pretrain = trials.filter(pl.col("stage") == "pretrain")
    assert pretrain["steps"].to_list() == [4, 4]
    assert pretrain["adv_weight"].is_null().all() and pretrain["perceptual_weight"].is_null().all()  # neither used
    gan = trials.filter(pl.col("stage") == "gan")
    run = json.loads((out / schema.RUN_FILE).read_text())
    users = {"srresnet-pretrain": ["ragan", "v2", "v3", "srresnet-continued"],
             "rrdb-pretrain": ["esrgan", "rrdb-continued"]}
    for pretrain_id, presets in users.items():
        final = sorted(p for p in (out / "trials" / pretrain_id).glob("checkpoint_*") if p.is_dir())[-1]
        assert final.name == "checkpoint_0000004"
        expected = state_digest(load_file(str(final / "generator.safetensors")))
        mine = gan.filter(pl.col("init_from") == pretrain_id)
        assert sorted(mine["preset"]) == sorted(presets * 2)
        for trial_id in mine["trial_id"]:
            init = json.loads((out / "trials" / trial_id / "init.json").read_text())
            assert init["step"] == 0 and init["generator_digest"] == expected
        assert sorted(run["stages"][pretrain_id]["presets"]) == sorted(presets * 2)


@pytest.mark.slow
def test_the_study_folder_follows_the_schema(tiny_study) -> None:
    out = tiny_study.out
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    assert list(trials.columns) == list(schema.TRIAL_COLUMNS)
    assert trials.filter(pl.col("status") == "baseline")["trial_id"].to_list() == ["bicubic"]
    for preset in ("v3", "ragan", "esrgan"):
        flags = trials.filter((pl.col("preset") == preset) & (pl.col("stage") == "gan"))["flags"]
        assert [json.loads(f) for f in flags] == [["untrained-perceptual-vgg19"]] * 2  # the opt-in travels
    summary = pl.read_parquet(out / schema.SUMMARY_FILE)
    n = 1 + 2 + len(GAN_STAGES) * 2  # bicubic, 2 pretrainings, the GAN stages x 2 seeds
    assert summary.height == n and summary["psnr"].is_not_null().all()
    bicubic = summary.filter(pl.col("trial_id") == "bicubic")
    assert bicubic["psnr"][0] == pytest.approx(28.42, abs=0.05)  # the papers' Set5 x4 bicubic
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert scores.height == n * 5
    history = pl.read_parquet(out / schema.HISTORY_FILE)
    assert set(history["phase"]) == {"warmup", "gan"}  # the pretrainings' pixel-loss steps, then GAN trials
    assert history.filter(pl.col("val_psnr").is_not_null()).height >= 2
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert run["kind"] == "study" and run["protocol"]["color"] == "ycbcr_bt601"
    assert (out / schema.IMAGES_DIR / schema.HR_DIR / "set5").is_dir()
    assert (out / "report" / "index.html").exists()
    assert f"report: {out / 'report' / 'index.html'}" in tiny_study.resume.stdout
