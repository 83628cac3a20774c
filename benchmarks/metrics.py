"""Metrics with the papers' protocol: PSNR and SSIM on Y, LPIPS (AlexNet v0.1) through pyiqa (full-reference),
and NIQE, pyiqa's `niqe` (no-reference, PIRM 2018's protocol).

One entry point per metric, each a pure function on torch tensors, so a whole batch is scored on the CPU or
GPU without leaving the device:

    psnr(sr, gt, *, crop=scale)  -> (B,) float64 dB
    ssim(sr, gt, *, crop=scale)  -> (B,) float64
    psnr_ssim(sr, gt, *, crop=scale) -> both, sharing the quantisation and colour conversion
    psnr_ssim_against(sr, reference(gt, crop=scale)) -> the same, the HR side computed once for many SR images
    learned_score(sr, gt, *, net=load_learned("lpips", device=...))  -> (B,) float64 (LPIPS, other pyiqa FR)
    niqe(sr, *, crop=scale, params=load_niqe_params())  -> (B,) float64, lower is better

What each metric's number means (direction, range, whether it needs weights) is the project's table
`results.schema.METRICS`.

The protocol (see `protocol()`, written into every results folder):
  - images are quantised to 8 bits first (SR is clamped to [0, 1] and rounded, as a saved PNG would be);
  - Y of BT.601 YCbCr, 16-235 range: Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1], kept
    unrounded in float64 on the 0..255 scale (BasicSR / skimage convention), peak 255;
  - `crop` pixels (the scale) removed from every border;
  - SSIM: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid region only (no padding), mean of the map.

`color="yiq"` gives pyiqa's default Y (0.299 R + 0.587 G + 0.114 B, full range), which reads 20 log10(255/219)
= 1.32 dB lower; `color="rgb"` scores the three channels (BasicSR's shipped configs). Both are recorded by name.

NIQE follows the PIRM 2018 self-validation code (github.com/roimehrez/PIRM2018, utils/calc_scores.m at d1d7dd0b
and evaluate_results.m), whose scores defined the challenge's perceptual index: Y of MATLAB's `rgb2ycbcr` on the
8-bit image (BT.601 16-235, rounded to integers), `shave_width` 4 px (= the x4 scale; here `crop`, the scale
by default) shaved from every border, 96x96 blocks without overlap, the original release's pristine model
(`modelparameters.mat`). pyiqa's own default Y is YIQ full range; BasicSR's `calculate_niqe` also uses BT.601 Y.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import re
import urllib.error
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

Color = Literal["ycbcr_bt601", "yiq", "rgb"]
COLORS: tuple[str, ...] = ("ycbcr_bt601", "yiq", "rgb")

# Y weights per colour convention, for RGB on the 0..255 scale (so Y is on 0..255 too).
_Y_WEIGHTS = {
    "ycbcr_bt601": ((65.481, 128.553, 24.966), 16.0),  # ITU-R BT.601, studio range 16..235 (MATLAB rgb2ycbcr)
    "yiq": ((0.299 * 255, 0.587 * 255, 0.114 * 255), 0.0),  # NTSC YIQ luma, full range (pyiqa's default)
}
PEAK = 255.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03

# LPIPS AlexNet v0.1: the ImageNet backbone (torchvision's hub cache) and the linear heads (pyiqa's cache).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
LPIPS_HEADS_FILE = "LPIPS_v0.1_alex-df73285e.pth"
LPIPS_HEADS_URL = f"https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{LPIPS_HEADS_FILE}"
SEED_HINT = ("seed the cache on a machine with internet: `python -m benchmarks.prefetch --cache DIR`, copy DIR "
             "over and set TORCH_HOME=DIR")


class MetricUnavailable(RuntimeError):
    """A metric whose weights are neither cached nor downloadable; the message says what is missing."""


# ------------------------------------------------------------------------------------------- PSNR / SSIM


def to_u8_scale(img: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float in [0, 1] or uint8 -> float64 on 0..255, quantised to the 8-bit grid."""
    if img.dtype == torch.uint8:
        return img.to(torch.float64)
    # rounded in the input's own dtype, exactly as `srgan.images.save_image` writes a PNG, then widened
    return img.detach().clamp(0, 1).mul(PEAK).round().to(torch.float64)


