"""evaluate under faults: a model whose output is not finite is an error naming the image, never "ok" NaN
scores; an output folder that cannot be written fails before any scoring; a disk that fills up while images or
tables are written is an error naming the file (exit 1), and nothing written before it is lost."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.evaluate import main
from benchmarks.scoring.evaluate import score_trial
from srgan.upscale import NonFiniteOutputError


def test_a_nan_model_is_reported_not_scored(make_checkpoint, data_root: Path, tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(4)
    weights = ckpt / "generator.safetensors"
    state = load_file(str(weights))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
              str(weights))
    out = tmp_path / "scores"
    code = main(["--checkpoint", str(ckpt), "--datasets", "set5", "--scale", "4", "--out", str(out),
                 "--metrics", "psnr,ssim"])
    err = capsys.readouterr().err
    assert code != 0 and ("not finite" in err.lower() or "nan" in err.lower()), err
    assert "baby" in err  # the first image is named
    assert not (out / "scores.parquet").exists() and not (out / "trials.parquet").exists()


def test_a_baseline_callable_with_inf_output_is_caught(data_root: Path) -> None:
    with pytest.raises(NonFiniteOutputError, match="inf-model"):
        score_trial(lambda lq: torch.full((1, 3, lq.shape[-2] * 4, lq.shape[-1] * 4), float("inf")), "inf-model",
                    ["set5"], 4, metrics=("psnr",), progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_fails_before_scoring(data_root: Path, tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code = main(["--baseline", "bicubic", "--datasets", "set5", "--scale", "4", "--out", str(locked / "r")])
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in capsys.readouterr().err


def test_an_output_path_that_is_a_file_fails_before_scoring(data_root: Path, tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from benchmarks.scoring import cli

    def never(*args, **kwargs):  # scoring must not start
        raise AssertionError("scored before checking the output folder")

    monkeypatch.setattr(cli, "score_trial", never)
    code = main(["--baseline", "bicubic", "--datasets", "set5", "--scale", "4", "--out", str(blocker / "r")])
    assert code == 2 and "not writable" in capsys.readouterr().err


def _full_disk(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_a_full_disk_while_saving_images_is_named_and_loses_nothing(data_root: Path, tmp_path: Path, capsys,
                                                                    monkeypatch) -> None:
    from benchmarks.scoring import scorers

    out = tmp_path / "scores"
    args = ["--baseline", "bicubic", "--datasets", "set5", "--scale", "4", "--out", str(out), "--metrics", "psnr"]
    assert main(args) == 0  # an earlier run's tables
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    saved: list[Path] = []

    def disk_fills_after_two(img, path, **options) -> None:
        if len(saved) == 2:
            _full_disk(path)
        saved.append(Path(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"png")

    monkeypatch.setattr(scorers, "save_image", disk_fills_after_two)
    code = main([*args, "--save-images"])
    err = capsys.readouterr().err
    assert code == 1, err  # the input was fine: the run failed
    assert "Traceback" not in err and "No space left on device" in err
    assert str(out / "images/bicubic/set5/bird.png") in err  # the file that could not be written
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # tables untouched
    assert all(p.read_bytes() == b"png" for p in saved)  # images saved before it are kept


def test_a_full_disk_while_writing_tables_is_named(data_root: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "scores"
    args = ["--baseline", "bicubic", "--datasets", "set5", "--scale", "4", "--out", str(out), "--metrics", "psnr"]
    assert main(args) == 0
    before = (out / "scores.parquet").read_bytes()
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _full_disk)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert str(out / "scores.parquet") in err and "No space left on device" in err and "unchanged" in err
    assert (out / "scores.parquet").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_score_trial_raises_a_named_output_error(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    """What sweeps and studies get: an `OutputError` (a `ResultsError`) naming the file, not PIL's OSError."""
    from benchmarks.scoring import scorers
    from benchmarks.scoring.evaluate import baseline
    from results.io import ResultsError

    monkeypatch.setattr(scorers, "save_image", lambda img, path, **options: _full_disk(path))
    with pytest.raises(scorers.OutputError, match=r"images/t/set5/baby.png: could not be written") as err:
        score_trial(baseline("bicubic", 4), "t", ["set5"], 4, metrics=("psnr",), save_images=["baby"],
                    images_dir=tmp_path / "images", progress=False)
    assert isinstance(err.value, ResultsError)
