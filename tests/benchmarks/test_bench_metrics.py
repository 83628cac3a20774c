"""PSNR/SSIM against the numpy/scipy reference and the papers' bicubic numbers; pyiqa's Y; LPIPS."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from benchmarks.scoring import metrics
from benchmarks.scoring.datasets import load_pairs
from benchmarks.scoring.evaluate import baseline, evaluate_model, missing_reasons, score_trial
from benchmarks.scoring.reference import psnr_y_reference, ssim_y_reference
from srgan.images import load_image, load_image_u8
from srgan.resize import imresize


def _u8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float -> (H, W, 3) uint8, quantised exactly as the metrics quantise."""
    return img.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dataset,image", [("Set5", "img_002"), ("Set14", "img_003")])  # bird; bridge (gray)
def test_psnr_ssim_equal_reference(data_root: Path, scale: int, dataset: str, image: str) -> None:
    folder = data_root / dataset / f"image_SRF_{scale}"
    gt = load_image(folder / f"{image}_SRF_{scale}_HR.png")
    lq = load_image(folder / f"{image}_SRF_{scale}_LR.png")
    sr = imresize(lq, scale=scale)
    sr_u8, gt_u8 = _u8(sr), load_image_u8(folder / f"{image}_SRF_{scale}_HR.png").permute(1, 2, 0).numpy()
    assert float(metrics.psnr(sr[None], gt[None], crop=scale)) == pytest.approx(
        psnr_y_reference(sr_u8, gt_u8, scale), abs=1e-6)
    assert float(metrics.ssim(sr[None], gt[None], crop=scale)) == pytest.approx(
        ssim_y_reference(sr_u8, gt_u8, scale), abs=1e-6)


def test_bridge_is_grayscale_and_scored(data_root: Path) -> None:
    # the Set14 image the reference test uses really is an 8-bit grayscale file; the loader makes it RGB
    for scale in (2, 3, 4):
        path = data_root / f"Set14/image_SRF_{scale}/img_003_SRF_{scale}_HR.png"
        assert torchvision.io.decode_png(torchvision.io.read_file(str(path))).shape[0] == 1
        assert load_image_u8(path).shape[0] == 3


def test_batch_equals_one_by_one() -> None:
    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 3, 40, 44, generator=gen)
    sr = (gt + 0.05 * torch.randn(gt.shape, generator=gen)).clamp(0, 1)
    batch_p, batch_s = metrics.psnr(sr, gt, crop=2), metrics.ssim(sr, gt, crop=2)
    for i in range(3):
        assert batch_p[i] == metrics.psnr(sr[i : i + 1], gt[i : i + 1], crop=2)[0]
        assert float(batch_s[i]) == pytest.approx(float(metrics.ssim(sr[i : i + 1], gt[i : i + 1], crop=2)[0]),
                                                  abs=1e-12)
    assert batch_p.dtype == batch_s.dtype == torch.float64
    both = metrics.psnr_ssim(sr, gt, crop=2)
    assert torch.equal(both[0], batch_p) and torch.equal(both[1], batch_s)
    assert torch.get_num_threads() == threads  # the single-thread scoring context restores the setting


def test_identical_images() -> None:
    img = torch.rand(1, 3, 32, 32)
    assert math.isinf(float(metrics.psnr(img, img, crop=2)))
    assert float(metrics.ssim(img, img, crop=2)) == pytest.approx(1.0, abs=1e-12)


def test_bicubic_set5_x4_matches_papers(data_root: Path) -> None:
    scores = evaluate_model(baseline("bicubic", 4), ["set5"], 4, metrics=("psnr", "ssim"), progress=False)
    assert scores.height == 5
    assert scores["psnr"].mean() == pytest.approx(28.42, abs=0.05)
    assert scores["ssim"].mean() == pytest.approx(0.8104, abs=0.002)
    assert scores["lpips"].null_count() == 5  # not requested: null, never a number


