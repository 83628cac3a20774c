"""NIQE (Mittal et al. 2013), pyiqa's `niqe`, no-reference, lower is better, on the PIRM 2018 protocol:

    niqe(sr, *, crop=scale, params=load_niqe_params())  -> (B,) float64

The protocol follows the PIRM 2018 self-validation code (github.com/roimehrez/PIRM2018, utils/calc_scores.m at
d1d7dd0b and evaluate_results.m), whose scores defined the challenge's perceptual index: Y of MATLAB's `rgb2ycbcr` on
the 8-bit image (BT.601 16-235, rounded to integers), `shave_width` 4 px (= the x4 scale; here `crop`, the scale by
default) shaved from every border, 96x96 blocks without overlap, the original release's pristine model
(`modelparameters.mat`). pyiqa's own default Y is YIQ full range; BasicSR's `calculate_niqe` also uses BT.601 Y.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.scoring.psnr_ssim import PEAK, single_thread_on_cpu, to_u8_scale
from benchmarks.scoring.weights import NIQE_PYIQA, SEED_HINT, MetricUnavailable

log = logging.getLogger(__name__)

NIQE_BLOCK = 96  # px, no overlap: Mittal et al.'s release, PIRM 2018's `computequality` call, pyiqa's default
NIQE_MIN_BLOCKS = 2  # the model fits a covariance over the blocks: one block gives none
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
    from benchmarks.scoring.datasets import data_root as resolve_root

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
    features are pyiqa's, computed batched (`benchmarks.scoring.niqe_features`: equal bit for bit). Raises
    ValueError (`niqe_problem`) for an image with fewer than two blocks."""
    from pyiqa.matlab_utils import blockproc, imresize, nancov, nanmean
    from pyiqa.utils.color_util import to_y_channel

    from benchmarks.scoring.niqe_features import block_features

    if img.dim() == 3:
        img = img[None]
    problem = niqe_problem(*img.shape[-2:], crop=crop)
    if problem:
        raise ValueError(problem)
    with single_thread_on_cpu(img.device):
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
