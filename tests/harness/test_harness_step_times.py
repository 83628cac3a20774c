"""`$ENHANCE_STEP_TIMES`: one step-time cache (benchmarks.speed.cost's step_times.json) shared by every run that sets
it, instead of one per results folder; a dry run reads it and still writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.speed import cost
from harness.run import runs
from harness.run.runs import RunSpec
from harness.run.storage import dry_run_cache
from srgan.config import override
from srgan.versions import preset


def _spec(run_dir: Path, data_root: Path) -> RunSpec:
    cfg = override(preset("v2-tiny"), {"data.patch_size": 24, "data.batch_size": 2})
    return RunSpec(cfg=cfg, run_dir=run_dir, data_root=data_root)


def test_runs_share_the_step_time_cache_named_by_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared-times"
    monkeypatch.setenv(cost.CACHE_ENV, str(shared))
    measured = []
    real = cost.measure_step_rate

    def counting(cfg, **kwargs):
        measured.append(kwargs.get("phase"))
        return real(cfg, **kwargs)

    monkeypatch.setattr(cost, "measure_step_rate", counting)
    first = runs.run_plan(_spec(tmp_path / "a" / "run", tmp_path))
    assert (shared / cost.CACHE_FILE).is_file() and not (tmp_path / "a" / cost.CACHE_FILE).exists()
    assert len(measured) == 2  # the pixel-only and the GAN step, timed once
    second = runs.run_plan(_spec(tmp_path / "b" / "run", tmp_path))  # another results root: the same cache
    assert len(measured) == 2 and not (tmp_path / "b").exists()
    assert "cost estimate" in first and "cached" not in first and "cached" in second
    entries = json.loads((shared / cost.CACHE_FILE).read_text())["entries"]
    assert len(entries) == 2
    # a dry run starts from the shared cache, writes into a throwaway copy, and leaves the shared one as it was
    before = (shared / cost.CACHE_FILE).read_bytes()
    with dry_run_cache(tmp_path / "c") as throwaway:
        assert throwaway != shared and (throwaway / cost.CACHE_FILE).read_bytes() == before
    assert not throwaway.exists() and (shared / cost.CACHE_FILE).read_bytes() == before


def test_without_the_setting_each_results_folder_keeps_its_own(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cost.CACHE_ENV, raising=False)
    assert cost.cache_folder(tmp_path) == tmp_path
    monkeypatch.setenv(cost.CACHE_ENV, "  ")  # blank: unset
    assert runs.step_times_folder(tmp_path) == tmp_path
    runs.run_plan(_spec(tmp_path / "runs" / "one", tmp_path))
    assert (tmp_path / "runs" / cost.CACHE_FILE).is_file()
