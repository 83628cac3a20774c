"""Coverage of the study's intervals, by simulation from a known model: `python tests/results/simulate_intervals.py`.

Each simulated study draws paired differences d[s, i] = mu + u[s] + v[i] + e[s, i] (training seed x image, the
model `results.stats` assumes) and asks the method whether its 95 % interval excludes zero. Under mu = 0 the
share that does is the false-positive rate (nominal 5 %); under mu != 0 it is the power. Both the study's
method (`results.stats.seed_image_t`, the function `results.study_comparisons` calls) and the percentile bootstrap
the study used before it (`former_paired_bootstrap`, kept here only to measure it) go through the same draws.
tests/results/test_results_stats.py asserts the rates; this script prints them (the note's before/after table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from results import stats


@dataclass(frozen=True)
class Regime:
    name: str
    sd_seed: float  # u: shared by every image of a seed
    sd_image: float  # v: shared by every seed of an image
    sd_resid: float  # e
    mu: float = 0.0  # the true difference
    n_images: int = 5


SEED_DOMINATED = Regime("null, seed-dominated", sd_seed=0.3, sd_image=0.0, sd_resid=0.05)
IMAGE_DOMINATED = Regime("null, image-dominated", sd_seed=0.01, sd_image=0.3, sd_resid=0.05)
POWER = Regime("power: +1.5 dB, seed-dominated", sd_seed=0.3, sd_image=0.0, sd_resid=0.05, mu=1.5)
N_STUDIES = 1000


def draw_studies(regime: Regime, n_seeds: int, *, n_studies: int = N_STUDIES,
                 seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(a, b) grids of `n_studies` studies; b is an image's difficulty (the same on both sides, so it cancels)."""
    rng = np.random.default_rng([seed, n_seeds, int(regime.mu * 100), int(regime.sd_image * 100)])
    studies = []
    for _ in range(n_studies):
        base = rng.normal(28.0, 2.0, (1, regime.n_images)).repeat(n_seeds, axis=0)
        diff = (regime.mu + rng.normal(0, regime.sd_seed, (n_seeds, 1))
                + rng.normal(0, regime.sd_image, (1, regime.n_images))
                + rng.normal(0, regime.sd_resid, (n_seeds, regime.n_images)))
        studies.append((base + diff, base))
    return studies


def new_method_excludes_zero(a: np.ndarray, b: np.ndarray) -> bool:
    result = stats.seed_image_t(a, b)
    return bool(result is not None and result.excludes_zero)


def rate(studies: list[tuple[np.ndarray, np.ndarray]],
         excludes_zero: Callable[[np.ndarray, np.ndarray], bool]) -> float:
    return float(np.mean([excludes_zero(a, b) for a, b in studies]))


def former_paired_bootstrap(a: np.ndarray, b: np.ndarray, *, n_resamples: int = 2000, seed: int = 0,
                            ci: float = 0.95) -> tuple[float, float]:
    """The interval `results.study.paired_bootstrap` gave before the t interval replaced it: a percentile
    bootstrap that draws seeds and images with replacement (`rng.integers(0, S, (R, S))`, then
    `rng.integers(0, I, (R, I))`) and takes `np.quantile` of the drawn grids' means. Complete grids only."""
    diff = a - b
    n_seeds, n_images = diff.shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, (n_resamples, n_seeds))
    image_draws = rng.integers(0, n_images, (n_resamples, n_images))
    means = diff[seed_draws[:, :, None], image_draws[:, None, :]].mean(axis=(1, 2))
    low, high = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def bootstrap_excludes_zero(a: np.ndarray, b: np.ndarray) -> bool:
    low, high = former_paired_bootstrap(a, b)
    return low > 0 or high < 0


CASES = [(SEED_DOMINATED, 3), (SEED_DOMINATED, 5), (SEED_DOMINATED, 10), (IMAGE_DOMINATED, 3),
         (IMAGE_DOMINATED, 5), (IMAGE_DOMINATED, 10), (POWER, 3)]


def main() -> None:
    print(f"share of {N_STUDIES} simulated studies (3..10 seeds x 5 images) whose 95 % interval excludes 0")
    print("| regime | seeds | former percentile bootstrap | seed x image t (results.stats) |")
    print("|---|---|---|---|")
    for regime, n_seeds in CASES:
        studies = draw_studies(regime, n_seeds)
        print(f"| {regime.name} | {n_seeds} | {rate(studies, bootstrap_excludes_zero):.1%} "
              f"| {rate(studies, new_method_excludes_zero):.1%} |")
    # Beyond the regimes: 2 seeds, and a seed-dominated difference with some image variance, where
    # Satterthwaite's df (estimated from the same mean squares) is known to run a little liberal.
    for regime, n_seeds in [(SEED_DOMINATED, 2), (IMAGE_DOMINATED, 2),
                            (Regime("null, seed 0.3 + image 0.1", 0.3, 0.1, 0.05), 2),
                            (Regime("null, seed 0.3 + image 0.1", 0.3, 0.1, 0.05), 3),
                            (Regime("null, seed x image interaction only", 0.0, 0.0, 0.3), 3)]:
        studies = draw_studies(regime, n_seeds)
        print(f"| {regime.name} | {n_seeds} | {rate(studies, bootstrap_excludes_zero):.1%} "
              f"| {rate(studies, new_method_excludes_zero):.1%} |")


if __name__ == "__main__":
    main()
