"""evaluate --images: SR files made elsewhere are scored exactly as a model's output is, matched to their HR by
name; an unmatched name or a size mismatch is an error naming the file; the folder is a results folder that
reports.build reads."""

from __future__ import annotations

import json
import shutil
import urllib.error
from pathlib import Path

import polars as pl
import pytest
import torch

from benchmarks.evaluate import main
from benchmarks.scoring.images import score_images
from benchmarks.scoring.scorers import NO_HR
from results import schema
from srgan.images import load_image, save_image

METRICS = "psnr,ssim,lpips,niqe"  # LPIPS is null offline in both runs; the other three are compared


@pytest.fixture(scope="module")
def model_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model (random weights) scored on Set5 x4 through the CLI, offline, its SR outputs saved
    (images/ckpt/set5/*.png). Made once for the module; tests copy what they change."""
    from benchmarks.scoring import learned
    from srgan.checkpoint import save_generator
    from srgan.generator import build_generator
    from srgan.versions import preset

    root = tmp_path_factory.mktemp("model_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch_home"))  # no NIQE cache, no LPIPS weights: as `offline`
        mp.setattr(learned, "_UNAVAILABLE", {})

        def no_network(url: str, dst: str, *args, **kwargs) -> None:
            raise urllib.error.URLError("test: no network")

        mp.setattr(torch.hub, "download_url_to_file", no_network)
        cfg = preset("v3-tiny", scale=4)
        torch.manual_seed(0)
        ckpt = save_generator(build_generator(cfg.generator, scale=4).eval(), cfg, root / "ckpt")
        out = root / "model"
        assert main(["--checkpoint", str(ckpt), "--datasets", "set5", "--scale", "4", "--out", str(out),
                     "--metrics", METRICS, "--save-images"]) == 0
    return out


def _metric_frame(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(folder / schema.SCORES_FILE).select("dataset", "image", "scale", "psnr", "ssim", "niqe")


def test_images_scored_equal_the_models_own_scores(offline: Path, model_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "images"
    assert main(["--images", str(model_run / "images/ckpt"), "--datasets", "set5", "--scale", "4", "--out", str(out),
                 "--metrics", METRICS]) == 0
    ours, model = _metric_frame(out), _metric_frame(model_run)
    assert ours.height == 5 and ours["niqe"].is_finite().all() and ours["psnr"].is_finite().all()
    assert ours.equals(model)  # same images, same protocol: the same numbers, exactly
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    assert trials.height == 1 and trials["trial_id"][0] == "ckpt" and "external-images" in trials["flags"][0]
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert list(scores.columns) == list(schema.SCORE_COLUMNS) and scores["trial_id"].unique().to_list() == ["ckpt"]
    summary = pl.read_parquet(out / schema.SUMMARY_FILE)
    assert list(summary.columns)[: len(schema.SUMMARY_COLUMNS)] == list(schema.SUMMARY_COLUMNS)
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert run["kind"] == "evaluate" and run["datasets"] == ["set5"] and run["model"]["images"]["hr"] == "set5"
    assert run["protocol"] == {**json.loads((model_run / schema.RUN_FILE).read_text())["protocol"]}

    from reports.build import build_report

    index = build_report(out, tmp_path / "report")
    assert "ckpt" in index.read_text()


def test_an_hr_folder_and_a_suffix(offline: Path, model_run: Path, tmp_path: Path) -> None:
    sr = tmp_path / "theirs"
    sr.mkdir()
    for path in (model_run / "images/ckpt/set5").iterdir():
        shutil.copy(path, sr / f"{path.stem}_x4_SR.png")
    hr = model_run / "images" / schema.HR_DIR / "set5"  # the HR evaluate kept, already mod-cropped
    out = tmp_path / "out"
    assert main(["--images", str(sr), "--hr", str(hr), "--suffix", "_x4_SR", "--scale", "4", "--out", str(out),
                 "--metrics", METRICS, "--name", "theirs"]) == 0
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert scores["trial_id"].unique().to_list() == ["theirs"] and scores["dataset"].unique().to_list() == ["set5"]
    assert _metric_frame(out).equals(_metric_frame(model_run))


def test_an_unmatched_name_is_an_error_naming_it(offline: Path, model_run: Path, tmp_path: Path, capsys) -> None:
    sr = tmp_path / "sr"
    shutil.copytree(model_run / "images/ckpt/set5", sr)
    shutil.copy(sr / "bird.png", sr / "parrot.png")
    out = tmp_path / "out"
    assert main(["--images", str(sr), "--datasets", "set5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(sr / "parrot.png") in err and "no HR image named 'parrot'" in err
    assert not (out / schema.SCORES_FILE).exists()
    # names that carry a suffix: the message says how to strip it
    (sr / "parrot.png").unlink()
    (sr / "bird.png").rename(sr / "bird_x4_SR.png")
    assert main(["--images", str(sr), "--datasets", "set5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(sr / "bird_x4_SR.png") in err and "--suffix" in err
    # an HR image without its SR is named too (a set scored on some of its images is not the set's score)
    (sr / "bird_x4_SR.png").unlink()
    assert main(["--images", str(sr), "--datasets", "set5", "--out", str(out)]) == 2
    assert "no SR image for the HR bird" in capsys.readouterr().err


def test_a_size_mismatch_is_an_error_naming_it(offline: Path, model_run: Path, tmp_path: Path, capsys) -> None:
    sr = tmp_path / "sr"
    shutil.copytree(model_run / "images/ckpt/set5", sr)
    save_image(load_image(sr / "head.png")[:, :-4, :], sr / "head.png")  # 4 rows short
    out = tmp_path / "out"
    assert main(["--images", str(sr), "--datasets", "set5", "--scale", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(sr / "head.png") in err and "276x272 px" in err and "is 276x276" in err
    assert not (out / schema.SCORES_FILE).exists()


def test_without_hr_only_niqe_is_scored(offline: Path, model_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    sr = model_run / "images/ckpt/set5"
    assert main(["--images", str(sr), "--out", str(out), "--metrics", METRICS]) == 0
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert scores["psnr"].null_count() == scores["ssim"].null_count() == scores["lpips"].null_count() == 5
    assert scores["niqe"].to_list() == _metric_frame(model_run)["niqe"].to_list()
    summary = pl.read_parquet(out / schema.SUMMARY_FILE).row(0, named=True)
    assert summary["dataset"] == "set5" and summary["psnr"] is None and summary["lpips_missing"] == NO_HR
    assert summary["niqe"] == pytest.approx(scores["niqe"].mean())
    from reports.build import build_report

    assert build_report(out, tmp_path / "report").is_file()


def test_crop_overrides_the_border(offline: Path, model_run: Path, tmp_path: Path) -> None:
    sr = model_run / "images/ckpt"
    kw = {"scale": 4, "datasets": ["set5"], "metrics": ("psnr", "niqe"), "progress": False}
    default, _ = score_images(sr, **kw)
    same, _ = score_images(sr, crop=4, **kw)
    none, _ = score_images(sr, crop=0, **kw)
    assert default.equals(same) and not torch.allclose(torch.tensor(none["psnr"].to_list()),
                                                         torch.tensor(default["psnr"].to_list()))
    out = tmp_path / "out"
    assert main(["--images", str(sr), "--datasets", "set5", "--crop", "0", "--out", str(out), "--metrics",
                 "psnr,niqe"]) == 0
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert run["protocol"]["crop_border"] == 0 and run["protocol"]["niqe"]["crop_border"] == 0
    assert pl.read_parquet(out / schema.SCORES_FILE)["psnr"].to_list() == none["psnr"].to_list()


def test_options_that_do_not_go_together(tmp_path: Path, capsys) -> None:
    assert main(["--baseline", "bicubic", "--hr", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--hr only go with --images" in capsys.readouterr().err
    assert main(["--images", str(tmp_path), "--hr", str(tmp_path), "--datasets", "set5",
                 "--out", str(tmp_path / "o")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["--images", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
