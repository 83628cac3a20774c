"""The report's loader: versions named as the study names them, and a summary checked against its scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from reports import load
from results import schema
from results.rows import trial_version


def _config(arch: str) -> str:
    return json.dumps({"generator": {"arch": arch}})


@pytest.mark.parametrize(("trial", "version"), [
    # the version the row was written with (the harness writes it since 2026-12-06) wins over anything derived
    ({"preset": "v2", "stage": "gan", "version": "v2@adv_weight=0.1"}, "v2@adv_weight=0.1"),
    ({"preset": "srresnet-pretrain", "stage": "gan", "version": "srresnet-continued"}, "srresnet-continued"),
    # older folders: derived
    ({"preset": "srresnet-pretrain", "stage": "pretrain"}, "srresnet-pretrain"),
    ({"preset": "srresnet-pretrain-seed2", "stage": "pretrain"}, "srresnet-pretrain"),
    ({"preset": "rrdb-pretrain-0a1b2c3d", "stage": "pretrain"}, "rrdb-pretrain"),
    # folders from before pretrainings had names: the family from the generator
    ({"preset": "v2", "stage": "pretrain", "config_json": _config("srresnet")}, "srresnet-pretrain"),
    ({"preset": "esrgan", "stage": "pretrain", "config_json": _config("rrdbnet")}, "rrdb-pretrain"),
    ({"preset": "v3", "stage": "gan"}, "v3"),
    ({"preset": "v3-small", "stage": "gan"}, "v3"),  # the cpu size's older name, as a preset suffix
    ({"preset": "bicubic", "stage": "baseline"}, "bicubic"),
])
def test_trial_version(trial: dict, version: str) -> None:
    """One reading of a trial's version for the study and the report (results.rows.trial_version)."""
    assert trial_version({"trial_id": "t", **trial}) == version


def _scores() -> pl.DataFrame:
    rows = [{"trial_id": t, "dataset": "Set5", "image": f"i{k}", "scale": 4, "psnr": 20.0 + k + j, "ssim": 0.5,
             "lpips": None, "niqe": 5.0 + k} for j, t in enumerate(("a", "b")) for k in range(3)]
    return pl.DataFrame(rows, schema=schema.polars_schema(schema.SCORE_COLUMNS))


def _summary(scores: pl.DataFrame) -> pl.DataFrame:
    """The summary a writer makes: means over images, by an independent route (plain Python)."""
    rows = []
    for trial in ("a", "b"):
        part = [r for r in scores.iter_rows(named=True) if r["trial_id"] == trial]
        rows.append({"trial_id": trial, "dataset": "Set5", "scale": 4, "num_images": len(part),
                     "psnr": math.fsum(r["psnr"] for r in part) / len(part), "ssim": 0.5, "lpips": None,
                     "lpips_missing": "no weights", "niqe": math.fsum(r["niqe"] for r in part) / len(part),
                     "niqe_missing": None})
    return pl.DataFrame(rows, schema=schema.polars_schema(schema.SUMMARY_COLUMNS))


def test_an_agreeing_summary_is_kept_as_is(tmp_path: Path) -> None:
    scores = _scores()
    summary = _summary(scores)
    out, problems = load.reconcile_summary(summary, scores, summary_path=tmp_path / "s", scores_path=tmp_path / "c")
    assert problems == []
    assert out.sort("trial_id").select("psnr", "niqe", "num_images", "lpips_missing").rows() == summary.select(
        "psnr", "niqe", "num_images", "lpips_missing").rows()


@pytest.mark.parametrize("change", ["value", "count", "null", "extra row"])
def test_a_disagreeing_summary_is_recomputed_and_named(tmp_path: Path, change: str) -> None:
    scores = _scores()
    summary = _summary(scores)
    if change == "value":
        summary = summary.with_columns(pl.when(pl.col("trial_id") == "b").then(99.0).otherwise(pl.col("psnr"))
                                       .alias("psnr"))
    elif change == "count":
        summary = summary.with_columns(pl.lit(7, dtype=pl.Int64).alias("num_images"))
    elif change == "null":
        summary = summary.with_columns(pl.lit(None, dtype=pl.Float64).alias("niqe"))
    else:
        extra = summary.head(1).with_columns(pl.lit("ghost").alias("trial_id"))
        summary = pl.concat([summary, extra])
    out, problems = load.reconcile_summary(summary, scores, summary_path=tmp_path / "summary.parquet",
                                           scores_path=tmp_path / "scores.parquet")
    assert len(problems) == 1 and str(tmp_path / "summary.parquet") in problems[0]
    expected = _summary(scores)
    for trial in ("a", "b"):
        got = out.filter(pl.col("trial_id") == trial).row(0, named=True)
        want = expected.filter(pl.col("trial_id") == trial).row(0, named=True)
        assert got["psnr"] == pytest.approx(want["psnr"], rel=1e-12) and got["num_images"] == 3
        assert got["niqe"] == pytest.approx(want["niqe"], rel=1e-12) and got["lpips_missing"] == "no weights"
    if change == "extra row":  # kept as written (no images to recompute it from), and named
        assert "ghost/Set5: no image in scores.parquet" in problems[0]
        assert out.filter(pl.col("trial_id") == "ghost").height == 1
