"""NIQE's 18 block features at one scale (Mittal et al. 2013, sec. III-B; the release's `computefeature`), the
numbers of pyiqa's `compute_feature` (pyiqa.archs.niqe_arch), computed faster:

- the five AGGD fits of a scale (the MSCN coefficients, then their products with the horizontal, vertical and two
  diagonal neighbours) run as one batch instead of five calls;
- x^2 is computed once per fit and masked, instead of squaring each masked copy;
- the moment-matching table (rho(gamma) for gamma = 0.2, 0.201, ..., 10: 3 x 9801 log-gamma values) is built once
  per process, dtype and device instead of once per fit, and compared with every fit by broadcasting instead of
  copying it once per block.

Every operation is pyiqa's own, on the same values in the same order per block: the features are equal to
pyiqa's bit for bit on the CPU (tests/benchmarks/test_bench_scoring_fast.py checks it on benchmark images).
"""

from __future__ import annotations

from functools import lru_cache

import torch

# (row, column) shifts of the pairwise products: horizontal, vertical, main and secondary diagonal
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@lru_cache(maxsize=8)
def _gamma_table(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(gamma, rho(gamma)): the candidate shape parameters and their moment ratio Gamma(2/g)^2 / (Gamma(1/g)
    Gamma(3/g)), built as pyiqa builds them (a float32 range widened to the input's dtype)."""
    gam = torch.arange(0.2, 10 + 0.001, 0.001, dtype=torch.float32).to(dtype=dtype, device=device)
    r_gam = (2 * torch.lgamma(2.0 / gam) - (torch.lgamma(1.0 / gam) + torch.lgamma(3.0 / gam))).exp()
    return gam, r_gam


def aggd_params(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha, beta_l, beta_r) of an asymmetric generalised Gaussian fitted to each (1, h, w) item of (N, 1, h, w)
    by moment matching, each (N,): pyiqa's `estimate_aggd_param`."""
    gam, r_gam = _gamma_table(x.dtype, x.device)
    mask_left, mask_right = x < 0, x > 0
    count_left = mask_left.sum(dim=(-1, -2), dtype=torch.float32)
    count_right = mask_right.sum(dim=(-1, -2), dtype=torch.float32)
    # x^2 once: (x * mask)^2 is x^2 * mask exactly (x^2 or 0), so the sums are pyiqa's, bit for bit
    square = x.pow(2)
    left_std = torch.sqrt((square * mask_left).sum(dim=(-1, -2)) / count_left)  # (N, 1)
    right_std = torch.sqrt((square * mask_right).sum(dim=(-1, -2)) / count_right)
    gammahat = left_std / right_std
    rhat = x.abs().mean(dim=(-1, -2)).pow(2) / square.mean(dim=(-1, -2))
    rhatnorm = (rhat * (gammahat.pow(3) + 1) * (gammahat + 1)) / (gammahat.pow(2) + 1).pow(2)
    alpha = gam[(r_gam - rhatnorm).abs().argmin(dim=-1)]  # (N, 9801) by broadcasting: the nearest ratio
    spread = (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).exp().sqrt()
    return alpha, left_std.squeeze(-1) * spread, right_std.squeeze(-1) * spread


def block_features(block: torch.Tensor, *_: object) -> torch.Tensor:
    """(N, 18) features of N blocks of MSCN coefficients (N, 1, h, w): pyiqa's `compute_feature` (no IL-NIQE);
    usable as pyiqa `blockproc`'s `fun`."""
    n = block.shape[0]
    aggd = block[:, [0]]
    products = [aggd * torch.roll(aggd, shift, dims=(2, 3)) for shift in SHIFTS]
    alpha, beta_l, beta_r = (p.reshape(5, n) for p in aggd_params(torch.cat([aggd, *products])))
    feat = [alpha[0], (beta_l[0] + beta_r[0]) / 2]
    for i in range(1, 5):
        mean = (beta_r[i] - beta_l[i]) * (torch.lgamma(2 / alpha[i]) - torch.lgamma(1 / alpha[i])).exp()  # Eq. 8
        feat += [alpha[i], mean, beta_l[i], beta_r[i]]
    return torch.cat([f.reshape(n, 1) for f in feat], dim=1)
