"""`python -m harness.study --size tiny` end to end: five versions x two seeds with shared pretraining, the
study tables, and the report's Study section. The tables' intervals are recomputed here, independently, from
scores.parquet (tests/results/study_reference.py shares no code with results.study)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from harness import study

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _reference():
    spec = importlib.util.spec_from_file_location("study_reference", REPO / "tests" / "results" / "study_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("study") / "tiny"
    cmd = [sys.executable, "-m", "harness.study", "--size", "tiny", "--seeds", "2", "--datasets", "set5",
           "--vgg-fallback", "untrained", "--out", str(out), "--data-root", str(data_root)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out, done.stdout


def test_the_study_runs_every_version_and_seed_from_shared_pretrainings(tiny_study) -> None:
    out, stdout = tiny_study
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
            assert row["init_from"] == ("rrdb-pretrain" if row["preset"] == "esrgan" else "srresnet-pretrain")
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


def test_the_study_table_has_every_comparison_and_its_intervals_recompute(tiny_study) -> None:
    out, _ = tiny_study
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


def test_the_report_opens_with_the_study(tiny_study) -> None:
    out, _ = tiny_study
    html = (out / "report" / "index.html").read_text()
    assert "Study" in html and html.index("Study") < html.index("Summary")
    # no LPIPS weights here: said once near the top, and the plane's perception axis is NIQE, named as such
    import html as html_lib

    reason = json.loads((out / "run.json").read_text())["metrics_missing"]["lpips"]
    assert html.count(html_lib.escape(reason, quote=False)) == 1 and "Missing metrics" in html
    assert "NIQE (no-reference), lower is better" in html
    assert "untrained" in html.lower()  # what this run could not test


def test_dry_run_prints_the_cost_and_starts_nothing(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "dry"
    cmd = [sys.executable, "-m", "harness.study", "--size", "tiny", "--seeds", "3", "--datasets", "set5",
           "--vgg-fallback", "untrained", "--out", str(out), "--data-root", str(data_root), "--dry-run"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cost estimate" in done.stdout and "device-hours" in done.stdout and "s/step" in done.stdout
    assert "2 shared pretraining(s), 21 GAN trial(s)" in done.stdout  # 5 presets + 2 controls (issue 25), x 3 seeds
    # a dry run writes nothing (issue 18.9): no step-time cache, no trial, no Tune state, no Ray
    assert not out.exists()
    assert "sweep folder" not in done.stdout