def to_y(img_255: torch.Tensor, *, color: Color = "ycbcr_bt601") -> torch.Tensor:
    """(B, 3, H, W) float64 RGB on 0..255 -> (B, 1, H, W) Y on 0..255; "rgb" returns the input unchanged."""
    if color == "rgb":
        return img_255
    if color not in _Y_WEIGHTS:
        raise ValueError(f"unknown color {color!r}; choose one of {', '.join(COLORS)}")
    (wr, wg, wb), offset = _Y_WEIGHTS[color]
    rgb = img_255 / PEAK  # the formula is defined for RGB in [0, 1]
    y = rgb[:, 0:1] * wr
    y.add_(rgb[:, 1:2], alpha=wg).add_(rgb[:, 2:3], alpha=wb)
    return y.add_(offset)


@contextmanager
def _single_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run CPU scoring on one intra-op thread, restoring the setting after.

    The work is ~50 memory-bound elementwise float64 ops per image; splitting each across threads adds a
    barrier per op, which measured 13x slower than one thread on a shared 2-core machine (other processes
    busy) and gains little on an idle one. GPU work is unaffected."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check(sr: torch.Tensor, gt_shape: torch.Size, crop: int) -> None:
    if sr.shape != gt_shape:
        raise ValueError(f"sr {tuple(sr.shape)} and gt {tuple(gt_shape)} differ in shape")
    if sr.shape[1] != 3:
        raise ValueError(f"expected RGB (B, 3, H, W) images, got {tuple(sr.shape)}")
    h, w = sr.shape[-2:]
    if crop < 0 or 2 * crop >= min(h, w):
        raise ValueError(f"crop {crop} leaves nothing of a {h}x{w} image")


def _cropped_y(img: torch.Tensor, crop: int, color: Color) -> torch.Tensor:
    y = to_y(to_u8_scale(img), color=color)
    return y[..., crop:-crop, crop:-crop] if crop else y


def _prepare(sr: torch.Tensor, gt: torch.Tensor, crop: int, color: Color) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.dim() == 3:
        sr, gt = sr[None], gt[None]
    _check(sr, gt.shape, crop)
    return _cropped_y(sr, crop, color), _cropped_y(gt, crop, color)


def psnr(sr: torch.Tensor, gt: torch.Tensor, *, crop: int, color: Color = "ycbcr_bt601") -> torch.Tensor:
    """PSNR in dB per image of a (B, 3, H, W) batch (float in [0, 1] or uint8), float64, peak 255."""
    with _single_thread_on_cpu(sr.device):
        sr_y, gt_y = _prepare(sr, gt, crop, color)
        mse = (sr_y - gt_y).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(PEAK**2 / mse)  # identical images give +inf, as they should


