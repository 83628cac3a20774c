"""The report's Study section (no browser): built from the study tables, escaped, absent without them.

The tables come from `results.study.compute_study` on synthetic folders; where a test needs a verdict the
synthetic data does not give (a distinguishable difference on unequal budgets, an infinite mean), it edits
study.parquet, and checks that the page says exactly what the edited table says.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from ladder_synthetic import add_ladder
from markupsafe import escape
from reports_synthetic import (
    HOSTILE_FLAG,
    HOSTILE_REASON,
    LPIPS_REASON,
    NIQE_REASON,
    STUDY_STOP,
    write_synthetic_study,
)

from reports import build, study_claims
from results import schema
from results.study import compute_study

SMALL = {"seeds": (0, 1), "datasets": ("Set5",), "images_per_dataset": 2, "steps": 20}


def _section(page: str) -> str:
    start = page.index('<section id="study">')
    return page[start:page.index("</section>", start)]


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def _claims(section: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r'<li class="claim">(.*?)</li>', section, re.S)]


def _copy(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("report"))
    return target


def _edit_study(folder: Path, where: pl.Expr, **values: object) -> None:
    """Set columns of the study.parquet rows matching `where` (the rest unchanged)."""
    path = folder / schema.STUDY_FILE
    study = pl.read_parquet(path)
    study.with_columns([pl.when(where).then(pl.lit(v, dtype=study.schema[k])).otherwise(pl.col(k)).alias(k)
                        for k, v in values.items()]).write_parquet(path)


def _make_distinguishable(folder: Path, comparison: str) -> None:
    """The comparison's rows as a clear win for a, with every column consistent with it."""
    study = pl.read_parquet(folder / schema.STUDY_FILE)
    for r in study.filter(pl.col("comparison") == comparison).iter_rows(named=True):
        sign = 1.0 if r["higher_is_better"] else -1.0
        where = ((pl.col("comparison") == comparison) & (pl.col("dataset") == r["dataset"])
                 & (pl.col("metric") == r["metric"]))
        _edit_study(folder, where, mean_diff=sign * 1.0, ci_low=sign * 1.0 - 0.2, ci_high=sign * 1.0 + 0.2,
                    excludes_zero=True, p_value=1e-4, p_holm=1e-3, distinguishable=True, verdict="a better")


# ------------------------------------------------------------------------------------- the section itself


