"""`harness.study --dry-run --variance-from DIR [--target-diff X]`: the power of the next study from the variance a
previous one measured, on a synthetic study folder whose seed-to-seed variation is known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from harness.sweeps import study
from results import rows, schema
from results.study_power import plan

SEEDS, IMAGES = (0, 1, 2, 3), ("a", "b", "c", "d", "e")


def _study_folder(folder: Path) -> Path:
    """v1 and v2 (GAN stages, single-stage configs) x 4 seeds x 5 images of one set: v2 - v1 = 1 dB + a seed
    effect of sd 0.3 dB + image-level noise of sd 0.05 dB."""
    rng = np.random.default_rng(7)
    trials, scores = [], []
    image_effect = dict(zip(IMAGES, rng.normal(28.0, 2.0, len(IMAGES)), strict=True))
    for preset, shift in (("v1", 0.0), ("v2", 1.0)):
        for seed in SEEDS:
            trial_id = f"{preset}_{seed}"
            config = {"name": f"{preset}-cpu", "generator": {"arch": "srresnet"}, "train": {"seed": seed}}
            trials.append(rows.trial_row(trial_id, label=trial_id, status=schema.STATUS_OK, config=config,
                                         stage=schema.STAGE_GAN, seed=seed, g_updates=760, selection="final"))
            seed_effect = rng.normal(0, 0.3)
            for image in IMAGES:
                psnr = image_effect[image] + shift + seed_effect + rng.normal(0, 0.05)
                scores.append({"trial_id": trial_id, "dataset": "set5", "image": image, "scale": 4, "psnr": psnr,
                               "ssim": 0.8 + psnr / 1000, "lpips": None, "niqe": None})
    folder.mkdir(parents=True)
    rows.trials_frame(trials).write_parquet(folder / schema.TRIALS_FILE)
    pl.DataFrame(scores, schema=schema.polars_schema(schema.SCORE_COLUMNS)).write_parquet(folder / schema.SCORES_FILE)
    return folder


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _study_folder(tmp_path_factory.mktemp("power") / "previous")


def _lines(text: str) -> dict[tuple[str, str, str], list[str]]:
    """(comparison, dataset, metric) -> the table cells of that line (columns are two or more spaces apart)."""
    out = {}
    for line in text.splitlines()[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        out[cells[0], cells[1], cells[2]] = cells
    return out


def test_the_table_shows_the_plan_of_each_comparison(previous: Path) -> None:
    text = study.power_table(str(previous), seeds=3, target_diff=0.5)
    assert text.splitlines()[0].startswith(f"power at 3 seed(s), from the variance measured in {previous}")
    assert "mdd@3" in text.splitlines()[1] and "seeds for 0.5" in text.splitlines()[1]
    table = _lines(text)
    expected = [r for r in plan(previous, n_seeds=3, target_diff=0.5) if r["comparison"] == "v2 - v1"]
    assert {r["metric"] for r in expected} == {"psnr", "ssim"}  # no LPIPS or NIQE was scored
    for r in expected:
        cells = table["v2 - v1", "set5", r["metric"]]
        assert cells[3:] == [str(r["n_images"]), f"{r['sd_seed']:.3g}", f"{r['sd_image']:.3g}",
                             f"{r['measured_diff']:.3g}", f"{r['mdd']:.3g}", str(r["seeds_needed"])]
    psnr = next(r for r in expected if r["metric"] == "psnr")
    assert 0.7 < psnr["measured_diff"] < 1.3 and psnr["n_images"] == 5


def test_more_seeds_detect_less_and_the_seeds_needed_reach_the_target(previous: Path) -> None:
    def psnr(rows_: list[dict]) -> dict:
        return next(r for r in rows_ if r["comparison"] == "v2 - v1" and r["metric"] == "psnr")

    mdds = [psnr(plan(previous, n_seeds=n))["mdd"] for n in (2, 3, 5, 10, 30)]
    assert all(a > b for a, b in zip(mdds, mdds[1:], strict=False))  # more seeds, smaller detectable difference
    target = 0.4
    needed = psnr(plan(previous, n_seeds=3, target_diff=target))["seeds_needed"]
    assert needed is not None and needed >= 2
    assert psnr(plan(previous, n_seeds=needed))["mdd"] <= target < psnr(plan(previous, n_seeds=needed - 1))["mdd"]


def test_the_cli_prints_it_before_the_dry_run_and_refuses_bad_input(previous: Path, capsys, tmp_path: Path,
                                                                     monkeypatch) -> None:
    started = []
    monkeypatch.setattr(study.sweep, "run_cli", lambda launch, no_report: started.append(launch) or 0)
    assert study.main(["--dry-run", "--seeds", "5", "--variance-from", str(previous), "--target-diff", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "power at 5 seed(s)" in out and "seeds for 0.3" in out and started and started[0].dry_run
    for argv, words in (
            (["--target-diff", "0.3"], "--target-diff needs --variance-from DIR"),
            (["--variance-from", str(previous), "--target-diff", "0"], "--target-diff must be a finite difference > 0"),
            (["--variance-from", str(tmp_path / "none")], str(tmp_path / "none"))):
        started.clear()
        assert study.main(["--dry-run", *argv]) == 2
        assert words in capsys.readouterr().err and not started  # refused before the plan


def test_a_one_seed_study_says_it_cannot_give_the_seed_variance(tmp_path: Path) -> None:
    folder = _study_folder(tmp_path / "one")
    trials = pl.read_parquet(folder / schema.TRIALS_FILE).filter(pl.col("seed") == 0)
    trials.write_parquet(folder / schema.TRIALS_FILE)
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    scores.filter(pl.col("trial_id").is_in(trials["trial_id"].to_list())).write_parquet(folder / schema.SCORES_FILE)
    text = study.power_table(str(folder), seeds=3, target_diff=None)
    assert "one seed" in text and json.dumps(None) not in text
