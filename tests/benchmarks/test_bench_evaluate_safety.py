"""evaluate under faults: a model whose output is not finite is an error naming the image, never "ok" NaN
scores; an output folder that cannot be written fails before any scoring."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.evaluate import main, score_trial
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
    import benchmarks.evaluate as evaluate

    def never(*args, **kwargs):  # scoring must not start
        raise AssertionError("scored before checking the output folder")

    monkeypatch.setattr(evaluate, "score_trial", never)
    code = main(["--baseline", "bicubic", "--datasets", "set5", "--scale", "4", "--out", str(blocker / "r")])
    assert code == 2 and "not writable" in capsys.readouterr().err
