"""The statistics behind the study's verdicts, in numpy and the standard library (no scipy at run time).

**The interval** (`seed_image_t`). The paired differences `d[s, i] = a[s, i] - b[s, i]` of a comparison
(training seeds x benchmark images) are modelled as a two-way crossed random-effects layout,

    d[s, i] = mu + u[s] + v[i] + e[s, i],   u ~ N(0, var_seed), v ~ N(0, var_image), e ~ N(0, var_resid),

so the study's mean difference generalises to new training seeds *and* new images of the same kind; the
training seed is the unit of replication (Bouthillier et al. 2021, "Accounting for variance in machine learning
benchmarks", MLSys: the variation between training runs is the one a benchmark comparison must replicate). On a
complete S x I grid the grand mean has variance var_seed / S + var_image / I + var_resid / (S I), and the
ANOVA mean squares estimate it without bias:

    Var(mean) = (MS_seed + MS_image - MS_resid) / (S I)

(the expected mean squares of the balanced two-way random model without replication: Searle, Casella &
McCulloch 1992, *Variance Components*, ch. 4, balanced data). Each component is estimated by its ANOVA
(method-of-moments) estimator and a negative estimate is set to zero (the usual truncation, same source), which
can only widen the interval; Var(mean) is then the one the truncated components give (`implied`). The degrees of
freedom of that estimate are Satterthwaite's (1946, "An approximate distribution of estimates of variance
components", Biometrics Bulletin 2(6)) for a combination of mean squares, or the single mean square's own, and
the interval and the test are Student t with those degrees of freedom. At 3 seeds a seed-dominated difference
has about 2 degrees of freedom, so t(0.975) is about 4.3: that width is what 3 seeds support.

Coverage, measured (tests/results/simulate_intervals.py, 1,000 null studies of 5 images each): seed-dominated
(seed sd 0.3, residual 0.05) 3.4 % / 5.5 % / 6.1 % exclude zero at 3 / 5 / 10 seeds; image-dominated (image sd
0.3) 5.3 % at 3 seeds; a true +1.5 dB is found in 97 % at 3 seeds. Satterthwaite's df is estimated from the same
mean squares, which makes it a little liberal where a few-df seed term dominates and the image term is moderate
(6.4 % at 3 seeds; about 10 % at 2 seeds): use 3 seeds or more for a verdict.

No variation: when every pair differs by the same amount (to float rounding, `NO_VARIATION_RTOL`), the mean
squares are zero and the t statistic is 0/0 or d/0. No test applies: the result is the constant itself with a
zero-width interval and no p-value (a difference of exactly zero gets p = 1), and the study calls it "no variation"
rather than a verdict: these seeds and images say nothing about how the difference varies with others.

Missing cells: the mean-square identities need a complete grid, so the seed or image line with the largest
share of missing cells is dropped until the grid is complete (`complete_grid`). One image: the seeds' values
give a plain t interval over seeds (image-to-image variation cannot be measured). One seed: no seed-level
interval exists, and none is made.

**Power** (`mdd`, `seeds_needed`): the smallest true difference that the same t test detects with the given
power, from the exact non-central t distribution of the test statistic (Lenth 1989, "Algorithm AS 243:
cumulative distribution function of the non-central t distribution", Applied Statistics 38(1)), with the
variance and Satterthwaite degrees of freedom that the components imply for a design of S seeds x I images.

**Multiplicity** (`holm`): Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J. Stat.
6(2). **Probability of improvement** (`probability_of_improvement`): Agarwal et al. 2021, "Deep reinforcement
learning at the edge of the statistical precipice", NeurIPS, sec. 4 (rliable): P(X > Y) over all pairs of runs,
ties counting one half.

The t, beta and non-central t functions are written here (continued fraction of the incomplete beta: DLMF
8.17.22, evaluated with the modified Lentz method) and checked against scipy in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8
CI_LEVEL = 0.95
METHOD = "seed x image random effects (ANOVA), Satterthwaite t"
METHOD_ONE_IMAGE = "t over seeds (one image)"
NO_VARIATION_RTOL = 1e-12  # differences within this (relative to max(1, |mean|)) of their mean are one constant

# ----------------------------------------------------------------------------------- distributions


def betainc(a: float, b: float, x: float, *, y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1; `y` = 1 - x when the
    caller has it more precisely than 1 - x (x near 1)."""
    y = 1.0 - x if y is None else y
    if not (a > 0 and b > 0) or not 0.0 <= x <= 1.0 or not 0.0 <= y <= 1.0:
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    log_front = a * math.log(x) + b * math.log(y) - _log_beta(a, b)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use I_x(a, b) = 1 - I_y(b, a).
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction 1 / (1 + d1 / (1 + d2 / (1 + ...))) of I_x(a, b) (DLMF 8.17.22), modified Lentz."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    value = d
    for m in range(1, 10_000):
        for coeff in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                      -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + coeff * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + coeff / c
            c = c if abs(c) > tiny else tiny
            value *= c * d
        if abs(c * d - 1.0) < eps:
            return value
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom (any real df)."""
    if not df > 0:
        raise ValueError(f"t distribution needs df > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t), y=t * t / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t with `df` > 0 degrees of freedom: Newton steps kept inside a bracket."""
    if not 0 < q < 1:
        raise ValueError(f"quantile needs 0 < q < 1, got {q}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_ppf(1 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        low, high = high, high * 2
    x = (low + high) / 2
    for _ in range(200):
        error = t_cdf(x, df) - q
        if error > 0:
            high = x
        else:
            low = x
        step = error / _t_pdf(x, df)
        if abs(step) < 1e-14 * max(1.0, x) or high - low < 1e-15 * max(1.0, x):
            return x - step
        candidate = x - step
        x = candidate if low < candidate < high else (low + high) / 2
    return x


def _t_pdf(t: float, df: float) -> float:
    log_pdf = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
               - (df + 1) / 2 * math.log1p(t * t / df))
    return math.exp(log_pdf)


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def nct_cdf(t: float, df: float, nc: float) -> float:
    """P(T <= t) for the non-central t with `df` degrees of freedom and non-centrality `nc` (Lenth 1989, AS 243):

    for t >= 0, F = Phi(-nc) + 1/2 sum_j [p_j I_x(j + 1/2, df/2) + q_j I_x(j + 1, df/2)], x = t^2 / (t^2 + df),
    p_j = e^(-nc^2/2) (nc^2/2)^j / j!, q_j = nc e^(-nc^2/2) (nc^2/2)^j / (sqrt(2) Gamma(j + 3/2));
    the incomplete betas follow I_x(a + 1, b) = I_x(a, b) - x^a (1-x)^b / (a B(a, b))."""
    if not df > 0:
        raise ValueError(f"non-central t needs df > 0, got {df}")
    if t < 0:
        return 1.0 - nct_cdf(-t, df, -nc)
    if t == 0:
        return normal_cdf(-nc)
    if math.isinf(t):
        return 1.0
    x = t * t / (t * t + df)
    b = df / 2
    lam = nc * nc / 2
    log_x, log_1mx = math.log(x), math.log1p(-x)
    # j = 0 terms, then the recursion upwards; the Poisson weights sum to 1, so once j is past their mode and the
    # weight is negligible, the rest of the sum is too.
    i_half, i_one = betainc(0.5, b, x), betainc(1.0, b, x)
    total = 0.0
    for j in range(100_000):
        log_poisson = -lam + (j * math.log(lam) if lam > 0 else (0.0 if j == 0 else -math.inf)) - math.lgamma(j + 1)
        p = math.exp(log_poisson)
        q = (math.copysign(math.exp(-lam + (j * math.log(lam) if lam > 0 else 0.0) - math.lgamma(j + 1.5)), nc)
             * abs(nc) / math.sqrt(2)) if nc != 0 else 0.0
        total += p * i_half + q * i_one
        if j > lam and p < 1e-17 and abs(q) < 1e-17:
            break
        a_half, a_one = j + 0.5, j + 1.0
        i_half -= math.exp(a_half * log_x + b * log_1mx - _log_beta(a_half, b)) / a_half
        i_one -= math.exp(a_one * log_x + b * log_1mx - _log_beta(a_one, b)) / a_one
    return min(1.0, max(0.0, normal_cdf(-nc) + total / 2))


