"""evaluate: the CLI writes a results folder per the schema; models, baselines and bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
import torch

from benchmarks.evaluate import main
from benchmarks.scoring.evaluate import baseline, evaluate_model, score_trial
from results import schema
from srgan.checkpoint import CheckpointError, load_generator, load_training_state, save_training_state
from srgan.images import save_image


def _tiny_div2k(root: Path) -> Path:
    for i, name in enumerate(["0801", "0802"]):
        save_image(torch.rand(3, 36, 40, generator=torch.Generator().manual_seed(i)), root / "DIV2K/DIV2K_valid_HR"
                   / f"{name}.png")
    return root


def test_cli_bicubic_set5_x4(tmp_path: Path, offline: Path, data_root: Path,
                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "results"
    assert main(["--baseline", "bicubic", "--datasets", "set5", "--scale", "4", "--out", str(out),
                 "--save-images"]) == 0
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    summary = pl.read_parquet(out / schema.SUMMARY_FILE)
    assert list(scores.columns) == list(schema.SCORE_COLUMNS)
    assert scores.schema == pl.Schema(schema.polars_schema(schema.SCORE_COLUMNS))
    assert list(summary.columns)[: len(schema.SUMMARY_COLUMNS)] == list(schema.SUMMARY_COLUMNS)
    row = summary.row(0, named=True)
    assert row["psnr"] == pytest.approx(28.42, abs=0.05) and row["ssim"] == pytest.approx(0.8104, abs=0.002)
    assert row["num_images"] == 5 and row["lpips"] is None and "prefetch" in row["lpips_missing"]
    assert json.loads((out / schema.SUMMARY_JSON).read_text())[0]["psnr"] == pytest.approx(row["psnr"])
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert set(schema.RUN_FIELDS) <= set(run)
    assert run["kind"] == "evaluate" and run["datasets"] == ["set5"] and run["scale"] == 4
    assert run["protocol"]["color"] == "ycbcr_bt601" and "65.481" in run["protocol"]["y_formula"]
    assert run["protocol"]["lpips"]["variant"].startswith("AlexNet v0.1")
    assert pl.read_parquet(out / schema.TRIALS_FILE)["status"].to_list() == ["baseline"]
    assert (out / "images/bicubic/set5/baby.png").is_file() and (out / "images/_hr/set5/baby.png").is_file()
    printed = capsys.readouterr()
    assert "28.39" in printed.out or "28.40" in printed.out


def test_checkpoint_model_through_api_and_cli(tmp_path: Path, offline: Path, make_checkpoint) -> None:
    root = _tiny_div2k(tmp_path / "data")
    ckpt = make_checkpoint(scale=2)
    net, _ = load_generator(ckpt)
    scores = evaluate_model(net, ["div2k"], 2, data_root=root, metrics=("psnr", "ssim"), progress=False,
                            tile=8)  # tiled: LR is 18x20
    assert scores["image"].to_list() == ["0801", "0802"] and scores["psnr"].is_finite().all()
    _, summary = score_trial(net, "t1", ["div2k"], 2, data_root=root, metrics=("psnr",),
                             save_images=["0802"], images_dir=tmp_path / "img", progress=False)
    assert summary["trial_id"].to_list() == ["t1"] and summary["ssim"].to_list() == [None]
    assert [p.name for p in (tmp_path / "img/t1/div2k").iterdir()] == ["0802.png"]
    out = tmp_path / "res"
    assert main(["--checkpoint", str(ckpt), "--datasets", "div2k", "--scale", "2", "--out", str(out),
                 "--data-root", str(root), "--metrics", "psnr,ssim"]) == 0
    run = json.loads((out / schema.RUN_FILE).read_text())
    assert run["config"]["scale"] == 2 and run["config"]["name"] == "v3-tiny"
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    assert json.loads(trials["config_json"][0])["scale"] == 2


def test_checkpoint_of_another_scale_is_refused(tmp_path: Path, make_checkpoint,
                                                capsys: pytest.CaptureFixture) -> None:
    ckpt = make_checkpoint(scale=2)
    with pytest.raises(CheckpointError, match=r"x2.*x4"):
        load_generator(ckpt, expect_scale=4)
    root = _tiny_div2k(tmp_path / "data")
    assert main(["--checkpoint", str(ckpt), "--datasets", "div2k", "--scale", "4", "--out", str(tmp_path / "o"),
                 "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and "x2" in err and "x4" in err


def test_cli_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--baseline", "bicubic", "--datasets", "set6", "--out", str(tmp_path / "o")]) == 2
    assert "unknown dataset 'set6'" in capsys.readouterr().err
    assert main(["--baseline", "bicubic", "--datasets", "urban100", "--out", str(tmp_path / "o"),
                 "--data-root", str(tmp_path)]) == 2
    assert str(tmp_path / "Urban100") in capsys.readouterr().err


def test_model_of_wrong_scale_output_is_named(tmp_path: Path) -> None:
    root = _tiny_div2k(tmp_path / "data")
    with pytest.raises(ValueError, match="is the model x4"):
        evaluate_model(baseline("bicubic", 2), ["div2k"], 4, data_root=root, metrics=("psnr",), progress=False)


def test_nearest_baseline_is_worse_than_bicubic(data_root: Path) -> None:
    kw = {"metrics": ("psnr",), "progress": False}
    near = evaluate_model(baseline("nearest", 4), ["set5"], 4, **kw)["psnr"].mean()
    bic = evaluate_model(baseline("bicubic", 4), ["set5"], 4, **kw)["psnr"].mean()
    assert near < bic


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_training_state_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    save_training_state({"step": 1, "payload": _Evil(marker)}, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="training_state.pt"):
        load_training_state(tmp_path / "ckpt")
    assert not marker.exists()


def test_datasets_option_is_normalised_and_refused_when_empty(tmp_path: Path, data_root: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "o"
    assert main(["--baseline", "bicubic", "--datasets", ",", "--out", str(out)]) == 2
    assert "--datasets ',' names no dataset" in capsys.readouterr().err
    assert not out.exists()  # refused before anything ran
    assert main(["--baseline", "bicubic", "--datasets", "set5,Set5, set5", "--out", str(out),
                 "--metrics", "psnr"]) == 0
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert scores.height == 5 and scores["dataset"].unique().to_list() == ["set5"]
    assert json.loads((out / schema.RUN_FILE).read_text())["datasets"] == ["set5"]
