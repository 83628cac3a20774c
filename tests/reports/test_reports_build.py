"""Fast tests of the report builder (no browser): contents, escaping, failures, missing metrics."""

from __future__ import annotations

import re
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

from reports import build, figures
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
    assert f"LPIPS missing: {LPIPS_REASON} (Set14)" in page
    assert f'title="{LPIPS_REASON}"' in page
    # no LPIPS on Set14: no plane there (PSNR against SSIM would be two distortion measures), and the reason
    assert f"Set14: the perception axis is unavailable: LPIPS was not computed ({LPIPS_REASON})" in page
    assert page.count('data-figure="plane-') == 1 and "SSIM on the x axis" not in page


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
    plane = [figures.PlanePoint(str(i), x, y, False) for i, (x, y) in enumerate(points)]
    front = figures.pareto_front(plane, x_lower_is_better=lower)
    assert [(p.x, p.y) for p in front] == expected


def test_figure_json_cannot_close_its_script() -> None:
    fig = figures.training_curves(
        pl.DataFrame({"trial_id": ["t"] * 3, "step": [1, 2, 3], "phase": ["warmup", "gan", "gan"],
                      "val_psnr": [1.0, None, 2.0]}),
        "</script><script>alert(1)</script>",
    )
    text = figures.figure_json(fig)
    assert "<" not in text and ">" not in text and "&" not in text


def test_safe_name() -> None:
    assert build.safe_name('<img src=x onerror="a">') == "img_src_x_onerror_a"
    assert build.safe_name("../..") == "x"


def test_reports_never_import_torch_ray_or_harness() -> None:
    code = ("import sys, reports.build, reports.figures, reports.study_section; "
            "bad = [m for m in ('torch', 'ray', 'harness', 'srgan', 'benchmarks') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reports_package_ships_no_test_fixtures() -> None:
    """The synthetic builder (with its XSS payloads) lives in tests/, not in the shipped package."""
    shipped = "".join(p.read_text() for p in Path(build.__file__).parent.rglob("*.py"))
    assert "__xss" not in shipped and "write_synthetic" not in shipped


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