def t_test_power(nc: float, df: float, *, alpha: float = ALPHA) -> float:
    """The power of the two-sided t test at level alpha when the statistic is non-central t(df, nc)."""
    crit = t_ppf(1 - alpha / 2, df)
    return 1.0 - nct_cdf(crit, df, nc) + nct_cdf(-crit, df, nc)


def detectable_ncp(df: float, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """The non-centrality at which the two-sided t test at level alpha reaches `power` (bisection)."""
    if not 0 < alpha < 1 or not alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")
    low, high = 0.0, 1.0
    while t_test_power(high, df, alpha=alpha) < power:
        low, high = high, high * 2
    while high - low > 1e-12 * high:
        mid = (low + high) / 2
        if t_test_power(mid, df, alpha=alpha) < power:
            low = mid
        else:
            high = mid
    return (low + high) / 2


# ----------------------------------------------------------------------------------------- the interval


@dataclass(frozen=True)
class Components:
    """Variance components of the paired differences (variances, >= 0); None where the design cannot tell.

    With one image, `seed` holds the whole seed-to-seed variance of the seeds' values (the residual cannot be
    separated from it) and `image` and `resid` are None; with one seed, `seed` is None."""

    seed: float | None
    image: float | None
    resid: float | None

    def sd(self) -> tuple[float | None, float | None, float | None]:
        return tuple(None if v is None else math.sqrt(v) for v in (self.seed, self.image, self.resid))


@dataclass(frozen=True)
class Design:
    """What a design of S seeds x I images implies for the mean difference: its variance and the
    Satterthwaite degrees of freedom of that variance's estimate (None when it has no sampling variance)."""

    variance: float
    df: float | None


def implied(components: Components, n_seeds: int, n_images: int) -> Design | None:
    """The estimate of Var(mean) over an S x I grid and its Satterthwaite df; None without a seed-level estimate
    (fewer than 2 seeds, or a component the design needs that is unknown).

    The estimate is the one the truncated components give: with both seed and image components positive,
    (MS_seed + MS_image - MS_resid) / (S I) on Satterthwaite's df; with the image component at zero, MS_seed / (S I)
    on S - 1 df; with the seed component at zero, MS_image / (S I) on I - 1 df; with both, MS_resid / (S I) on
    (S - 1)(I - 1) df. From a study's own estimates this reproduces its interval exactly; from components given
    for planning it is what that design's estimate is expected to be."""
    S, I = n_seeds, n_images  # noqa: N806 (the layout's usual names)
    if S < 2 or I < 1 or components.seed is None:
        return None
    if I == 1:  # the seeds' values are the data: variance (seed + resid) / S on S - 1 df
        variance = (components.seed + (components.resid or 0.0)) / S
        return Design(variance, float(S - 1) if variance > 0 else None)
    if components.image is None or components.resid is None:
        return None
    # the expected mean squares of the balanced two-way layout (Searle et al. 1992, sec. 4.6)
    ms_seed = components.resid + I * components.seed
    ms_image = components.resid + S * components.image
    ms_resid = components.resid
    df_seed, df_image, df_resid = S - 1, I - 1, (S - 1) * (I - 1)
    if components.seed > 0 and components.image > 0:
        combined = ms_seed + ms_image - ms_resid
        df = combined ** 2 / (ms_seed ** 2 / df_seed + ms_image ** 2 / df_image + ms_resid ** 2 / df_resid)
    elif components.seed > 0:
        combined, df = ms_seed, df_seed
    elif components.image > 0:
        combined, df = ms_image, df_image
    else:
        combined, df = ms_resid, df_resid
    if combined <= 0:
        return Design(0.0, None)
    return Design(combined / (S * I), float(df))


def anova_components(diff: np.ndarray) -> Components:
    """ANOVA (method-of-moments) estimates of the components from a complete S x I grid, truncated at zero."""
    S, I = diff.shape  # noqa: N806
    if S < 1 or I < 1 or not np.isfinite(diff).all():
        raise ValueError(f"need a complete, finite grid, got shape {diff.shape}")
    seed_means, image_means, grand = diff.mean(axis=1), diff.mean(axis=0), diff.mean()
    if S == 1:
        var_images = float(diff.var(ddof=1)) if I > 1 else None  # image + residual, lumped
        return Components(None, var_images, None)
    if I == 1:
        return Components(float(diff[:, 0].var(ddof=1)), None, None)
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float range: the caller sees inf / NaN
        ms_seed = I * float(((seed_means - grand) ** 2).sum()) / (S - 1)
        ms_image = S * float(((image_means - grand) ** 2).sum()) / (I - 1)
        resid = diff - seed_means[:, None] - image_means[None, :] + grand
        ms_resid = float((resid ** 2).sum()) / ((S - 1) * (I - 1))
    return Components(max(0.0, (ms_seed - ms_resid) / I), max(0.0, (ms_image - ms_resid) / S), ms_resid)


def complete_grid(diff: np.ndarray) -> tuple[np.ndarray, list[int], list[int]]:
    """The complete sub-grid used for the interval, and the kept seed (row) and image (column) indices.

    Rows or columns without any value are removed; then, while a cell is missing, the line (seed or image) with
    the largest share of missing cells is removed: images before seeds on a tie (seeds are the scarce unit),
    then the first in order."""
    present = np.isfinite(diff)
    rows = [s for s in range(diff.shape[0]) if present[s].any()]
    cols = [i for i in range(diff.shape[1]) if present[:, i].any()]
    while rows and cols:
        sub = present[np.ix_(rows, cols)]
        if sub.all():
            break
        image_share = 1.0 - sub.mean(axis=0)
        seed_share = 1.0 - sub.mean(axis=1)
        if image_share.max() >= seed_share.max():
            del cols[int(np.argmax(image_share))]
        else:
            del rows[int(np.argmax(seed_share))]
    return diff[np.ix_(rows, cols)], rows, cols


@dataclass(frozen=True)
class SeedImageT:
    """The mean paired difference, its t interval and test over seeds x images."""

    mean_diff: float
    ci_low: float | None  # None: no seed-level interval (one seed)
    ci_high: float | None
    df: float | None
    p_value: float | None
    se: float | None
    components: Components
    n: int  # pairs used
    n_seeds: int
    n_images: int
    seeds: tuple[int, ...] = ()  # the input's row (seed) and column (image) indices the statistics use
    images: tuple[int, ...] = ()
    dropped_seeds: tuple[int, ...] = ()  # ... and those with pairs that were left out for missing cells
    dropped_images: tuple[int, ...] = ()
    method: str = METHOD

    @property
    def excludes_zero(self) -> bool | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def no_variation(self) -> bool:
        """Every pair differs by the same non-zero amount: no test applies, and there is no p-value."""
        return self.se == 0.0 and self.p_value is None


def seed_image_t(a: np.ndarray | Sequence, b: np.ndarray | Sequence, *, ci: float = CI_LEVEL) -> SeedImageT | None:
    """The mean of `a - b` over a (seeds, images) grid with its t interval and two-sided p-value (module
    docstring); NaN marks a missing value. None when no pair has both values."""
    if not 0 < ci < 1:
        raise ValueError(f"need 0 < ci < 1, got {ci}")
    a_grid, b_grid = _grid(a), _grid(b)
    if a_grid.shape != b_grid.shape:
        raise ValueError(f"a and b must have the same shape, got {a_grid.shape} and {b_grid.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        raw = a_grid - b_grid
    diff, rows, cols = complete_grid(raw)
    if diff.size == 0:
        return None
    kept_rows = set(rows)
    kept_cols = set(cols)
    present = np.isfinite(raw)
    dropped_seeds = tuple(s for s in range(raw.shape[0]) if s not in kept_rows and present[s].any())
    dropped_images = tuple(i for i in range(raw.shape[1]) if i not in kept_cols and present[:, i].any())
    S, I = diff.shape  # noqa: N806
    components = anova_components(diff)
    mean = float(diff.mean())
    design = implied(components, S, I)
    common = {"mean_diff": mean, "components": components, "n": S * I, "n_seeds": S, "n_images": I,
              "seeds": tuple(rows), "images": tuple(cols), "dropped_seeds": dropped_seeds,
              "dropped_images": dropped_images,
              "method": METHOD_ONE_IMAGE if I == 1 else METHOD}
    if design is None:
        return SeedImageT(ci_low=None, ci_high=None, df=None, p_value=None, se=None, **common)
    if not (math.isfinite(mean) and math.isfinite(design.variance) and (design.df is None or math.isfinite(design.df))):
        # values near the float range overflowed: the statistics are NaN, never a number (the study says why)
        return SeedImageT(ci_low=math.nan, ci_high=math.nan, df=math.nan, p_value=math.nan, se=math.nan, **common)
    tolerance = NO_VARIATION_RTOL * max(1.0, abs(mean))
    if design.df is None or float(np.max(np.abs(diff - mean))) <= tolerance:
        # no variation between the pairs (module docstring): a zero-width interval, no test; p = 1 for none at all
        return SeedImageT(ci_low=mean, ci_high=mean, df=None, p_value=1.0 if abs(mean) <= tolerance else None,
                          se=0.0, **common)
    se = math.sqrt(design.variance)
    half = t_ppf((1 + ci) / 2, design.df) * se
    t_stat = mean / se
    p_value = 2 * t_cdf(-abs(t_stat), design.df)
    return SeedImageT(ci_low=mean - half, ci_high=mean + half, df=design.df, p_value=min(1.0, p_value), se=se,
                      **common)


def _grid(values: np.ndarray | Sequence) -> np.ndarray:
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim == 1:
        grid = grid[None, :]
    if grid.ndim != 2:
        raise ValueError(f"paired values must be (seeds, images), got shape {grid.shape}")
    return grid


# ------------------------------------------------------------------------------------ power and planning


def mdd(components: Components, n_seeds: int, n_images: int, *, alpha: float = ALPHA,
        power: float = POWER) -> float | None:
    """The smallest true mean difference the two-sided t test (level alpha) detects with probability `power`
    in a study of `n_seeds` x `n_images` with these variance components; None when that design has no
    seed-level test (fewer than 2 seeds) or the components lack what it needs (see `Components`)."""
    design = implied(components, n_seeds, n_images)
    if design is None:
        return None
    if design.df is None:
        return 0.0
    return detectable_ncp(design.df, alpha=alpha, power=power) * math.sqrt(design.variance)


def seeds_needed(components: Components, target_diff: float, n_images: int, *, alpha: float = ALPHA,
                 power: float = POWER, max_seeds: int = 10_000) -> int | None:
    """The fewest seeds (>= 2) whose `mdd` is at most |target_diff|; None when even `max_seeds` do not reach it
    or the components cannot say (see `mdd`)."""
    target = abs(target_diff)
    if not math.isfinite(target) or target == 0:
        raise ValueError(f"target difference must be finite and non-zero, got {target_diff}")

    def reached(seeds: int) -> bool | None:
        value = mdd(components, seeds, n_images, alpha=alpha, power=power)
        return None if value is None else value <= target

    first = reached(2)
    if first is None:
        return None
    if first:
        return 2
    low, high = 2, 4  # mdd falls with the seeds: double, then bisect
    while not reached(min(high, max_seeds)):
        if high >= max_seeds:
            return None
        low, high = high, high * 2
    high = min(high, max_seeds)
    while high - low > 1:
        mid = (low + high) // 2
        if reached(mid):
            high = mid
        else:
            low = mid
    return high


# ------------------------------------------------------------------------------ multiplicity, improvement


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values of one family, in the input order; a None (no test) is not part of the family."""
    tested = sorted((p, k) for k, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, k) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[k] = running
    return adjusted


def probability_of_improvement(a: Sequence[float], b: Sequence[float], *, higher_is_better: bool) -> float:
    """P(a random run of a beats a random run of b): the share of all (a, b) pairs where a is better, ties
    counting one half (Agarwal et al. 2021's probability of improvement, the Mann-Whitney statistic)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        raise ValueError("probability of improvement needs runs on both sides")
    better = x[:, None] > y[None, :] if higher_is_better else x[:, None] < y[None, :]
    ties = x[:, None] == y[None, :]
    return float((better.sum() + 0.5 * ties.sum()) / (x.size * y.size))