def test_pyiqa_psnr_is_yiq_full_range(data_root: Path) -> None:
    """pyiqa's Y-channel PSNR is ours with color="yiq"; the paper convention reads 20 log10(255/219) higher.

    Why that constant: BT.601's weights are 219/255 times YIQ's (65.481 = 219 x 0.299, 128.553 = 219 x 0.587,
    24.966 = 219 x 0.114) and its offset 16 cancels in a difference, so every Y difference shrinks by 219/255, the
    MSE by (219/255)^2, and PSNR = 10 log10(255^2 / MSE) grows by 20 log10(255/219), whatever the images."""
    import pyiqa

    pair = load_pairs("set5", 4)[1]
    sr = metrics.to_u8_scale(imresize(pair.lq[None], scale=4)).float() / 255  # 8-bit SR, as we score it
    gt = pair.gt[None]
    crop = 4
    pyiqa_psnr = pyiqa.create_metric("psnr", test_y_channel=True, crop_border=crop, device="cpu")
    theirs = float(pyiqa_psnr(sr.double(), gt.double()))
    ours_yiq = float(metrics.psnr(sr, gt, crop=crop, color="yiq"))
    ours_paper = float(metrics.psnr(sr, gt, crop=crop))
    assert ours_yiq == pytest.approx(theirs, abs=1e-4)  # pyiqa adds eps=1e-8 to the MSE
    assert ours_paper - ours_yiq == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)  # 1.32 dB
    assert metrics.protocol(color="yiq")["color"] == "yiq"


def test_rgb_option_is_recorded_and_differs(data_root: Path) -> None:
    pair = load_pairs("set5", 4)[0]
    sr = imresize(pair.lq[None], scale=4)
    rgb, y = metrics.psnr(sr, pair.gt[None], crop=4, color="rgb"), metrics.psnr(sr, pair.gt[None], crop=4)
    assert float(rgb) < float(y)
    assert "R, G, B" in metrics.protocol(color="rgb")["y_formula"]
    with pytest.raises(ValueError, match="unknown color"):
        metrics.psnr(sr, pair.gt[None], crop=4, color="lab")  # type: ignore[arg-type]


def _seed_random_lpips_cache(home: Path) -> None:
    """Random AlexNet + random heads in the standard cache layout: the real loading path, untrained numbers."""
    torch.manual_seed(0)
    backbone = torchvision.models.alexnet(weights=None).state_dict()
    metrics.ALEXNET.cache_path(home / "hub").parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone, metrics.ALEXNET.cache_path(home / "hub"))
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate([64, 192, 384, 256, 256])}
    metrics.LPIPS_HEADS.cache_path(home / "hub").parent.mkdir(parents=True, exist_ok=True)
    torch.save(heads, metrics.LPIPS_HEADS.cache_path(home / "hub"))


def test_lpips_identical_is_zero_through_pyiqa(offline: Path) -> None:
    _seed_random_lpips_cache(offline)
    net = metrics.load_lpips(device="cpu")
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 64, 64, generator=gen), torch.rand(2, 3, 64, 64, generator=gen)
    same = metrics.learned_score(a, a, net=net)
    assert same.shape == (2,) and torch.equal(same, torch.zeros(2, dtype=torch.float64))
    assert (metrics.learned_score(a, b, net=net) > 0).all()


def test_lpips_rejects_wrong_heads(offline: Path) -> None:
    _seed_random_lpips_cache(offline)
    torch.save({"something": torch.zeros(1)}, metrics.LPIPS_HEADS.cache_path(offline / "hub"))
    with pytest.raises(metrics.MetricUnavailable, match="not LPIPS AlexNet heads"):
        metrics.load_lpips(device="cpu")


def test_lpips_missing_weights_is_null_with_reason(offline: Path, data_root: Path) -> None:
    scores, summary = score_trial(baseline("bicubic", 4), "bicubic", ["set5"], 4, progress=False)
    assert scores["lpips"].null_count() == scores.height == 5
    assert scores["psnr"].mean() == pytest.approx(28.42, abs=0.05)  # PSNR/SSIM intact
    reason = summary["lpips_missing"][0]
    assert "benchmarks.prefetch" in reason and "TORCH_HOME" in reason and "alex" in reason.lower()
    assert missing_reasons(summary) == {"lpips": reason}
    assert not metrics.LPIPS_HEADS.cache_path(offline / "hub").exists()