@lru_cache(maxsize=8)
def _gaussian_1d(device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()  # the 2-D window is the outer product: separable, normalised to sum 1


def _filter_valid(x: torch.Tensor) -> torch.Tensor:
    """11x11 Gaussian filtering of (..., H, W), valid region only, as two 1-D passes (float64).

    Each pass is a weighted sum of 11 shifted views: plain vectorised multiply-adds, which run ~50x faster
    than float64 `conv2d` on the CPU (no oneDNN path for double) and are just as fast on the GPU."""
    g = _gaussian_1d(x.device).tolist()
    n = SSIM_WINDOW
    h, w = x.shape[-2:]
    rows = x[..., 0 : h - n + 1, :] * g[0]
    for k in range(1, n):
        rows.add_(x[..., k : h - n + 1 + k, :], alpha=g[k])  # in place: no temporaries per tap
    out = rows[..., 0 : w - n + 1] * g[0]
    for k in range(1, n):
        out.add_(rows[..., k : w - n + 1 + k], alpha=g[k])
    return out


def ssim(sr: torch.Tensor, gt: torch.Tensor, *, crop: int, color: Color = "ycbcr_bt601") -> torch.Tensor:
    """Mean SSIM per image of a (B, 3, H, W) batch, float64 (for "rgb", the mean over the three channels)."""
    with _single_thread_on_cpu(sr.device):
        return _ssim(*_prepare(sr, gt, crop, color))


def psnr_ssim(sr: torch.Tensor, gt: torch.Tensor, *, crop: int,
              color: Color = "ycbcr_bt601") -> tuple[torch.Tensor, torch.Tensor]:
    """Both metrics from one quantisation and colour conversion (what `evaluate` uses)."""
    with _single_thread_on_cpu(sr.device):
        sr_y, gt_y = _prepare(sr, gt, crop, color)
        mse = (sr_y - gt_y).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(PEAK**2 / mse), _ssim(sr_y, gt_y)


@dataclass(frozen=True)
class Reference:
    """The HR side of `psnr_ssim`, computed once for scoring many SR images against one HR batch (every model of a
    sweep on the same benchmark image): its cropped Y and its two SSIM local statistics. `psnr_ssim_against` with
    it gives `psnr_ssim`'s numbers bit for bit (the same operations on the same values)."""

    shape: torch.Size  # the HR batch's (B, 3, H, W)
    crop: int
    color: Color
    y: torch.Tensor  # (B, C, h, w) float64: cropped Y (C = 3 for "rgb")
    mu: torch.Tensor  # (B * C, 1, h - 10, w - 10): the Gaussian-filtered Y
    sq: torch.Tensor  # the same, of Y squared


def reference(gt: torch.Tensor, *, crop: int, color: Color = "ycbcr_bt601") -> Reference:
    """The `Reference` of a (B, 3, H, W) HR batch (float in [0, 1] or uint8)."""
    gt = gt[None] if gt.dim() == 3 else gt
    _check(gt, gt.shape, crop)
    with _single_thread_on_cpu(gt.device):
        y = _cropped_y(gt, crop, color)
        b, c, h, w = y.shape
        _ssim_size(h, w)
        flat = y.reshape(b * c, 1, h, w)
        mu, sq = _filter_valid(torch.cat([flat, flat * flat])).chunk(2)
    return Reference(gt.shape, crop, color, y, mu, sq)


def psnr_ssim_against(sr: torch.Tensor, ref: Reference) -> tuple[torch.Tensor, torch.Tensor]:
    """`psnr_ssim(sr, gt, crop=ref.crop, color=ref.color)` with the HR side taken from `reference(gt)`."""
    sr = sr[None] if sr.dim() == 3 else sr
    _check(sr, ref.shape, ref.crop)
    with _single_thread_on_cpu(sr.device):
        sr_y = _cropped_y(sr, ref.crop, ref.color)
        mse = (sr_y - ref.y).pow(2).mean(dim=(1, 2, 3))
        return 10 * torch.log10(PEAK**2 / mse), _ssim(sr_y, ref.y, ref_stats=(ref.mu, ref.sq))


def _ssim_size(h: int, w: int) -> None:
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px after the crop, got {h}x{w}")


def _ssim(x: torch.Tensor, y: torch.Tensor, *,
          ref_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    b, c, h, w = x.shape
    _ssim_size(h, w)
    x, y = x.reshape(b * c, 1, h, w), y.reshape(b * c, 1, h, w)
    if ref_stats is None:  # the five local statistics in one filtering pass: (5 * B * C, 1, H, W)
        mu_x, mu_y, xx, yy, xy = _filter_valid(torch.cat([x, y, x * x, y * y, x * y])).chunk(5)
    else:  # y's two were filtered once (`reference`): the filter works per image, so they are the same values
        mu_y, yy = ref_stats
        mu_x, xx, xy = _filter_valid(torch.cat([x, x * x, x * y])).chunk(3)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(b, c, -1).mean(dim=2).mean(dim=1)


# ------------------------------------------------------------------------------------ LPIPS and pyiqa FR


@dataclass(frozen=True)
class WeightFile:
    """A pretrained file the project can use: where it comes from and where the standard cache keeps it."""

    name: str
    url: str
    relpath: str  # relative to torch.hub.get_dir() (TORCH_HOME/hub)

    def cache_path(self, hub_dir: str | Path | None = None) -> Path:
        return Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / self.relpath


ALEXNET = WeightFile("torchvision AlexNet (ImageNet) for LPIPS", ALEXNET_URL, f"checkpoints/{ALEXNET_FILE}")
LPIPS_HEADS = WeightFile("LPIPS v0.1 AlexNet linear heads (pyiqa)", LPIPS_HEADS_URL, f"pyiqa/{LPIPS_HEADS_FILE}")


def _lpips_pip_heads() -> Path | None:
    """The heads that ship inside the `lpips` wheel, if that package is installed."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    return path if path.is_file() else None


def fetch_weight(weight: WeightFile, *, hub_dir: str | Path | None = None) -> Path:
    """Download one weight file into the cache (atomic: torch writes a temp file and renames it)."""
    path = weight.cache_path(hub_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(weight.url, str(path), progress=False)
    return path


def _ensure(weight: WeightFile, *, download: bool) -> Path:
    path = weight.cache_path()
    if path.is_file():
        return path
    reason = "download disabled"
    if download:
        try:
            return fetch_weight(weight)
        except (urllib.error.URLError, OSError, ValueError, RuntimeError) as err:
            reason = f"download failed: {err}"
    raise MetricUnavailable(f"{weight.name} not in the cache ({path}) and {reason}; {SEED_HINT}")


# Failed loads are remembered per process, so a sweep of many trials tries the network once, not per trial.
_UNAVAILABLE: dict[str, str] = {}


def load_lpips(*, device: str | torch.device = "cpu", download: bool = True) -> nn.Module:
    """pyiqa's LPIPS (AlexNet, v0.1) with weights from the standard caches; raises `MetricUnavailable`.

    The heads are loaded here with `weights_only=True` (pyiqa itself unpickles them with weights_only=False)."""
    if "lpips" in _UNAVAILABLE:
        raise MetricUnavailable(_UNAVAILABLE["lpips"])
    import pyiqa

    try:
        heads = _lpips_pip_heads() or _ensure(LPIPS_HEADS, download=download)
        _ensure(ALEXNET, download=download)  # torchvision then loads it from the cache without the network
    except MetricUnavailable as err:
        _UNAVAILABLE["lpips"] = str(err)
        raise
    metric = pyiqa.create_metric("lpips", device=torch.device(device), pretrained=False)
    state = torch.load(heads, map_location="cpu", weights_only=True)
    # pyiqa's file and the lpips wheel name the heads lin0..lin4 (pyiqa's module also lists them as lins.N)
    state = {re.sub(r"^lins\.(\d)\.", r"lin\1.", k.removeprefix("module.")): v for k, v in state.items()}
    wanted = [k for k in metric.net.state_dict() if re.match(r"^lin\d\.", k)]
    absent = [k for k in wanted if k not in state]
    if absent:
        raise MetricUnavailable(f"{heads}: not LPIPS AlexNet heads (missing {', '.join(absent)})")
    metric.net.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return metric.eval()


def load_pyiqa_metric(name: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """Any other pyiqa full-reference metric by its pyiqa name; raises `MetricUnavailable` without weights."""
    if name in _UNAVAILABLE:
        raise MetricUnavailable(_UNAVAILABLE[name])
    import pyiqa

    if name not in pyiqa.list_models(metric_mode="FR"):
        raise ValueError(f"unknown full-reference metric {name!r}; pyiqa knows: {', '.join(pyiqa.list_models('FR'))}")
    try:
        return pyiqa.create_metric(name, device=torch.device(device)).eval()
    except (urllib.error.URLError, OSError, ValueError, RuntimeError) as err:
        _UNAVAILABLE[name] = (f"pyiqa {name} weights unavailable ({type(err).__name__}: {err}); create the metric "
                              f"once on a machine with internet (pyiqa caches it under TORCH_HOME/hub/pyiqa), copy "
                              f"that TORCH_HOME over and set TORCH_HOME")
        raise MetricUnavailable(_UNAVAILABLE[name]) from None


def learned_score(sr: torch.Tensor, gt: torch.Tensor, *, net: nn.Module) -> torch.Tensor:
    """A learned metric's score per image (LPIPS, or any pyiqa FR metric) on 8-bit-quantised (B, 3, H, W)
    images in [0, 1], as float64. The network takes [0, 1] inputs: pyiqa's LPIPS rescales to [-1, 1] itself."""
    with torch.no_grad():
        score = net(to_u8_scale(sr).float() / PEAK, to_u8_scale(gt).float() / PEAK)
    return score.reshape(-1).to(torch.float64)


def load_learned(name: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """The network of a learned metric: LPIPS from the standard caches, else pyiqa's metric of that name."""
    return load_lpips(device=device) if name == "lpips" else load_pyiqa_metric(name, device=device)


# ------------------------------------------------------------------------------------------ NIQE (no-reference)

NIQE_BLOCK = 96  # px, no overlap: Mittal et al.'s release, PIRM 2018's `computequality` call, pyiqa's default
NIQE_MIN_BLOCKS = 2  # the model fits a covariance over the blocks: one block gives none
NIQE_MAT_FILE = "niqe_modelparameters.mat"
NIQE_MAT_URL = f"https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{NIQE_MAT_FILE}"
# pyiqa's own copy of the release's `modelparameters.mat`, where pyiqa downloads it (TORCH_HOME/hub/pyiqa/)
NIQE_PYIQA = WeightFile("NIQE pristine model (pyiqa's copy of the original release)", NIQE_MAT_URL,
                        f"pyiqa/{NIQE_MAT_FILE}")
# the same values as a numpy file under the data root (basicsr 1.4.2's niqe_pris_params.npz, Apache-2.0)
NIQE_DATA_FILE = Path("pretrained") / "niqe" / "niqe_pris_params.npz"
NIQE_FEATURES = 36  # 18 AGGD features at each of the two scales
# (mu key, cov key) per file type: MATLAB's names in the .mat, BasicSR's in the .npz
_NIQE_KEYS = {".mat": ("mu_prisparam", "cov_prisparam"), ".npz": ("mu_pris_param", "cov_pris_param")}


@dataclass(frozen=True)
class NiqeParams:
    """NIQE's pristine-image model (a multivariate Gaussian over the 36 block features) and the file it came from."""

    mu: torch.Tensor  # (36,) float64
    cov: torch.Tensor  # (36, 36) float64
    path: Path
    sha256: str
    source: str  # "pyiqa cache" | "data root"

    def describe(self) -> dict:
        return {"file": self.path.name, "path": str(self.path), "sha256": self.sha256, "source": self.source}


def _read_mat(raw: bytes, *keys: str) -> list[np.ndarray | None]:
    import scipy.io  # MAT v5 holds arrays only: nothing in it is executed
    from scipy.io.matlab import MatReadError

    try:
        table = scipy.io.loadmat(io.BytesIO(raw))
    except MatReadError as err:
        raise ValueError(str(err)) from None
    return [table.get(k) for k in keys]


def _read_niqe_params(path: Path, source: str) -> NiqeParams:
    """Parse and check one parameter file (bytes hashed are the bytes parsed); raises `MetricUnavailable`."""
    mu_key, cov_key = _NIQE_KEYS[path.suffix]
    try:
        raw = path.read_bytes()
        if path.suffix == ".mat":
            mu, cov = _read_mat(raw, mu_key, cov_key)
        else:
            with np.load(io.BytesIO(raw), allow_pickle=False) as table:
                mu = table[mu_key] if mu_key in table.files else None
                cov = table[cov_key] if cov_key in table.files else None
    except (OSError, EOFError, ValueError, TypeError, zipfile.BadZipFile) as err:
        raise MetricUnavailable(f"{path}: not a readable NIQE parameter file ({type(err).__name__}: {err})") from None
    if mu is None or cov is None:
        raise MetricUnavailable(f"{path}: not a NIQE parameter file (needs arrays {mu_key!r} and {cov_key!r})")
    mu, cov = np.asarray(mu, dtype=np.float64).ravel(), np.asarray(cov, dtype=np.float64)
    if mu.shape != (NIQE_FEATURES,) or cov.shape != (NIQE_FEATURES, NIQE_FEATURES):
        raise MetricUnavailable(f"{path}: NIQE parameters of the wrong shape ({mu_key} {mu.shape}, {cov_key} "
                                f"{cov.shape}; expected {NIQE_FEATURES} and {NIQE_FEATURES}x{NIQE_FEATURES})")
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise MetricUnavailable(f"{path}: NIQE parameters hold non-finite values")
    return NiqeParams(torch.from_numpy(mu), torch.from_numpy(cov), path, hashlib.sha256(raw).hexdigest(), source)


def load_niqe_params(*, data_root: str | Path | None = None) -> NiqeParams:
    """NIQE's parameters: pyiqa's cache (TORCH_HOME/hub/pyiqa) when it holds them, else the data root's
    `pretrained/niqe/niqe_pris_params.npz`; neither: `MetricUnavailable` naming both places. A cached file that
    cannot be read is named in a warning and passed over. Nothing is downloaded (the data root ships the file)."""
    from benchmarks.datasets import data_root as resolve_root

    cached = NIQE_PYIQA.cache_path()
    problem = "no file there"
    if cached.is_file():
        try:
            return _read_niqe_params(cached, "pyiqa cache")
        except MetricUnavailable as err:
            problem = str(err)
            log.warning("NIQE: pyiqa's cached parameters are unusable, trying the data root: %s", err)
    local = resolve_root(data_root) / NIQE_DATA_FILE
    if local.is_file():
        return _read_niqe_params(local, "data root")
    raise MetricUnavailable(
        f"NIQE parameters not found: pyiqa's cache ({cached}: {problem}) and the data root ({local}: no file there); "
        f"point ENHANCE_DATA (or --data-root) at the shared data, which ships {NIQE_DATA_FILE}, or {SEED_HINT}")


def niqe_problem(height: int, width: int, *, crop: int) -> str | None:
    """Why an image of this size cannot be scored by NIQE (too few whole blocks after the crop), else None."""
    h, w = height - 2 * crop, width - 2 * crop
    blocks = max(h // NIQE_BLOCK, 0) * max(w // NIQE_BLOCK, 0)
    if blocks >= NIQE_MIN_BLOCKS:
        return None
    return (f"{width}x{height} px holds {blocks} whole {NIQE_BLOCK}x{NIQE_BLOCK} block(s) after the {crop}-px border "
            f"crop; NIQE needs at least {NIQE_MIN_BLOCKS}")


@lru_cache(maxsize=8)
def _niqe_window(device: torch.device) -> torch.Tensor:
    from pyiqa.matlab_utils import fspecial

    # pyiqa's 7x7 window, sigma 7/6 (the release's), built in float32 then widened exactly as pyiqa does
    return fspecial(7, 7.0 / 6, 1)[0, 0].to(device=device, dtype=torch.float64)


def _filter_replicate(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """MATLAB `imfilter(x, window, 'replicate')` on (..., H, W) float64, as a weighted sum of shifted views.

    The same window and padding as pyiqa's `imfilter`, whose float64 `conv2d` has no fast CPU path: this sum
    runs ~20x faster and equals it to ~1e-13 (summation order only)."""
    k = window.shape[-1]
    r = k // 2
    h, w = x.shape[-2:]
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    taps = window.tolist()
    out = padded[..., 0:h, 0:w] * taps[0][0]
    for i in range(k):
        for j in range(k):
            if i or j:
                out.add_(padded[..., i : i + h, j : j + w], alpha=taps[i][j])
    return out


def _mscn(y: torch.Tensor) -> torch.Tensor:
    """Mean-subtracted contrast-normalised coefficients (the release's local normalisation, C = 1)."""
    from pyiqa.archs.func_util import safe_sqrt

    b = y.shape[0]
    stats = _filter_replicate(torch.cat([y, y * y]), _niqe_window(y.device))  # local mean and mean of squares
    mu, mu_sq = stats[:b], stats[b:]
    return (y - mu) / (safe_sqrt((mu_sq - mu * mu).abs()) + 1)


def niqe(img: torch.Tensor, *, crop: int, params: NiqeParams) -> torch.Tensor:
    """NIQE per image of a (B, 3, H, W) batch (float in [0, 1] or uint8), float64; lower is better.

    pyiqa's `niqe` (its colour conversion, block features, MATLAB imresize, MVG fit) on the protocol's input:
    the 8-bit image's BT.601 Y rounded to integers, `crop` px shaved from every border, 96x96 blocks. The block
    features are pyiqa's, computed batched (`benchmarks.niqe_features`: equal bit for bit). Raises
    ValueError (`niqe_problem`) for an image with fewer than two blocks."""
    from pyiqa.matlab_utils import blockproc, imresize, nancov, nanmean
    from pyiqa.utils.color_util import to_y_channel

    from benchmarks.niqe_features import block_features

    if img.dim() == 3:
        img = img[None]
    problem = niqe_problem(*img.shape[-2:], crop=crop)
    if problem:
        raise ValueError(problem)
    with _single_thread_on_cpu(img.device):
        y = to_y_channel(to_u8_scale(img) / PEAK, PEAK, "ycbcr")  # rounded, as MATLAB's rgb2ycbcr on uint8
        if crop:
            y = y[..., crop:-crop, crop:-crop]
        h, w = y.shape[-2:]
        y = y[..., : h - h % NIQE_BLOCK, : w - w % NIQE_BLOCK]  # whole blocks only
        features = []
        for level in (1, 2):  # the image, then its half-size (MATLAB bicubic with antialiasing)
            block = NIQE_BLOCK // level
            features.append(blockproc(_mscn(y), [block, block], fun=block_features))
            if level == 1:
                y = imresize(y / PEAK, scale=0.5, antialiasing=True) * PEAK
        feats = torch.cat(features, dim=-1)  # (B, blocks, 36)
        diff = (params.mu.to(feats) - nanmean(feats, dim=1)).unsqueeze(1)  # (B, 1, 36)
        inv = torch.linalg.pinv((params.cov.to(feats) + nancov(feats)) / 2)
        return torch.bmm(torch.bmm(diff, inv), diff.transpose(1, 2)).reshape(-1).sqrt()


def describe_niqe(*, data_root: str | Path | None = None) -> dict:
    """The parameter file NIQE reads here (name, path, sha256, source), or why there is none."""
    try:
        return load_niqe_params(data_root=data_root).describe()
    except MetricUnavailable as err:
        return {"missing": str(err)}


# ---------------------------------------------------------------------------------------------- protocol


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


def describe_lpips_weights() -> str:
    """Where LPIPS weights were read from (for `protocol(lpips_weights=...)`)."""
    heads = _lpips_pip_heads() or LPIPS_HEADS.cache_path()
    return f"backbone {ALEXNET.cache_path()}, heads {heads}"
