"""The report's Study section (no browser): built from the study tables, escaped, absent without them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
from markupsafe import escape
from reports_synthetic import HOSTILE_FLAG, HOSTILE_REASON, LPIPS_REASON, STUDY_STOP, write_synthetic_study

from reports import build
from results import schema


def _section(page: str) -> str:
    start = page.index('<section id="study">')
    return page[start:page.index("</section>", start)]


def test_study_section_comes_first_and_answers_the_table(study_results: Path, tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    assert page.index('id="study"') < page.index('id="auto-summary"') < page.index('id="summary"')
    section = _section(page)
    for criterion in ("Training data", "Patch size", "Warmup", "Perceptual loss", "GAN stability: D collapse",
                      "GAN stability: adversarial-loss spread", "GAN stability: PSNR drift",
                      "GAN stability: divergence stops", "Metric tracking", "Overall robustness"):
        assert f'<th scope="row">{criterion}</th>' in section
    headers = re.findall(r'<th class="text">([^<]+)</th>', section.split("</thead>")[0])
    assert headers[2:] == ["bicubic", "v1", "v2-pretrain", "v2", "v3", "ragan", "esrgan-pretrain", "esrgan"]
    assert "96×96" in section and "128×128" in section and "starts from v2-pretrain" in section
    assert "none: single stage from scratch" in section  # v1
    # PSNR mean ± std over seeds, exactly as study_versions.parquet has it
    versions = pl.read_parquet(study_results / schema.STUDY_VERSIONS_FILE)
    v3 = versions.filter((pl.col("version") == "v3") & (pl.col("dataset") == "Set5")
                         & (pl.col("metric") == "psnr")).row(0, named=True)
    assert f"{v3['mean']:.2f} ± {v3['std']:.2f}" in section and v3["n_seeds"] == 3
    # RaGAN's last seed was stopped for a collapsed D: counted as a divergence stop, its share is non-zero
    profile_table = pl.read_parquet(study_results / schema.STUDY_PROFILE_FILE)
    profile = {r["version"]: r for r in profile_table.iter_rows(named=True)}
    assert profile["ragan"]["divergence_stops"] == 1 and STUDY_STOP.startswith("discriminator collapse")
    assert f"{100 * profile['ragan']['collapse_share']:.0f} % of {profile['ragan']['gan_reports']} reports" in section
    assert "1 of 3 runs" in section


def test_paired_differences_are_shown_with_intervals_and_verdicts(study_results: Path, tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    study = pl.read_parquet(study_results / schema.STUDY_FILE)
    assert section.count('class="diff-row"') == study.select("comparison", "dataset").unique().height == 16
    for row in study.filter(pl.col("metric") == "psnr").iter_rows(named=True):
        text = f"{row['mean_diff']:+.2f} dB [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
        assert text in section, text
    distinct = study.filter(pl.col("excludes_zero")).height
    assert section.count('class="verdict-a-better"') + section.count('class="verdict-b-better"') == distinct
    assert section.count('class="verdict-zero"') == study.height - distinct
    assert "not distinguishable from zero" in section and "distinguishable from zero: v2-pretrain better" in section
    assert "2,000" not in section and "500 resamples" in section  # the settings the tables were computed with


def test_findings_and_untested_claims(study_results: Path, tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    findings = section[section.index('id="study-findings"'):section.index('id="study-untested"')]
    study = pl.read_parquet(study_results / schema.STUDY_FILE)
    v3 = study.filter((pl.col("comparison") == "v3 - v3-pretrain") & (pl.col("dataset") == "Set5")
                      & (pl.col("metric") == "psnr")).row(0, named=True)
    assert f"v3 − v3-pretrain {v3['mean_diff']:+.2f} dB [{v3['ci_low']:+.2f}, {v3['ci_high']:+.2f}]" in findings
    assert "D(real) − D(fake) &gt; 0.98" in findings and "divergence stops: ragan 1 of 3" in findings
    # the study's two claims against the intervals (synthetic: the GAN stages lose PSNR and gain LPIPS)
    assert "v3 against v3-pretrain: PSNR worse, LPIPS better (the trade is measured)" in findings
    assert "v2 against v1: PSNR better, LPIPS better" in findings
    untested = section[section.index('id="study-untested"'):]
    assert "untrained-perceptual-vgg19" in untested and "v3, ragan, esrgan" in untested
    assert "CPU-sized presets (tiny" in untested
    assert "patch size is the same" not in untested  # v1 trains on 96-px patches, the others on 128


def test_version_plane_has_error_bars_and_a_front(study_results: Path, tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    blobs = re.findall(r'<script type="application/json" id="(study-plane-\d+)">(.*?)</script>', section, re.S)
    assert [b[0] for b in blobs] == ["study-plane-0", "study-plane-1"]
    figure = json.loads(blobs[0][1])
    traces = {t["name"]: t for t in figure["data"]}
    assert "Pareto front" in traces and "esrgan" in traces and "v2-pretrain" in traces
    versions = pl.read_parquet(study_results / schema.STUDY_VERSIONS_FILE)
    v2 = versions.filter((pl.col("version") == "v2") & (pl.col("dataset") == "Set5"))
    lpips = v2.filter(pl.col("metric") == "lpips").row(0, named=True)
    psnr = v2.filter(pl.col("metric") == "psnr").row(0, named=True)
    assert traces["v2"]["x"] == [lpips["mean"]] and traces["v2"]["error_x"]["array"] == [lpips["std"]]
    assert traces["v2"]["y"] == [psnr["mean"]] and traces["v2"]["error_y"]["array"] == [psnr["std"]]
    assert "LPIPS" in figure["layout"]["xaxis"]["title"]["text"]


def test_without_lpips_the_perception_axis_is_reported_unavailable(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", missing_lpips=True, seeds=(0, 1), presets=("v1", "v2", "v3"))
    page = build.build_report(folder).read_text()
    section = _section(page)
    assert "study-plane-" not in section and 'data-figure="plane-' not in page  # no SSIM-as-perception chart
    assert f"Set5: the perception axis is unavailable: LPIPS was not computed ({LPIPS_REASON})" in section
    assert "Perceptual quality: LPIPS was not computed" in section and "Not run here: ragan, esrgan" in section
    assert "training data is the same" not in section  # v1 trains on T91 only
    # no LPIPS column in the differences, one line saying why instead
    assert f"LPIPS: no difference computed ({LPIPS_REASON})." in section
    diffs = section[section.index('id="study-diffs"'):]
    assert "LPIPS ↓: mean difference" not in diffs and "PSNR ↑: mean difference" in diffs
    assert f"No LPIPS difference on Set5: LPIPS was not computed ({LPIPS_REASON})." in section
    assert ("v3 against v3-pretrain: PSNR worse. LPIPS was not measured, so only the PSNR side of this is tested."
            in section)


def test_hostile_strings_in_the_study_are_escaped(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", missing_lpips=True, hostile=True, seeds=(0, 1),
                                   presets=("v2", "v3"))
    page = build.build_report(folder).read_text()
    assert HOSTILE_FLAG not in page and HOSTILE_REASON not in page and "<script>window" not in page
    assert str(escape(HOSTILE_REASON)) in _section(page)


def test_plain_sweep_and_evaluate_folders_have_no_study_section(results_dir: Path, tmp_path: Path) -> None:
    page = build.build_report(results_dir, tmp_path / "report").read_text()
    assert 'id="study"' not in page and 'href="#study"' not in page
    folder = write_synthetic_study(tmp_path / "uncomputed", compute=False, seeds=(0,), presets=("v1", "v2"))
    assert 'id="study"' not in build.build_report(folder).read_text()


def test_study_without_its_side_tables_still_builds(study_results: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "partial"
    shutil.copytree(study_results, folder, ignore=shutil.ignore_patterns("report"))
    (folder / schema.STUDY_PROFILE_FILE).unlink()
    section = _section(build.build_report(folder).read_text())
    assert "study_profile.parquet is missing" in section and section.count('class="diff-row"') == 16


def test_pretrainings_are_their_own_versions_in_the_summary(study_results: Path, tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    ranking = re.search(r"Versions ranked by mean PSNR: (.*?)\.( |<)", page)
    assert ranking and "v2-pretrain (" in ranking.group(1) and "esrgan-pretrain (" in ranking.group(1)
    assert ranking.group(1).startswith("esrgan-pretrain (")  # the pretrainings have the best PSNR
    assert '<th class="text" rowspan="2">stage</th>' in page


def test_shared_pretraining_is_said(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", shared_pretrain=True, presets=("v2", "v3", "esrgan"))
    section = _section(build.build_report(folder).read_text())
    assert "One pretraining run per generator, shared by every seed (v2-pretrain, esrgan-pretrain)" in section
    assert "One seed only" not in section
    assert "The patch size is the same for every version here (128×128)" in section  # no v1 in this one
    study = pl.read_parquet(folder / schema.STUDY_FILE)
    assert study.filter(pl.col("comparison") == "esrgan - esrgan-pretrain")["n_seeds"].to_list() == [3] * 6


def test_a_difference_missing_on_one_dataset_only_keeps_its_column(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", seeds=(0, 1), presets=("v2", "v3"), compute=False)
    summary = pl.read_parquet(folder / schema.SUMMARY_FILE)
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    on_set14 = pl.col("dataset") == "Set14"
    scores.with_columns(pl.when(on_set14).then(None).otherwise(pl.col("lpips")).alias("lpips")).write_parquet(
        folder / schema.SCORES_FILE)
    summary.with_columns(pl.when(on_set14).then(pl.lit(LPIPS_REASON)).otherwise(None).alias("lpips_missing"),
                         pl.when(on_set14).then(None).otherwise(pl.col("lpips")).alias("lpips")).write_parquet(
        folder / schema.SUMMARY_FILE)
    from results.study import compute_study

    compute_study(folder, n_resamples=100)
    section = _section(build.build_report(folder).read_text())
    diffs = section[section.index('id="study-diffs"'):]
    assert "LPIPS ↓: mean difference" in diffs and diffs.count('class="verdict-no-data"') == 3  # the Set14 rows
    assert f"{LPIPS_REASON}" in diffs  # in the hover title of those cells
