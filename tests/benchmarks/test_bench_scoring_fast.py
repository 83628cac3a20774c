"""The faster scoring path gives the numbers of the straightforward one: NIQE's batched block features equal
pyiqa's bit for bit, PSNR/SSIM against a precomputed HR side equal `psnr_ssim`, and a model scored through the
per-process benchmark images (`benchmarks.scoring.prepared`) scores what a per-image computation from the files
gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from benchmarks.scoring import datasets as ds
from benchmarks.scoring import evaluate, prepared
from benchmarks.scoring import metrics as M
from benchmarks.scoring.niqe import _mscn
from benchmarks.scoring.niqe_features import block_features
from srgan.generator import srresnet
from srgan.images import save_image
from srgan.resize import imresize
from srgan.upscale import upscale


@pytest.fixture(autouse=True)
def fresh_images():
    prepared.clear()
    yield
    prepared.clear()


def _mscn_levels(img: torch.Tensor, crop: int = 4) -> list[torch.Tensor]:
    """The MSCN coefficients NIQE extracts blocks from, at both scales (as `metrics.niqe` computes them)."""
    from pyiqa.matlab_utils import imresize as matlab_imresize
    from pyiqa.utils.color_util import to_y_channel

    y = to_y_channel(M.to_u8_scale(img) / M.PEAK, M.PEAK, "ycbcr")[..., crop:-crop, crop:-crop]
    h, w = y.shape[-2:]
    y = y[..., : h - h % M.NIQE_BLOCK, : w - w % M.NIQE_BLOCK]
    half = matlab_imresize(y / M.PEAK, scale=0.5, antialiasing=True) * M.PEAK
    return [_mscn(y), _mscn(half)]


@pytest.mark.parametrize("dataset,image", [("set5", "baby"), ("set5", "bird"), ("set14", "bridge"),
                                           ("set14", "comic")])
def test_niqe_block_features_equal_pyiqas_bit_for_bit(data_root: Path, dataset: str, image: str) -> None:
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc

    pair = next(p for p in ds.load_pairs(dataset, 4) if p.name == image)
    for img in (pair.gt[None], imresize(pair.lq[None], scale=4).clamp(0, 1)):  # an HR, and a bicubic SR
        for level, mscn in enumerate(_mscn_levels(img), start=1):
            size = M.NIQE_BLOCK // level
            theirs = blockproc(mscn, [size, size], fun=compute_feature)
            ours = blockproc(mscn, [size, size], fun=block_features)
            assert ours.shape == theirs.shape and ours.shape[-1] == 18 and ours.shape[1] >= 2
            assert torch.equal(ours, theirs)


@pytest.mark.parametrize("color", M.COLORS)
def test_psnr_ssim_against_a_reference_equals_psnr_ssim(color: str) -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 40, 36, generator=g)
    reference = M.reference(gt, crop=3, color=color)
    for sr in (gt.clamp(0, 1), (gt + 0.05 * torch.randn(gt.shape, generator=g)).clamp(0, 1), torch.rand(2, 3, 40, 36)):
        psnr, ssim = M.psnr_ssim(sr, gt, crop=3, color=color)
        fast_psnr, fast_ssim = M.psnr_ssim_against(sr, reference)
        assert torch.equal(fast_psnr, psnr) and torch.equal(fast_ssim, ssim)
    with pytest.raises(ValueError, match="differ in shape"):
        M.psnr_ssim_against(torch.rand(1, 3, 40, 36), reference)


def _straightforward(model: torch.nn.Module, dataset: str, root: Path, params: M.NiqeParams) -> dict[str, tuple]:
    """Each image read from its files, upscaled and scored on its own: (psnr, ssim, niqe) per image name."""
    out = {}
    for pair in ds.load_pairs(dataset, 4, root):
        sr = upscale(model, pair.lq[None], 4, tile=evaluate.DEFAULT_TILE)
        psnr, ssim = M.psnr_ssim(sr, pair.gt[None], crop=4)
        out[pair.name] = (float(psnr[0]), float(ssim[0]), float(M.niqe(sr, crop=4, params=params)[0]))
    return out


def test_scores_through_the_shared_images_equal_a_per_image_computation(data_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = srresnet(scale=4, num_features=8, num_blocks=1, norm="none").eval()
    root = tmp_path / "data"
    shutil.copytree(data_root / "Set5", root / "Set5")
    shutil.copytree(data_root / "pretrained", root / "pretrained")
    params = M.load_niqe_params(data_root=root)
    expected = _straightforward(model, "set5", root, params)
    for _ in range(2):  # the second model of a process reads nothing again
        scores = evaluate.evaluate_model(model, ["set5"], 4, data_root=root, metrics=("psnr", "ssim", "niqe"),
                                         progress=False)
        got = {r["image"]: (r["psnr"], r["ssim"], r["niqe"]) for r in scores.iter_rows(named=True)}
        assert got == expected  # equal, not close
    # a file changed in between is read again: the scores follow it
    hr = next((root / "Set5" / "GTmod12").glob("baby.*"))
    save_image(torch.flip(ds.load_pairs("set5", 4, root)[0].gt, dims=(-1,)), hr)
    changed = evaluate.evaluate_model(model, ["set5"], 4, data_root=root, metrics=("psnr", "ssim", "niqe"),
                                      progress=False)
    baby = changed.filter(changed["image"] == "baby").row(0, named=True)
    assert (baby["psnr"], baby["ssim"], baby["niqe"]) == _straightforward(model, "set5", root, params)["baby"]
    assert baby["psnr"] != expected["baby"][0]


def test_warm_up_reads_what_scoring_then_uses(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluate.warm_up(["set5"], 4, data_root=data_root)

    def read_again(*args, **kwargs):
        raise AssertionError("scoring read the benchmark files again after the warm-up")

    monkeypatch.setattr(ds, "load_pairs", read_again)
    scores = evaluate.evaluate_model(evaluate.baseline("bicubic", 4), ["set5"], 4, data_root=data_root,
                                     progress=False)
    assert scores.height == 5 and scores["psnr"].mean() == pytest.approx(28.42, abs=0.05)
