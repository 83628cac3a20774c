"""NIQE's wiring: where its parameters come from, that our number is pyiqa's `niqe` with the same file, that it
moves the right way, and that a missing or bad parameter file gives a null with its reason, never a number.

pyiqa reads its parameters from a MATLAB .mat file (`mu_prisparam`, `cov_prisparam`, the release's names); the
shared data ships the same values as BasicSR's .npz. The tests write the .npz's arrays into a .mat, so pyiqa's
own metric and ours read one set of values."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.io
import torch
import torchvision.transforms.functional as TF

from benchmarks.evaluate import main
from benchmarks.scoring import metrics
from benchmarks.scoring.datasets import load_pairs
from benchmarks.scoring.evaluate import baseline, missing_reasons, score_trial
from results import schema
from srgan.images import save_image
from srgan.resize import imresize


def _published_sha256(data_root: Path) -> str:
    """The checksum `pretrained/WEIGHTS.tsv` publishes for the NIQE file (independent of our loader)."""
    with open(data_root / "pretrained" / "WEIGHTS.tsv", newline="") as f:
        rows = {r["file"]: r["sha256"] for r in csv.DictReader(f, delimiter="\t")}
    return rows["niqe/niqe_pris_params.npz"]


def _mat_from_npz(data_root: Path, dest: Path) -> Path:
    """The data root's parameters as the .mat pyiqa reads (the release's key names)."""
    with np.load(data_root / metrics.NIQE_DATA_FILE) as npz:
        dest.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(dest, {"mu_prisparam": npz["mu_pris_param"], "cov_prisparam": npz["cov_pris_param"]})
    return dest


def _u8(img: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) on the 8-bit grid as float64 in [0, 1]: the image both implementations get."""
    return metrics.to_u8_scale(img).div(255)


def test_parameters_come_from_the_data_root_when_pyiqa_cache_is_empty(offline: Path, data_root: Path) -> None:
    assert not metrics.NIQE_PYIQA.cache_path().exists()  # TORCH_HOME is an empty folder in tmp_path
    params = metrics.load_niqe_params()
    assert params.source == "data root" and params.path == data_root / "pretrained/niqe/niqe_pris_params.npz"
    assert params.sha256 == _published_sha256(data_root) == hashlib.sha256(params.path.read_bytes()).hexdigest()
    assert params.mu.shape == (36,) and params.cov.shape == (36, 36) and params.mu.dtype == torch.float64
    assert torch.allclose(params.cov, params.cov.T)  # a covariance


def test_pyiqa_cache_is_preferred_when_present(offline: Path, data_root: Path) -> None:
    cached = _mat_from_npz(data_root, metrics.NIQE_PYIQA.cache_path())
    assert cached == offline / "hub/pyiqa/niqe_modelparameters.mat"  # where pyiqa itself downloads it
    params = metrics.load_niqe_params(data_root=data_root)
    assert params.source == "pyiqa cache" and params.path == cached
    assert params.sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    with np.load(data_root / metrics.NIQE_DATA_FILE) as npz:
        assert np.array_equal(params.mu.numpy(), npz["mu_pris_param"].ravel())
        assert np.array_equal(params.cov.numpy(), npz["cov_pris_param"])


@pytest.mark.parametrize("dataset,image", [("set5", "bird"), ("set14", "bridge")])  # bridge is grayscale
def test_value_equals_pyiqa_niqe_with_the_same_file(offline: Path, data_root: Path, dataset: str,
                                                    image: str) -> None:
    import pyiqa

    cached = _mat_from_npz(data_root, metrics.NIQE_PYIQA.cache_path())
    pair = next(p for p in load_pairs(dataset, 4) if p.name == image)
    for img in (pair.gt[None], imresize(pair.lq[None], scale=4)):  # the HR, and a bicubic SR
        x = _u8(img)
        ours = float(metrics.niqe(img, crop=4, params=metrics.load_niqe_params()))
        theirs = pyiqa.create_metric("niqe", device="cpu", color_space="ycbcr", crop_border=4,
                                     pretrained_model_path=str(cached))
        assert ours == pytest.approx(float(theirs(x)), abs=1e-6)
        # pyiqa's default Y (YIQ) gives another number: the comparison above would catch a wrong colour space
        default = pyiqa.create_metric("niqe", device="cpu", crop_border=4, pretrained_model_path=str(cached))
        assert abs(ours - float(default(x))) > 1e-3


def test_a_batch_equals_one_by_one(data_root: Path) -> None:
    params = metrics.load_niqe_params()
    gt = load_pairs("set5", 4)[0].gt[None]  # baby, 504x504
    crops = torch.cat([gt[..., :240, :240], gt[..., 240:480, 240:480], gt[..., :240, 240:480]])
    batch = metrics.niqe(crops, crop=4, params=params)
    assert batch.shape == (3,) and batch.dtype == torch.float64
    for i in range(3):
        assert float(batch[i]) == pytest.approx(float(metrics.niqe(crops[i : i + 1], crop=4, params=params)), abs=1e-9)


@pytest.mark.parametrize("image", ["baby", "butterfly"])
def test_a_blurred_image_scores_worse(data_root: Path, image: str) -> None:
    params = metrics.load_niqe_params()
    gt = next(p for p in load_pairs("set5", 4) if p.name == image).gt[None]
    sharp = float(metrics.niqe(gt, crop=4, params=params))
    blurred = [float(metrics.niqe(TF.gaussian_blur(gt, [13, 13], [s, s]), crop=4, params=params)) for s in (1.0, 2.5)]
    assert 0 < sharp < min(blurred)  # lower is better (NIQE need not grow with sigma on 4 blocks: not asked)


