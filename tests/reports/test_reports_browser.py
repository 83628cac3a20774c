"""The built report in headless Chromium: charts render, images load, nothing runs or leaves the machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from reports import build
from results import schema

pytestmark = pytest.mark.slow


@dataclass
class PageVisit:
    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _visit(browser: object, index: Path) -> PageVisit:
    """Open index.html from disk, recording console errors, dialogs and any request not for file: or data:."""
    context = browser.new_context()
    page = context.new_page()
    visit = PageVisit(page)

    def route(route: object) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            visit.outside_requests.append(url)
            route.abort()

    def dialog(d: object) -> None:
        visit.dialogs.append(d.message)
        d.dismiss()

    context.route("**/*", route)
    page.on("console", lambda m: visit.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.page_errors.append(str(e)))
    page.on("dialog", dialog)
    page.goto(index.resolve().as_uri(), wait_until="load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-figure]')].every(el => el.querySelector('.main-svg'))",
        timeout=30_000,
    )
    return visit


def _open_trial_curves(page: object) -> int:
    """Open the folded per-trial figures; returns how many there are, once every one of them is drawn."""
    folded = page.eval_on_selector_all("[data-lazy-figure]", "els => els.length")
    assert page.eval_on_selector_all("[data-lazy-figure] .main-svg", "els => els.length") == 0  # drawn on opening
    page.click("#trial-curves > summary")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-lazy-figure]')].every(el => el.querySelector('.main-svg'))",
        timeout=30_000,
    )
    return folded


def test_report_renders_offline(browser: object, tiny_study, tmp_path: Path) -> None:
    """The report of the session's real tiny study (tests/conftest.py), built here from its folder."""
    results = tiny_study.out
    index = build.build_report(results, tmp_path / "report")
    visit = _visit(browser, index)
    page = visit.page
    charts = page.eval_on_selector_all(
        ".js-plotly-plot", "els => els.map(el => el.querySelectorAll('svg.main-svg').length)"
    )
    n_figures = page.eval_on_selector_all("[data-figure]", "els => els.length")
    assert n_figures > 0 and len(charts) == n_figures and all(n > 0 for n in charts)
    trials = pl.read_parquet(results / schema.TRIALS_FILE)
    # bicubic baseline, the two shared pretrainings, five versions and two equal-budget controls x two seeds
    assert trials.height == 1 + 2 + 7 * 2
    assert page.eval_on_selector_all("#summary-table tbody tr", "rows => rows.length") == trials.height
    assert "untrained-perceptual-vgg19" in page.inner_text("body")  # v3's, RaGAN's and ESRGAN's opt-in is visible
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert widths and all(w > 0 for w in widths)
    # The per-image table sorts on a header click.
    page.click("#image-table thead th:nth-child(4)")
    assert page.get_attribute("#image-table thead th:nth-child(4)", "aria-sort") == "ascending"
    history = pl.read_parquet(results / schema.HISTORY_FILE)
    assert page.eval_on_selector_all(".curves .js-plotly-plot", "els => els.length") >= 3
    assert _open_trial_curves(page) == history["trial_id"].n_unique()
    assert visit.console_errors == [] and visit.page_errors == []
    assert visit.outside_requests == []
    assert visit.dialogs == []


def test_hostile_names_do_not_run(browser: object, hostile_results: Path, tmp_path: Path) -> None:
    index = build.build_report(hostile_results, tmp_path / "report")
    visit = _visit(browser, index)
    page = visit.page
    page.hover("strong.flag >> nth=0")  # the flag payload is an onmouseover handler
    assert page.locator("b[onmouseover]").count() == 0
    assert page.evaluate("() => typeof window.__xss") == "undefined"
    assert visit.dialogs == []
    assert visit.outside_requests == []
    # The payloads are shown as text.
    assert "<script>window.__xss=1</script>" in page.inner_text("#summary-table")
    assert '<img src=x onerror="window.__xss=2">' in page.inner_text("body")
    _open_trial_curves(page)  # a trial's label is its figure's title
    titles = page.eval_on_selector_all("#trial-curves .gtitle", "els => els.map(e => e.textContent)")
    assert "<script>window.__xss=1</script>" in titles
    assert page.evaluate("() => typeof window.__xss") == "undefined"
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert widths and all(w > 0 for w in widths)
    assert visit.console_errors == [] and visit.page_errors == []


def test_study_section_renders(browser: object, study_results: Path, tmp_path: Path) -> None:
    index = build.build_report(study_results, tmp_path / "report")
    visit = _visit(browser, index)
    page = visit.page
    assert visit.console_errors == [] and visit.page_errors == []
    assert visit.outside_requests == [] and visit.dialogs == []
    top = page.eval_on_selector_all("h2", "els => els.map(e => e.id || e.parentElement.id)")
    assert top[0] == "study"  # the first section of the page
    planes = page.eval_on_selector_all(
        "#study .js-plotly-plot", "els => els.map(el => el.querySelectorAll('.errorbar').length)")
    assert len(planes) == 2 and all(n > 0 for n in planes)  # error bars drawn on both datasets' planes
    rows = page.eval_on_selector_all("#study-diffs tbody tr", "rows => rows.length")
    assert rows == 16
    assert "untrained-perceptual-vgg19" in page.inner_text("#study-untested")
    assert page.is_visible("#study-table") and page.is_visible("#study-findings")
    assert page.is_visible("#study-protocol") and "training seed" in page.inner_text("#study-protocol")
    # the training curves: one figure per measure, each version's seed band drawn as a filled area
    curves = page.eval_on_selector_all(".curves .js-plotly-plot", "els => els.length")
    assert curves == 5
    assert page.eval_on_selector_all(".curves .js-plotly-plot .scatterlayer .js-fill", "els => els.length") > 0
    assert _open_trial_curves(page) == 21
    assert visit.console_errors == [] and visit.page_errors == []


def test_study_without_lpips_renders(browser: object, tmp_path: Path) -> None:
    from reports_synthetic import write_synthetic_study

    folder = write_synthetic_study(tmp_path / "study", missing_lpips=True, seeds=(0, 1), presets=("v1", "v2", "v3"))
    visit = _visit(browser, build.build_report(folder))
    assert visit.console_errors == [] and visit.page_errors == []
    titles = visit.page.eval_on_selector_all("#study .js-plotly-plot .xtitle", "els => els.map(e => e.textContent)")
    assert len(titles) == 2 and all(t.startswith("NIQE (no-reference), lower is better") for t in titles)
    assert "LPIPS (full-reference), lower is better: missing" in visit.page.inner_text("#missing")


def test_one_seed_and_old_studies_render(browser: object, tmp_path: Path) -> None:
    from reports_synthetic import write_synthetic_study

    small = {"presets": ("v1", "v2", "v3"), "datasets": ("Set5",), "images_per_dataset": 2, "steps": 20}
    for name, options in (("one-seed", {"seeds": (0,)}), ("old", {"seeds": (0, 1), "layout": "old"})):
        folder = write_synthetic_study(tmp_path / name, **small, **options)
        visit = _visit(browser, build.build_report(folder))
        assert visit.console_errors == [] and visit.page_errors == [], name
        bars = visit.page.eval_on_selector_all("#study .js-plotly-plot .errorbar", "els => els.length")
        assert (bars == 0) == (name == "one-seed"), name  # one seed: no interval drawn anywhere