def test_study_section_comes_first_and_answers_the_table(study_results: Path, tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    assert page.index('id="study"') < page.index('id="auto-summary"') < page.index('id="summary"')
    section = _section(page)
    for criterion in ("Training data", "Patch size", "Warmup", "Perceptual loss", "GAN stability: D collapse",
                      "GAN stability: adversarial-loss spread", "GAN stability: PSNR drift",
                      "GAN stability: divergence stops", "Metric tracking", "Overall robustness"):
        assert f'<th scope="row">{criterion}</th>' in section
    headers = re.findall(r'<th class="text">([^<]+)</th>', section.split("</thead>")[0])
    assert headers[2:] == ["bicubic", "v1", "srresnet-pretrain", "v2", "v3", "ragan", "rrdb-pretrain", "esrgan"]
    assert "96×96" in section and "128×128" in section and "starts from srresnet-pretrain" in section
    assert "none: single stage from scratch" in section  # v1
    versions = pl.read_parquet(study_results / schema.STUDY_VERSIONS_FILE)
    for metric, digits in (("psnr", 2), ("niqe", 3)):
        v3 = versions.filter((pl.col("version") == "v3") & (pl.col("dataset") == "Set5")
                             & (pl.col("metric") == metric)).row(0, named=True)
        assert f"{v3['mean']:.{digits}f} ± {v3['std']:.{digits}f}" in section and v3["n_seeds"] == 3
    assert "<th scope=\"row\">Set5 NIQE ↓</th>" in section
    profile_table = pl.read_parquet(study_results / schema.STUDY_PROFILE_FILE)
    profile = {r["version"]: r for r in profile_table.iter_rows(named=True)}
    assert profile["ragan"]["divergence_stops"] == 1 and STUDY_STOP.startswith("discriminator collapse")
    assert f"{100 * profile['ragan']['collapse_share']:.0f} % of {profile['ragan']['gan_reports']} reports" in section
    assert "1 of 3 runs" in section


def test_protocol_paragraph_opens_the_section(study_results: Path, tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    first = re.search(r"</h2>\s*<p class=\"protocol\" id=\"study-protocol\">(.*?)</p>", section, re.S)
    assert first, "the protocol is the section's first paragraph"
    protocol = html.unescape(first.group(1))
    study = pl.read_parquet(study_results / schema.STUDY_FILE)
    tests = study.filter((pl.col("metric") == "psnr") & pl.col("p_holm").is_not_null()).height
    for words in ("unit of replication is the training seed", "95% interval", "Holm-adjusted", "p_holm < 0.05",
                  "not that they are equal", f"{tests} tests for PSNR", "unequal budgets"):
        assert words in protocol, words


def test_variance_sources_in_one_line(study_results: Path, tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    study = pl.read_parquet(study_results / schema.STUDY_FILE).filter(pl.col("n") > 0)
    sources = study["variance_sources"].unique().to_list()
    line = html.unescape(_between(section, 'id="study-variance">', "</p>"))
    assert line.count("\n") == 0
    if len(sources) == 1:
        assert f"Each interval includes: {sources[0]}." in line
    folder = _copy(study_results, tmp_path)
    _edit_study(folder, pl.col("kind") == "GAN stage vs its pretraining", variance_sources="<b>seed only</b>")
    page = build.build_report(folder).read_text()
    line = html.unescape(_between(_section(page), 'id="study-variance">', "</p>"))
    assert "<b>seed only</b> (v2 - srresnet-pretrain, v3 - srresnet-pretrain" in line and "<b>seed" not in page
    steps = study.filter(pl.col("kind") == "version step")["variance_sources"].unique().to_list()
    assert steps and f"{steps[0]} (v2 - v1, v3 - v2" in line


def test_paired_differences_show_raw_interval_adjusted_verdict_p_improve_and_mdd(study_results: Path,
                                                                                 tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    study = pl.read_parquet(study_results / schema.STUDY_FILE)
    assert section.count('class="diff-row"') == study.select("comparison", "dataset").unique().height == 16
    for row in study.filter(pl.col("metric") == "psnr").iter_rows(named=True):
        text = f"{row['mean_diff']:+.2f} dB [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
        assert text in section, text
        assert f"MDD {row['mdd']:.2f} dB" in section and f"P(improve) {row['p_improve']:.2f}" in section
    adjusted = study.filter(pl.col("verdict").is_in(["a better", "b better"])).height
    assert section.count('class="verdict-a-better"') + section.count('class="verdict-b-better"') == adjusted
    assert section.count('class="verdict-zero"') == study.filter(pl.col("verdict") == "not distinguishable").height
    # a raw interval that excludes 0 never makes a verdict by itself: those rows read "not distinguishable"
    raw_only = study.filter(pl.col("excludes_zero") & ~pl.col("distinguishable"))
    assert raw_only.height > 0
    for r in raw_only.head(3).iter_rows(named=True):
        cell = re.search(rf'<td class="verdict-(\w+(?:-\w+)?)" title="{re.escape(r["a"])} − {re.escape(r["b"])} on '
                         rf'{build.METRIC_NAMES[r["metric"]]}, {r["dataset"]}:', section)
        assert cell and cell.group(1) == "zero"


def test_unequal_budget_is_flagged_and_never_a_version_effect(study_results: Path, tmp_path: Path) -> None:
    study = pl.read_parquet(study_results / schema.STUDY_FILE)
    v2_v1 = study.filter(pl.col("comparison") == "v2 - v1").row(0, named=True)
    assert v2_v1["budget"] == "unequal-budget" and v2_v1["g_updates_a"] == 2 * v2_v1["g_updates_b"]
    folder = _copy(study_results, tmp_path)
    _make_distinguishable(folder, "v2 - v1")  # even a clear win on unequal budgets is no version effect
    section = _section(build.build_report(folder).read_text())
    row = _between(section, "<td>v2 - v1</td>", "</tr>")
    assert f"⚠ unequal budget: v2 {v2_v1['g_updates_a']} vs v1 {v2_v1['g_updates_b']} generator updates" in row
    claim = next(c for c in _claims(section) if c.startswith("The study claims v2 improves on v1"))
    assert "not tested as a version effect (unequal budget)" in claim and "supported" not in claim
    assert "v2 better (p_holm 0.001)" in claim and "[unequal budget: not a version effect]" in claim
    # the GAN stages against their pretrainings add updates: without an equal-budget control the claim is untested
    trade = next(c for c in _claims(section) if "trades PSNR" in c)
    assert "not tested (these results have no equal-budget control" in trade


def test_equal_budgets_let_a_verdict_support_the_claim(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", presets=("v1", "v2"), equal_budget=True, **SMALL)
    study = pl.read_parquet(folder / schema.STUDY_FILE)
    assert study.filter(pl.col("comparison") == "v2 - v1")["budget"].to_list() == [None] * 4
    _make_distinguishable(folder, "v2 - v1")
    section = _section(build.build_report(folder).read_text())
    assert "unequal budget" not in _between(section, "<td>v2 - v1</td>", "</tr>")
    claim = next(c for c in _claims(section) if c.startswith("The study claims v2 improves on v1"))
    assert ": supported; v2 - v1: Set5 PSNR v2 better (p_holm 0.001), Set5 LPIPS v2 better (p_holm 0.001)." in claim


def test_selected_on_test_is_said_wherever_it_applies(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", presets=("v2", "v3"), selected_on_test=True, compute=False,
                                   **SMALL)
    add_ladder(folder)  # its controls and arms keep their partners' flags
    compute_study(folder)
    page = build.build_report(folder).read_text()
    section = _section(page)
    assert set(pl.read_parquet(folder / schema.STUDY_FILE)["selection"].to_list()) == {"selected-on-test"}
    assert section.count("⚠ selected on test data") == section.count('class="diff-row"') > 0
    claims = _claims(section)
    for start in ("The study claims v3", "The study claims the GAN stage"):
        assert "[selected on test data]" in next(c for c in claims if c.startswith(start))
    assert "selected-on-test" in _between(page, 'id="flags"', "</div>")  # the run's flags box


def test_one_claim_sentence_each_from_adjusted_verdicts_only(study_results: Path, tmp_path: Path) -> None:
    folder = _copy(study_results, tmp_path)
    # v3 - v2 on LPIPS: a raw interval that excludes 0, not distinguishable after Holm
    where = (pl.col("comparison") == "v3 - v2") & (pl.col("metric") == "lpips")
    _edit_study(folder, where, mean_diff=-0.06, ci_low=-0.1, ci_high=-0.02, excludes_zero=True, p_value=0.03,
                p_holm=0.3, distinguishable=False, verdict="not distinguishable")
    section = _section(build.build_report(folder).read_text())
    claims = _claims(section)
    assert len(claims) == len(study_claims.STUDY_CLAIMS) and all(c.startswith("The study claims ") for c in claims)
    assert all(c.count(". ") == 0 for c in claims)  # one sentence each
    v3 = next(c for c in claims if c.startswith("The study claims v3"))
    assert ": not shown; v3 - v2: Set5 LPIPS not distinguishable (p_holm 0.30)" in v3 and "v3 better (" not in v3
    assert "(expected v3 better on LPIPS)" in v3  # the claim names the perception metric it used
    stability = _between(section, "</ul>", "</div>")
    assert "grows more stable" in stability and "D gap above 0.98" in stability and "ragan 1 of 3" in stability


def test_untested_claims(study_results: Path, tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    untested = section[section.index('id="study-untested"'):]
    assert "untrained-perceptual-vgg19" in untested and "v3, ragan, esrgan" in untested
    assert "reduced presets (tiny" in untested
    assert "patch size is the same" not in untested  # v1 trains on 96-px patches, the others on 128


def test_version_plane_has_error_bars_and_a_front(study_results: Path, tmp_path: Path) -> None:
    section = _section(build.build_report(study_results, tmp_path / "report").read_text())
    blobs = re.findall(r'<script type="application/json" id="(study-plane-\d+)">(.*?)</script>', section, re.S)
    assert [b[0] for b in blobs] == ["study-plane-0", "study-plane-1"]
    figure = json.loads(blobs[0][1])
    traces = {t["name"]: t for t in figure["data"]}
    assert "Pareto front" in traces and "esrgan" in traces and "srresnet-pretrain" in traces
    versions = pl.read_parquet(study_results / schema.STUDY_VERSIONS_FILE)
    v2 = versions.filter((pl.col("version") == "v2") & (pl.col("dataset") == "Set5"))
    lpips = v2.filter(pl.col("metric") == "lpips").row(0, named=True)
    psnr = v2.filter(pl.col("metric") == "psnr").row(0, named=True)
    # the bars are the seed range (lowest to highest seed's mean), not ± std
    assert traces["v2"]["x"] == [lpips["mean"]] and traces["v2"]["y"] == [psnr["mean"]]
    for axis, row in (("error_x", lpips), ("error_y", psnr)):
        assert traces["v2"][axis]["array"] == pytest.approx([row["high"] - row["mean"]])
        assert traces["v2"][axis]["arrayminus"] == pytest.approx([row["mean"] - row["low"]])
    assert figure["layout"]["xaxis"]["title"]["text"].startswith("LPIPS (full-reference), lower is better")
    assert traces["srresnet-pretrain"]["marker"]["symbol"] == "diamond"


# ------------------------------------------------------------------------------- NIQE, missing metrics


def test_without_lpips_niqe_is_the_perception_axis_and_the_reason_is_said_once(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", missing_lpips=True, seeds=(0, 1), presets=("v1", "v2", "v3"),
                                   compute=False)
    add_ladder(folder)  # the equal-budget controls the trade-off claim rests on
    compute_study(folder)
    page = build.build_report(folder).read_text()
    section = _section(page)
    assert page.count(LPIPS_REASON) == 1 and page.index(LPIPS_REASON) < page.index('id="study"')
    assert "LPIPS (full-reference), lower is better: missing on every dataset, every trial" in page
    blobs = re.findall(r'<script type="application/json" id="(?:study-)?plane-\d+">(.*?)</script>', page, re.S)
    assert len(blobs) == 4  # both planes (the study's, the trials') on both datasets, against NIQE
    for blob in blobs:
        title = json.loads(blob)["layout"]["xaxis"]["title"]["text"]
        assert title.startswith("NIQE (no-reference), lower is better") and "LPIPS" not in title
    claims = _claims(section)
    trade = next(c for c in claims if "trades PSNR" in c)
    assert "NIQE (no-reference)" in trade and "LPIPS" not in trade
    v3 = next(c for c in claims if c.startswith("The study claims v3"))
    assert "(expected v3 better on NIQE (no-reference))" in v3
    assert "Perceptual quality is measured by NIQE alone (no-reference, lower is better; LPIPS" in section
    assert "Not run here: ragan, esrgan" in section and "training data is the same" not in section
    assert "LPIPS: no difference computed (not measured: see Missing metrics)." in section
    diffs = section[section.index('id="study-diffs"'):]
    assert "LPIPS ↓: mean difference" not in diffs and "NIQE ↓: mean difference" in diffs


def test_without_any_perception_metric_no_plane_is_drawn(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", missing_lpips=True, missing_niqe=True,
                                   presets=("v2", "v3"), compute=False, **SMALL)
    add_ladder(folder)
    compute_study(folder)
    page = build.build_report(folder).read_text()
    section = _section(page)
    assert "study-plane-" not in section and 'data-figure="plane-' not in page  # never SSIM as perception
    assert "Set5: no perception–distortion plane: no perception metric (LPIPS or NIQE) was measured" in section
    assert page.count(LPIPS_REASON) == 1 and page.count(NIQE_REASON) == 1
    assert "Perceptual quality: no perception metric was measured" in section
    trade = next(c for c in _claims(section) if "trades PSNR" in c)
    assert "Set5: no perception metric measured" in trade


# ------------------------------------------------------------------------------------ bad or odd tables


def test_one_seed_study_draws_no_interval(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", presets=("v1", "v2", "v3"), **{**SMALL, "seeds": (0,)})
    study = pl.read_parquet(folder / schema.STUDY_FILE)
    assert set(study["verdict"].to_list()) == {"one seed"}
    page = build.build_report(folder).read_text()
    section = _section(page)
    assert "One training seed per version: no seed-level interval exists, so none is drawn" in section
    assert "With one training seed no seed-level interval exists" in section
    table = _between(section, 'id="study-diffs"', "</table>")
    shown = re.sub(r"<[^>]+>", "", table.split("</thead>")[1])
    assert shown.count("(one seed: no interval)") == study.filter(pl.col("n") > 0).height
    assert "[" not in shown  # no bracketed interval anywhere
    diffs = section[section.index('id="study-diffs"'):]
    assert 'class="verdict-a-better"' not in diffs and 'class="verdict-b-better"' not in diffs
    for blob in re.findall(r'<script type="application/json" id="study-plane-\d+">(.*?)</script>', section, re.S):
        for trace in json.loads(blob)["data"]:
            if "error_x" in trace:
                assert trace["error_x"]["visible"] is False and trace["error_y"]["visible"] is False
    assert all("not tested (one seed: no seed-level interval)" in c or "no such comparison" in c
               or "no equal-budget control" in c for c in _claims(section))


def test_old_layout_study_still_renders_and_says_what_is_missing(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", layout="old", presets=("v1", "v2", "v3"),
                                   seeds=(0, 1), images_per_dataset=2, steps=20)
    assert "p_holm" not in pl.read_parquet_schema(folder / schema.STUDY_FILE)
    assert "not distinguishable from zero" in pl.read_parquet(folder / schema.STUDY_FILE)["verdict"].to_list()
    page = build.build_report(folder).read_text()
    section = _section(page)
    note = html.unescape(_between(section, '<p class="warning study-note">', "</p>"))
    for column in ("p_holm", "mdd", "p_improve", "budget", "variance_sources", "selection"):
        assert column in note
    assert "no claim gets a verdict from it" in note
    assert "500 resamples" in section and "not adjusted for multiplicity" in section
    assert 'class="verdict-a-better"' not in section and 'class="verdict-b-better"' not in section
    assert 'class="verdict-unadjusted"' in section
    assert all(": no adjusted verdict (this older study table has none)." in c or "no such comparison" in c
               or "no equal-budget control" in c for c in _claims(section))
    assert "NIQE (no-reference), lower is better: not recorded: these results have no niqe column" in page
    # the old pretraining rows: preset "v2", an adversarial weight it never used
    trials = pl.read_parquet(folder / schema.TRIALS_FILE)
    old = trials.filter(pl.col("stage") == "pretrain").row(0, named=True)
    assert old["preset"] == "v2" and old["adv_weight"] == 5e-3
    row = next(r for r in re.findall(r'<tr class="trial-row.*?</tr>', page, re.S) if old["label"] in r)
    assert "recorded as preset &#39;v2&#39;" in row
    cells = re.findall(r'<td class="text"[^>]*>([^<]*)</td>', row)
    assert cells[1:8] == ["srresnet-pretrain", "pretrain", "1", "", "", "0", "ok"]  # no weight it never used


def test_non_finite_statistics_are_not_computed(study_results: Path, tmp_path: Path) -> None:
    folder = _copy(study_results, tmp_path)
    where = (pl.col("comparison") == "v3 - v2") & (pl.col("metric") == "psnr") & (pl.col("dataset") == "Set5")
    _edit_study(folder, where, mean_diff=float("inf"), ci_low=float("nan"), ci_high=float("inf"),
                p_holm=0.001, distinguishable=True, verdict="a better", excludes_zero=True)
    versions = pl.read_parquet(folder / schema.STUDY_VERSIONS_FILE)
    versions.with_columns(pl.when((pl.col("version") == "v3") & (pl.col("metric") == "ssim"))
                          .then(float("inf")).otherwise(pl.col("mean")).alias("mean")).write_parquet(
        folder / schema.STUDY_VERSIONS_FILE)
    section = _section(build.build_report(folder).read_text())
    assert "∞" not in section
    row = _between(section, "<td>v3 - v2</td><td>Set5</td>", "</tr>")
    assert 'class="verdict-no-data" title="v3 − v2 on PSNR, Set5: not computed: the mean difference is infinite' in row
    claim = next(c for c in _claims(section) if c.startswith("The study claims v3"))
    assert "v3 better (" not in claim
    ssim = _between(section, '<th scope="row">Set5 SSIM ↑</th>', "</tr>")
    assert 'title="the mean over seeds is infinite"' in ssim


def test_a_verdict_that_contradicts_its_p_value_is_not_computed(study_results: Path, tmp_path: Path) -> None:
    folder = _copy(study_results, tmp_path)
    where = (pl.col("comparison") == "v3 - v2") & (pl.col("metric") == "lpips")
    _edit_study(folder, where, p_holm=0.5, distinguishable=False, verdict="a better")
    section = _section(build.build_report(folder).read_text())
    row = _between(section, "<td>v3 - v2</td><td>Set5</td>", "</tr>")
    cell = _between(row, 'title="v3 − v2 on LPIPS', "</td>")
    assert "not computed: the table contradicts itself: verdict &#39;a better&#39;" in cell and "v3 better" not in cell


# --------------------------------------------------------------------------------------- other shapes


def test_hostile_strings_in_the_study_are_escaped(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", missing_lpips=True, hostile=True, presets=("v2", "v3"),
                                   **SMALL)
    page = build.build_report(folder).read_text()
    assert HOSTILE_FLAG not in page and HOSTILE_REASON not in page and "<script>window" not in page
    assert str(escape(HOSTILE_REASON)) in page


def test_plain_sweep_and_evaluate_folders_have_no_study_section(results_dir: Path, tmp_path: Path) -> None:
    page = build.build_report(results_dir, tmp_path / "report").read_text()
    assert 'id="study"' not in page and 'href="#study"' not in page
    folder = write_synthetic_study(tmp_path / "uncomputed", compute=False, presets=("v1", "v2"),
                                   **{**SMALL, "seeds": (0,)})
    assert 'id="study"' not in build.build_report(folder).read_text()


def test_study_without_its_side_tables_still_builds(study_results: Path, tmp_path: Path) -> None:
    folder = _copy(study_results, tmp_path)
    (folder / schema.STUDY_PROFILE_FILE).unlink()
    section = _section(build.build_report(folder).read_text())
    assert "study_profile.parquet is missing" in section and section.count('class="diff-row"') == 16


def test_pretrainings_are_their_own_versions_with_only_their_settings(study_results: Path, tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    ranking = re.search(r"Versions ranked by mean PSNR: (.*?)\.( |<)", page)
    assert ranking and "srresnet-pretrain (" in ranking.group(1) and "rrdb-pretrain (" in ranking.group(1)
    assert ranking.group(1).startswith("rrdb-pretrain (")  # the pretrainings have the best PSNR
    header = re.search(r'<thead>\s*<tr>(.*?)</tr>', page[page.index('id="summary-table"'):], re.S).group(1)
    params = re.findall(r'<th class="text" rowspan="2">([^<]+)</th>', header)
    assert params == ["trial", "preset", "stage", "pixel_weight", "perceptual_weight", "adv_weight", "seed",
                      "g_updates", "selection", "status"]
    rows = re.findall(r'<tr class="trial-row status-(\w+)">(.*?)</tr>', page, re.S)
    pretraining = next(r for s, r in rows if "srresnet-pretrain seed 1" in r)
    cells = re.findall(r'<td class="text"[^>]*>([^<]*)</td>', pretraining)
    assert cells[1:10] == ["srresnet-pretrain", "pretrain", "1", "", "", "1", "40", "final", "ok"]
    gan = next(r for s, r in rows if "v3 seed 1" in r)
    assert re.findall(r'<td class="text"[^>]*>([^<]*)</td>', gan)[1:10] == [
        "v3", "gan", "1", "1", "0.005", "1", "80", "final", "ok"]


def test_shared_pretraining_is_said(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", shared_pretrain=True, presets=("v2", "v3", "esrgan"),
                                   datasets=("Set5",), images_per_dataset=2, steps=20)
    section = _section(build.build_report(folder).read_text())
    study = pl.read_parquet(folder / schema.STUDY_FILE)
    pretrain_rows = study.filter(pl.col("kind") == "GAN stage vs its pretraining")
    assert pretrain_rows.filter(pl.col("comparison") == "esrgan - rrdb-pretrain")["n_seeds"].to_list() == [3] * 4
    for source in pretrain_rows["variance_sources"].unique().to_list():
        assert str(escape(source)) in _between(section, 'id="study-variance">', "</p>")
    assert "One seed only" not in section
    assert "The patch size is the same for every version here (128×128)" in section  # no v1 in this one


def test_a_difference_missing_on_one_dataset_only_keeps_its_column(tmp_path: Path) -> None:
    folder = write_synthetic_study(tmp_path / "study", seeds=(0, 1), presets=("v2", "v3"), compute=False,
                                   images_per_dataset=2, steps=20)
    add_ladder(folder)
    summary = pl.read_parquet(folder / schema.SUMMARY_FILE)
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    on_set14 = pl.col("dataset") == "Set14"
    scores.with_columns(pl.when(on_set14).then(None).otherwise(pl.col("lpips")).alias("lpips")).write_parquet(
        folder / schema.SCORES_FILE)
    summary.with_columns(pl.when(on_set14).then(pl.lit(LPIPS_REASON)).otherwise(None).alias("lpips_missing"),
                         pl.when(on_set14).then(None).otherwise(pl.col("lpips")).alias("lpips")).write_parquet(
        folder / schema.SUMMARY_FILE)
    from results.study import compute_study

    compute_study(folder)
    page = build.build_report(folder).read_text()
    section = _section(page)
    diffs = _between(section, 'id="study-diffs"', "</table>")
    set14 = pl.read_parquet(folder / schema.STUDY_FILE).filter((pl.col("dataset") == "Set14")
                                                               & (pl.col("metric") == "lpips"))
    assert "LPIPS ↓: mean difference" in diffs and diffs.count('class="verdict-no-data"') == set14.height
    assert "LPIPS (full-reference), lower is better: missing on Set14, every trial" in page
    # each dataset's perception axis: LPIPS on Set5, NIQE on Set14, and the claims say which
    trade = next(c for c in _claims(section) if "trades PSNR" in c)
    assert "Set5 LPIPS" in trade and "Set14 NIQE (no-reference)" in trade


@pytest.mark.parametrize(("name", "words"), [("v3-cpu", {"cpu"}), ("v3-tiny", {"tiny"}), ("v3", set()),
                                             ("v3-paper", set())])
def test_reduced_sizes_are_named_on_the_ladder(name: str, words: set[str]) -> None:
    trials = pl.DataFrame({"config_json": [json.dumps({"name": name})]})
    assert study_claims._size_words(trials) == words


def test_an_older_folder_s_name_of_the_cpu_size_reads_as_cpu() -> None:
    """A folder from before the size ladder names the cpu size "-small" (results.legacy, until its CUTOFF)."""
    from results import legacy

    assert legacy.RENAMED_SIZE_SUFFIXES == {"-small": "-cpu"}
    trials = pl.DataFrame({"config_json": [json.dumps({"name": "v3-small"})]})
    assert study_claims._size_words(trials) == {"cpu"}
