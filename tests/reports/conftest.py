"""Fixtures for the report tests: synthetic results folders (per `results.schema`) and headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from reports_synthetic import write_synthetic_results, write_synthetic_study

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DATASETS = ("Set5", "Set14")


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic results folder (fast); the browser test builds from the real tiny study (`tiny_study`)."""
    return write_synthetic_results(tmp_path_factory.mktemp("results"), 4, DATASETS)


@pytest.fixture
def hostile_results(tmp_path: Path) -> Path:
    return write_synthetic_results(tmp_path / "hostile", 3, DATASETS, hostile_names=True)


@pytest.fixture
def failed_results(tmp_path: Path) -> Path:
    return write_synthetic_results(tmp_path / "failed", 3, DATASETS, with_failed=True, missing_lpips=True)


@pytest.fixture(scope="session")
def study_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic study (v1..esrgan x 3 seeds, shared pretrainings) with its study tables computed."""
    return write_synthetic_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's headless Chromium driven by playwright; skipped without it, except in CI where it must work."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} missing: run scripts/install_chromium.sh"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "python playwright is not installed"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