def test_too_small_an_image_is_refused_with_the_reason(data_root: Path) -> None:
    params = metrics.load_niqe_params()
    assert metrics.niqe_problem(200, 100, crop=4) is not None  # 192x92 after the crop: 0 whole columns
    assert metrics.niqe_problem(104, 300, crop=4) is None  # 96x292: one row of 3 blocks
    assert metrics.niqe_problem(112, 112, crop=8) is not None  # 96x96: one block, no covariance
    assert metrics.niqe_problem(200, 104, crop=4) is None  # 192x96: two blocks
    with pytest.raises(ValueError, match=r"100x200 px holds 0 whole 96x96"):
        metrics.niqe(torch.rand(1, 3, 200, 100), crop=4, params=params)


def _tiny_set(root: Path, size: tuple[int, int]) -> Path:
    """A DIV2K-layout set of two random HR images (LR made from them), in tmp_path."""
    for i, name in enumerate(["0801", "0802"]):
        img = torch.rand(3, *size, generator=torch.Generator().manual_seed(i))
        save_image(img, root / "DIV2K/DIV2K_valid_HR" / f"{name}.png")
    return root


def test_a_missing_parameter_file_gives_null_with_its_reason(offline: Path, tmp_path: Path) -> None:
    root = _tiny_set(tmp_path / "data", (208, 208))  # no pretrained/niqe/ under this root
    with pytest.raises(metrics.MetricUnavailable) as err:
        metrics.load_niqe_params(data_root=root)
    message = str(err.value)
    assert str(root / metrics.NIQE_DATA_FILE) in message and str(metrics.NIQE_PYIQA.cache_path()) in message
    scores, summary = score_trial(baseline("bicubic", 4), "bicubic", ["div2k"], 4, data_root=root,
                                  metrics=("psnr", "niqe"), progress=False)
    assert scores["niqe"].null_count() == 2 and scores["psnr"].is_finite().all()  # PSNR intact
    assert summary["niqe"].to_list() == [None] and summary["niqe_missing"][0] == message
    assert missing_reasons(summary)["niqe"] == message
    protocol = metrics.protocol(crop=4, data_root=root)["niqe"]
    assert protocol["params"] == {"missing": message}


def test_images_too_small_for_niqe_are_null_and_named(offline: Path, data_root: Path, tmp_path: Path) -> None:
    _mat_from_npz(data_root, metrics.NIQE_PYIQA.cache_path())  # parameters present: only the size is wrong
    root = _tiny_set(tmp_path / "data", (48, 40))
    scores, summary = score_trial(baseline("bicubic", 4), "bicubic", ["div2k"], 4, data_root=root,
                                  metrics=("psnr", "niqe"), progress=False)
    assert scores["niqe"].null_count() == 2
    reason = summary["niqe_missing"][0]
    assert "div2k/0801" in reason and "div2k/0802" in reason and "NIQE needs at least 2" in reason


def test_bad_parameter_files_are_named(offline: Path, data_root: Path, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    cached = metrics.NIQE_PYIQA.cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a mat file")
    with caplog.at_level(logging.WARNING, logger="benchmarks.scoring.niqe"):
        params = metrics.load_niqe_params()  # the unusable cache is passed over, and said
    assert params.source == "data root" and str(cached) in caplog.text
    cached.unlink()
    root = tmp_path / "root"
    bad = root / metrics.NIQE_DATA_FILE
    bad.parent.mkdir(parents=True)
    np.savez(bad, mu_pris_param=np.zeros(18), cov_pris_param=np.eye(18))
    with pytest.raises(metrics.MetricUnavailable, match=r"niqe_pris_params.npz: NIQE parameters of the wrong shape"):
        metrics.load_niqe_params(data_root=root)
    np.savez(bad, mu=np.zeros(36))
    with pytest.raises(metrics.MetricUnavailable, match=r"needs arrays 'mu_pris_param' and 'cov_pris_param'"):
        metrics.load_niqe_params(data_root=root)


def test_the_results_record_the_parameter_file(offline: Path, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--baseline", "bicubic", "--datasets", "set5", "--scale", "4", "--out", str(out),
                 "--metrics", "psnr,niqe"]) == 0
    niqe = json.loads((out / schema.RUN_FILE).read_text())["protocol"]["niqe"]
    assert niqe["params"]["file"] == "niqe_pris_params.npz" and niqe["params"]["source"] == "data root"
    assert niqe["params"]["sha256"] == _published_sha256(data_root)
    assert niqe["crop_border"] == 4 and "PIRM2018" in niqe["source"] and "16-235" in niqe["input"]
    scores = pl.read_parquet(out / schema.SCORES_FILE)
    assert scores["niqe"].is_finite().all() and scores.height == 5
    summary = pl.read_parquet(out / schema.SUMMARY_FILE)
    assert summary["niqe"][0] == pytest.approx(scores["niqe"].mean()) and summary["niqe_missing"][0] is None
    assert schema.METRICS["niqe"].full_reference is False and not schema.METRICS["niqe"].higher_is_better
    assert schema.METRICS["psnr"].full_reference is True
