"""Fast tests of the report builder (no browser): contents, escaping, failures, missing metrics."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from markupsafe import escape
from reports_synthetic import (
    FAILED_ERROR,
    HOSTILE_IMAGE,
    HOSTILE_LABEL,
    LPIPS_REASON,
    STOP_REASON,
    write_synthetic_results,
)

from reports import build, crops, figures, plane
from results import schema


def test_report_has_every_section(results_dir: Path, tmp_path: Path) -> None:
    index = build.build_report(results_dir, tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    page = index.read_text()
    trials = pl.read_parquet(results_dir / schema.TRIALS_FILE)
    assert page.count('class="trial-row') == trials.height
    for anchor in ("summary", "plane", "curves", "visual", "images", "problems", "meta", "auto-summary"):
        assert f'id="{anchor}"' in page
    assert "PSNR ↑" in page and "LPIPS ↓" in page
    assert "Best by PSNR" in page and "Versions ranked by mean PSNR" in page
    assert "warmup\\u2192gan" in page  # the phase boundary annotation, in the curve figures' JSON
    assert "0123456789abcdef" in page  # git commit
    assert "untrained-perceptual-vgg19" in page and 'id="flags"' in page


def test_plotly_js_is_local_and_included_once(results_dir: Path, tmp_path: Path) -> None:
    index = build.build_report(results_dir, tmp_path / "report")
    page = index.read_text()
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert len(scripts) == 1 and not scripts[0].startswith(("http:", "https:", "//"))
    assert (index.parent / scripts[0]).stat().st_size > 1_000_000
    assert "cdn." not in page and "https://" not in page.replace("https://plot.ly", "")


def test_crops_are_relative_safe_files(results_dir: Path, tmp_path: Path) -> None:
    index = build.build_report(results_dir, tmp_path / "report")
    sources = re.findall(r'<img src="([^"]+)"', index.read_text())
    assert sources
    for src in sources:
        assert re.fullmatch(r"crops/[A-Za-z0-9_-]+\.png", src), src
        assert (index.parent / src).is_file()


def test_default_out_dir_and_cli(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "reports.build", str(results_dir), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(out / "index.html")
    copy = tmp_path / "copy"
    write_synthetic_results(copy, 2, ["Set5"], with_failed=False, missing_lpips=False)
    assert build.build_report(copy) == copy / "report" / "index.html"


def test_hostile_strings_are_escaped(hostile_results: Path, tmp_path: Path) -> None:
    page = build.build_report(hostile_results, tmp_path / "report").read_text()
    assert HOSTILE_LABEL not in page and "<script>window" not in page
    assert '<img src=x' not in page
    assert str(escape(HOSTILE_LABEL)) in page
    assert str(escape(HOSTILE_IMAGE)) in page
    assert "<b onmouseover" not in page


def test_failed_trial_and_missing_metric_are_shown(failed_results: Path, tmp_path: Path) -> None:
    page = build.build_report(failed_results, tmp_path / "report").read_text()
    assert "Failed: " in page and FAILED_ERROR in page
    assert "Stopped: " in page and STOP_REASON in page
    # why LPIPS is missing is said once, near the top; its cells point there
    assert page.count(LPIPS_REASON) == 1 and page.index(LPIPS_REASON) < page.index('id="summary"')
    missing = page[page.index('id="missing"'):page.index("</div>", page.index('id="missing"'))]
    assert f"LPIPS (full-reference), lower is better: missing on Set14, every trial: {LPIPS_REASON}" in missing
    assert 'title="LPIPS not computed: see Missing metrics at the top"' in page
    # Set5 is plotted against LPIPS, Set14 (no LPIPS) against NIQE, each axis named; never SSIM as perception
    planes = dict(re.findall(r'<script type="application/json" id="(plane-\d+)">(.*?)</script>', page, re.S))
    axes = [json.loads(planes[k])["layout"]["xaxis"]["title"]["text"] for k in ("plane-0", "plane-1")]
    assert axes[0].startswith("LPIPS (full-reference), lower is better") and axes[1].startswith(
        "NIQE (no-reference), lower is better")
    assert "SSIM" not in "".join(axes) and "perception axis is unavailable" not in page


def test_the_perception_plane_has_its_pareto_front(results_dir: Path, tmp_path: Path) -> None:
    page = build.build_report(results_dir, tmp_path / "report").read_text()
    blob = re.search(r'<script type="application/json" id="plane-0">(.*?)</script>', page, re.S).group(1)
    traces = {t["name"]: t for t in json.loads(blob)["data"]}
    summary = pl.read_parquet(results_dir / schema.SUMMARY_FILE).filter(pl.col("dataset") == "Set5")
    points = [plane.PlanePoint(r["trial_id"], r["lpips"], r["psnr"], False) for r in summary.iter_rows(named=True)]
    # the front by hand: sorted by LPIPS (lower better), keep each point with a PSNR above all before it
    best, expected = -math.inf, []
    for p in sorted(points, key=lambda p: (p.x, -p.y)):
        if p.y > best:
            expected.append((p.x, p.y))
            best = p.y
    assert list(zip(traces["Pareto front"]["x"], traces["Pareto front"]["y"], strict=True)) == expected


def test_no_perception_metric_no_plane(tmp_path: Path) -> None:
    folder = write_synthetic_results(tmp_path / "old", 2, ["Set5"], with_failed=False, missing_lpips=True,
                                     niqe=False)
    page = build.build_report(folder).read_text()
    assert 'data-figure="plane-' not in page
    assert "Set5: no perception–distortion plane: no perception metric (LPIPS or NIQE) was measured" in page
    assert "NIQE (no-reference), lower is better: not recorded: these results have no niqe column" in page


def test_without_history_or_images(tmp_path: Path) -> None:
    folder = write_synthetic_results(tmp_path / "eval", 2, ["Set5"], history_steps=0, images_per_dataset=0)
    page = build.build_report(folder).read_text()
    assert "No training history" in page and "No images were saved" in page


@pytest.mark.parametrize(
    ("points", "lower", "expected"),
    [
        ([(0.2, 28.0), (0.1, 27.0), (0.3, 26.0), (0.15, 26.5)], True, [(0.1, 27.0), (0.2, 28.0)]),
        ([(0.8, 28.0), (0.9, 27.0), (0.7, 29.0)], False, [(0.9, 27.0), (0.8, 28.0), (0.7, 29.0)]),
        ([(0.5, 20.0), (0.5, 21.0), (0.6, 19.0)], True, [(0.5, 21.0)]),
    ],
)
def test_pareto_front(points: list[tuple[float, float]], lower: bool, expected: list[tuple[float, float]]) -> None:
    marks = [plane.PlanePoint(str(i), x, y, False) for i, (x, y) in enumerate(points)]
    front = plane.pareto_front(marks, x_lower_is_better=lower)
    assert [(p.x, p.y) for p in front] == expected


def test_curves_one_figure_per_measure_versions_overlaid(study_results: Path, tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    section = page[page.index('id="curves"'):page.index('id="visual"')]
    figures_ = {json.loads(b)["layout"]["title"]["text"]: json.loads(b) for b in re.findall(
        r'<script type="application/json" id="curve-\d+">(.*?)</script>', section, re.S)}
    titles = [t.split(" (")[0].split(":")[0] for t in figures_]
    assert titles == ["validation PSNR", "pixel loss", "adversarial loss of G, unweighted",
                      "discriminator loss", "D gap"]  # no perceptual loss and no NIQE in these histories: no figure
    assert all(f["data"] for f in figures_.values())
    val = next(f for t, f in figures_.items() if t.startswith("validation PSNR"))
    traces = {t["name"]: t for t in val["data"] if t.get("showlegend", True)}
    history = pl.read_parquet(study_results / schema.HISTORY_FILE)
    v2 = (history.filter(pl.col("trial_id").str.starts_with("v2_s") & pl.col("val_psnr").is_not_null())
          .group_by("step").agg(pl.col("val_psnr").mean().alias("mean"), pl.col("val_psnr").min().alias("low"),
                                pl.col("val_psnr").max().alias("high")).sort("step"))
    mean = traces["v2 (3 seeds)"]
    assert mean["x"] == [s + 40 for s in v2["step"].to_list()]  # after its 40-step pretraining
    assert mean["y"] == pytest.approx(v2["mean"].to_list(), rel=1e-12)
    band = [t for t in val["data"] if t.get("legendgroup") == "v2" and t.get("showlegend") is False]
    assert [t["y"] for t in band] == [pytest.approx(v2["high"].to_list()), pytest.approx(v2["low"].to_list())]
    assert band[1]["fill"] == "tonexty"
    pretraining = traces["srresnet-pretrain (3 seeds)"]
    assert pretraining["x"] == [10, 20, 30, 40] and pretraining["line"]["dash"] == "dash"
    assert traces["v1 (3 seeds)"]["x"][0] == 10  # single stage: no pretraining before it
    assert [s["x0"] for s in val["layout"]["shapes"]] == [40]  # where the GAN stages start
    gap = next(f for t, f in figures_.items() if t.startswith("D gap"))
    threshold = gap["layout"]["shapes"][-1]
    assert threshold["y0"] == threshold["y1"] == schema.COLLAPSE_GAP


def test_per_trial_curves_are_folded_away_without_empty_panels(study_results: Path, tmp_path: Path) -> None:
    page = build.build_report(study_results, tmp_path / "report").read_text()
    folded = page[page.index('<details id="trial-curves">'):page.index("</details>", page.index('id="trial-curves"'))]
    history = pl.read_parquet(study_results / schema.HISTORY_FILE)
    assert folded.count("data-lazy-figure=") == history["trial_id"].n_unique() and "data-figure=" not in folded
    blobs = [json.loads(b) for b in re.findall(r'<script type="application/json" id="trial-curves-\d+">(.*?)</script>',
                                               folded, re.S)]
    by_title = {b["layout"]["title"]["text"]: b for b in blobs}

    def panels(fig: dict) -> list[str]:
        return [a["text"] for a in fig["layout"]["annotations"] if a["xref"] == "paper"]

    assert panels(by_title["srresnet-pretrain seed 0"]) == ["validation PSNR (dB)", "losses"]
    assert panels(by_title["v3 seed 0"]) == ["validation PSNR (dB)", "losses", "D(real) / D(fake), D gap"]
    for fig in blobs:  # every panel has a trace on its axis
        axes = {t.get("yaxis", "y") for t in fig["data"]}
        assert axes == {"y" + ("" if k == 0 else str(k + 1)) for k in range(len(panels(fig)))}


def test_older_histories_fall_back_for_the_unweighted_loss_and_the_gap() -> None:
    from reports import curves

    trials = pl.DataFrame({"trial_id": ["g", "h"], "version": ["v3", "v3"], "stage": ["gan", "gan"],
                           "init_from": [None, None], "steps": [2, 2], "g_updates": [None, None],
                           "pixel_weight": [1.0, 1.0], "perceptual_weight": [1.0, 1.0], "adv_weight": [5e-3, 5e-3]})
    old = pl.DataFrame({"trial_id": ["g", "g"], "step": [1, 2], "loss_adv_g": [0.01, 0.02],
                        "d_real": [0.8, 0.9], "d_fake": [0.3, 0.2]})
    frame = curves.long_history(old, trials)
    assert frame["adv_raw"].to_list() == pytest.approx([2.0, 4.0]) and frame["d_gap"].to_list() == pytest.approx(
        [0.5, 0.7])
    new = old.with_columns(pl.Series("loss_adv_raw", [1.5, 1.6]), pl.Series("d_gap", [0.1, 0.2]),
                           pl.lit("h").alias("trial_id"))
    frame = curves.long_history(new, trials)
    assert frame["adv_raw"].to_list() == [1.5, 1.6] and frame["d_gap"].to_list() == [0.1, 0.2]


def test_figure_json_cannot_close_its_script() -> None:
    fig = figures.training_curves(
        pl.DataFrame({"trial_id": ["t"] * 3, "step": [1, 2, 3], "phase": ["warmup", "gan", "gan"],
                      "val_psnr": [1.0, None, 2.0]}),
        "</script><script>alert(1)</script>",
    )
    text = figures.figure_json(fig)
    assert "<" not in text and ">" not in text and "&" not in text


def test_safe_name() -> None:
    assert crops.safe_name('<img src=x onerror="a">') == "img_src_x_onerror_a"
    assert crops.safe_name("../..") == "x"


def test_reports_never_import_torch_ray_or_harness() -> None:
    code = ("import sys, reports.build, reports.figures, reports.study_section; "
            "bad = [m for m in ('torch', 'ray', 'harness', 'srgan', 'benchmarks') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reports_package_ships_no_test_fixtures() -> None:
    """The synthetic builder (with its XSS payloads) lives in tests/, not in the shipped package."""
    shipped = "".join(p.read_text() for p in Path(build.__file__).parent.rglob("*.py"))
    assert "__xss" not in shipped and "write_synthetic" not in shipped


def test_run_json_validation_overhead_and_cache_are_shown_escaped(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(results_dir, folder, ignore=shutil.ignore_patterns("report"))
    run = json.loads((folder / schema.RUN_FILE).read_text())
    run.update(validation={"split": "held-out", "images": ["<img src=x onerror=alert(1)>.png"]}, overhead=0.137,
               pretrain_cache={"srresnet-pretrain": "from run <b>r1</b>"})
    (folder / schema.RUN_FILE).write_text(json.dumps(run))
    page = build.build_report(folder).read_text()
    meta = page[page.index('id="meta"'):]
    rows = re.findall(r'<tr><th class="text">([^<]+)</th><td class="text">(.*?)</td></tr>', meta, re.S)
    keys = [k for k, _ in rows]
    assert keys.index("datasets") < keys.index("validation") < keys.index("overhead") < keys.index("pretrain_cache")
    shown = dict(rows)
    assert "13.7 % of the wall time outside training steps and scoring" in shown["overhead"]
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in shown["validation"] and "<img src=x" not in page
    assert "&lt;b&gt;r1&lt;/b&gt;" in shown["pretrain_cache"]


def test_evaluate_style_run_json_extras(results_dir: Path, tmp_path: Path) -> None:
    """`benchmarks.evaluate` adds keys to run.json (model, config, metrics_missing): shown, not lost."""
    import json
    import shutil

    folder = tmp_path / "eval"
    shutil.copytree(results_dir, folder, ignore=shutil.ignore_patterns("report"))
    run = json.loads((folder / schema.RUN_FILE).read_text())
    run.update(model={"trial_id": "x", "flags": ["<i>f</i>"]}, metrics_missing={"lpips": "no weights"})
    run["protocol"]["lpips_weights"] = "untrained alexnet (opt-in)"
    (folder / schema.RUN_FILE).write_text(json.dumps(run))
    page = build.build_report(folder).read_text()
    assert "metrics_missing" in page and "&lt;i&gt;f&lt;/i&gt;" in page
    assert "protocol lpips_weights: untrained alexnet (opt-in)" in page


def test_baseline_only(tmp_path: Path) -> None:
    folder = write_synthetic_results(tmp_path / "baseline", 0, ["Set5"], missing_lpips=False)
    page = build.build_report(folder).read_text()
    assert "0 trials on 1 dataset(s)" in page and "PSNR: bicubic scores" in page
    assert page.count('class="trial-row') == 1


def test_the_run_table_says_how_many_scores_a_resume_keeps_not_their_digests(results_dir: Path, tmp_path: Path) -> None:
    """run.json's `scored` (the weights' sha256 a resume reads) is one line in the run table, not 40 digests."""
    from results import io

    copy = tmp_path / "results"
    shutil.copytree(results_dir, copy)
    run = io.read_json(copy / schema.RUN_FILE)
    digests = {f"t{i}": f"{i:064x}" for i in range(3)}
    io.write_json(copy / schema.RUN_FILE, {**run, schema.RUN_SCORED: {"with": "ab" * 32, "weights": digests}})
    page = build.build_report(copy, tmp_path / "report").read_text()
    assert "3 models&#39; scores, kept by a resume while their weights are unchanged" in page  # escaped
    assert not any(d in page for d in digests.values())
