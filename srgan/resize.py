"""MATLAB-compatible bicubic `imresize` (antialiased downscale, as the papers made their LR images) and its
batched form for training batches on any device."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- MATLAB-compatible imresize


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic kernel with a = -0.5 (MATLAB's `cubic`)."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=256)
def _resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """Dense (out_len, in_len) float64 matrix equal to MATLAB's `contributions` for the bicubic kernel.

    Downscaling with antialiasing widens the kernel by 1/scale; out-of-range taps are mirrored
    (symmetric padding), which folds their weights back onto edge pixels."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # (out, taps), 1-based
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if (scale < 1 and antialias) else _cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # symmetric padding: index sequence 1..n, n..1 repeated
    mirror = torch.cat([torch.arange(in_len), torch.arange(in_len - 1, -1, -1)])
    src = mirror[torch.remainder(idx.long() - 1, 2 * in_len)]
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    matrix.scatter_add_(1, src, weights)
    return matrix


def imresize(img: torch.Tensor, *, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> torch.Tensor:
    """MATLAB `imresize(img, scale, 'bicubic')` on float tensors (..., C, H, W); no clamping or rounding.

    Exactly one of `scale` (e.g. 1/4) or `size` (H, W) is given. Like MATLAB, the dimension with the smaller
    scale factor is resized first (height first on ties). Computed in float64 for float64 input,
    otherwise in float32."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    h, w = img.shape[-2:]
    if size is None:
        out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
        scale_h = scale_w = float(scale)
    else:
        out_h, out_w = size
        scale_h, scale_w = out_h / h, out_w / w
    dtype = torch.float64 if img.dtype == torch.float64 else torch.float32
    out = img.to(dtype)
    order = sorted([(scale_h, 0), (scale_w, 1)])
    for s, dim in order:
        if dim == 0:
            m = _resize_matrix(h, out_h, s, antialias).to(dtype=dtype, device=img.device)
            out = torch.matmul(m, out)  # (..., out_h, W)
        else:
            m = _resize_matrix(w, out_w, s, antialias).to(dtype=dtype, device=img.device)
            out = torch.matmul(out, m.T)  # (..., H', out_w)
    return out


def bicubic_downscale(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """The papers' LR: MATLAB bicubic with antialiasing of the (mod-cropped) HR."""
    return imresize(gt, scale=1.0 / scale)


def naive_downscale(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """Torch bicubic without antialiasing: aliased LR, as made by quick first experiments (v1)."""
    squeeze = gt.dim() == 3
    x = gt[None] if squeeze else gt
    out = F.interpolate(x, scale_factor=1.0 / scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return out[0] if squeeze else out



@lru_cache(maxsize=64)
def _device_resize_matrix(in_len: int, out_len: int, scale: float, device: torch.device) -> torch.Tensor:
    """`_resize_matrix` on `device`, copied there once: a per-batch copy from pageable memory would make the
    host wait for the device."""
    return _resize_matrix(in_len, out_len, scale, True).to(device=device)


def matlab_downscale_batch(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """`bicubic_downscale` of images (..., C, H, W) with the matrices cached on their device, height first as
    `imresize`. Computed in float64 (a few MFLOP per batch), returned as float32: the LR then does not depend
    on the device, the batch size's GEMM kernels or a TF32 matmul setting (only on rounding at the 8-bit grid's
    half steps, which float64 makes vanishingly rare)."""
    h, w = gt.shape[-2:]
    rows = _device_resize_matrix(h, math.ceil(h / scale), 1.0 / scale, gt.device)
    cols = _device_resize_matrix(w, math.ceil(w / scale), 1.0 / scale, gt.device)
    return torch.matmul(torch.matmul(rows, gt.double()), cols.T).float()


