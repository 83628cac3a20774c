"""The metrics with the papers' protocol, one import for all of them, and the protocol itself (`protocol()`, written
into every results folder so each number says how it was made):

    psnr(sr, gt, *, crop=scale)  -> (B,) float64 dB                        PSNR and SSIM on Y: `psnr_ssim`
    ssim(sr, gt, *, crop=scale)  -> (B,) float64
    psnr_ssim(sr, gt, *, crop=scale) -> both, sharing the quantisation and colour conversion
    psnr_ssim_against(sr, reference(gt, crop=scale)) -> the same, the HR side computed once for many SR images
    learned_score(sr, gt, *, net=load_learned("lpips", device=...))  -> (B,) float64    LPIPS, other pyiqa FR: `learned`
    niqe(sr, *, crop=scale, params=load_niqe_params())  -> (B,) float64, lower is better    no-reference: `niqe`

Each is a pure function on torch tensors, so a whole batch is scored on the CPU or GPU without leaving the device. A
metric whose weights are missing raises `MetricUnavailable` (`weights`: the files, their caches, `prefetch`). What each
metric's number means (direction, range, whether it needs weights) is the project's table `results.schema.METRICS`.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.scoring.learned import describe_lpips_weights, learned_score, load_learned, load_lpips
from benchmarks.scoring.niqe import (
    NIQE_BLOCK,
    NIQE_DATA_FILE,
    NIQE_MIN_BLOCKS,
    NiqeParams,
    describe_niqe,
    load_niqe_params,
    niqe,
    niqe_problem,
)
from benchmarks.scoring.psnr_ssim import (
    COLORS,
    PEAK,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    Color,
    Reference,
    psnr,
    psnr_ssim,
    psnr_ssim_against,
    reference,
    ssim,
    to_u8_scale,
)
from benchmarks.scoring.weights import (
    ALEXNET,
    ALEXNET_FILE,
    ALEXNET_URL,
    LPIPS_HEADS,
    LPIPS_HEADS_FILE,
    LPIPS_HEADS_URL,
    NIQE_MAT_URL,
    NIQE_PYIQA,
    MetricUnavailable,
)

__all__ = ["ALEXNET", "COLORS", "LPIPS_HEADS", "NIQE_BLOCK", "NIQE_DATA_FILE", "NIQE_MIN_BLOCKS", "NIQE_PYIQA", "PEAK",
           "Color", "MetricUnavailable", "NiqeParams", "Reference", "describe_lpips_weights", "learned_score",
           "load_learned", "load_lpips", "load_niqe_params", "niqe", "niqe_problem", "protocol", "psnr", "psnr_ssim",
           "psnr_ssim_against", "reference", "ssim", "to_u8_scale"]


def protocol(*, color: Color = "ycbcr_bt601", crop: int | None = None, lpips_weights: str | None = None,
             data_root: str | Path | None = None) -> dict:
    """The measuring protocol as a dict, written into run.json so every number says how it was made.

    NIQE's entry names the parameter file it reads here (`data_root` as scoring resolves it), with its sha256."""
    y_formula = {
        "ycbcr_bt601": "Y = 16 + 65.481 R + 128.553 G + 24.966 B (BT.601, 16-235; RGB in [0, 1])",
        "yiq": "Y = 255 (0.299 R + 0.587 G + 0.114 B) (YIQ luma, full range, pyiqa default)",
        "rgb": "none: R, G, B channels scored (mean MSE over channels; SSIM averaged over channels)",
    }[color]
    return {
        "color": color,
        "y_formula": y_formula,
        "y_rounding": "none (float64, 0..255 scale)",
        "quantisation": "SR clamped to [0, 1] and rounded to 8 bits before scoring; HR read as 8-bit",
        "crop_border": "scale" if crop is None else crop,
        "psnr": {"peak": PEAK, "dtype": "float64"},
        "ssim": {"window": f"{SSIM_WINDOW}x{SSIM_WINDOW} Gaussian", "sigma": SSIM_SIGMA, "k1": SSIM_K1,
                 "k2": SSIM_K2, "region": "valid (no padding)", "dtype": "float64",
                 "filter": "separable (two 1-D passes)"},
        "lpips": {"variant": "AlexNet v0.1 (pyiqa 'lpips')", "inputs": "[0, 1], 8-bit quantised",
                  "weights": lpips_weights or "not loaded",
                  "files": {ALEXNET_FILE: ALEXNET_URL, LPIPS_HEADS_FILE: LPIPS_HEADS_URL}},
        "niqe": {
            "variant": "pyiqa 'niqe' (Mittal et al. 2013, the original release's pristine model); no-reference, "
                       "lower is better",
            "input": "SR quantised to 8 bits; Y = BT.601 16-235 (as above) rounded to integers, as MATLAB's "
                     "rgb2ycbcr on uint8 (pyiqa's default YIQ is not used)",
            "crop_border": "scale" if crop is None else crop,
            "blocks": f"{NIQE_BLOCK}x{NIQE_BLOCK}, no overlap, partial blocks dropped; two scales (the second a "
                      f"MATLAB bicubic x0.5 with antialiasing); at least {NIQE_MIN_BLOCKS} blocks, else null",
            "local_normalisation": "7x7 Gaussian (sigma 7/6), replicate padding, as 49 shifted float64 sums",
            "source": "PIRM 2018 self-validation code: github.com/roimehrez/PIRM2018 utils/calc_scores.m at "
                      "d1d7dd0b (rgb2ycbcr Y, computequality 96x96 blocks, modelparameters.mat) and "
                      "evaluate_results.m (shave_width = 4 at x4)",
            "params": describe_niqe(data_root=data_root),
            "param_sources": [f"TORCH_HOME/hub/{NIQE_PYIQA.relpath} ({NIQE_MAT_URL})",
                              f"$ENHANCE_DATA/{NIQE_DATA_FILE.as_posix()}"],
        },
        "reference": "bicubic Set5 x4: 28.42 dB / 0.8104 (papers' tables)",
    }

