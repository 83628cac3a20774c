"""results.pareto: non-dominated ranks and the front against a brute-force O(n^2)-per-layer peel written from the
definition (ties, equal points, three objectives, missing metrics); objective parsing; intervals along a front."""

from __future__ import annotations

import math
import random

import polars as pl
import pytest

from results.pareto import (
    Interval,
    ObjectiveError,
    along_front,
    distinguishable,
    dominates,
    neighbour_separation,
    nondominated_ranks,
    parse_objectives,
    with_front,
)


def brute_force_ranks(points: list[tuple], modes: list[str]) -> list[int | None]:
    """Peel layers from the definition: a layer is every remaining point that no remaining point beats (at least
    as good everywhere, strictly better somewhere, after flipping the minimised objectives)."""
    def beats(a, b):
        sa = [x if m == "max" else -x for x, m in zip(a, modes, strict=True)]
        sb = [x if m == "max" else -x for x, m in zip(b, modes, strict=True)]
        return all(x >= y for x, y in zip(sa, sb, strict=True)) and sa != sb

    def ok(v):
        return v is not None and math.isfinite(v)

    remaining = [i for i, p in enumerate(points) if all(ok(v) for v in p)]
    ranks: list[int | None] = [None] * len(points)
    rank = 0
    while remaining:
        layer = [i for i in remaining if not any(beats(points[j], points[i]) for j in remaining if j != i)]
        for i in layer:
            ranks[i] = rank
        remaining = [i for i in remaining if i not in layer]
        rank += 1
    return ranks


def random_points(rng: random.Random, n: int, k: int, *, levels: int, missing: float) -> list[tuple]:
    """Values drawn from few levels (ties and exact duplicates are common), some missing (None or NaN)."""
    points = []
    for _ in range(n):
        p = tuple(rng.randrange(levels) / 3 for _ in range(k))
        if rng.random() < missing:
            p = tuple(rng.choice([None, math.nan]) if j == 0 else v for j, v in enumerate(p))
        points.append(p)
    if n > 3:
        points[1] = points[0]  # an exact duplicate in every table
    return points


@pytest.mark.parametrize("k", [2, 3])
def test_ranks_equal_a_brute_force_peel_on_random_tables(k: int) -> None:
    rng = random.Random(k)
    for trial in range(150):
        modes = [rng.choice(["max", "min"]) for _ in range(k)]
        points = random_points(rng, rng.randrange(0, 30), k, levels=rng.choice([2, 4, 12]), missing=0.15)
        assert nondominated_ranks(points, modes) == brute_force_ranks(points, modes), (trial, modes, points)


def test_equal_points_share_a_rank_and_missing_values_are_not_ranked() -> None:
    points = [(30.0, 5.0), (30.0, 5.0), (29.0, 6.0), (31.0, None), (math.inf, 1.0), (28.0, 4.0)]
    ranks = nondominated_ranks(points, ["max", "min"])
    assert ranks == [0, 0, 1, None, None, 0]
    assert not dominates((30.0, 5.0), (30.0, 5.0), ["max", "min"])
    assert dominates((30.0, 5.0), (29.0, 5.0), ["max", "min"])


def test_with_front_adds_rank_and_front_columns_and_orders_the_trade_off() -> None:
    table = pl.DataFrame({"trial_id": list("abcde"), "val_psnr": [26.0, 24.0, 25.0, 23.0, None],
                          "val_niqe": [9.0, 6.0, 7.0, 8.0, 5.0]})
    out = with_front(table, ["val_psnr", "val_niqe"], ["max", "min"])
    assert out["rank"].to_list() == [0, 0, 0, 1, None]
    assert out["front"].to_list() == [True, True, True, False, False]
    ordered = along_front(out, ["val_psnr", "val_niqe"], ["max", "min"])
    assert ordered["trial_id"].to_list() == ["a", "c", "b"]  # PSNR best first: NIQE then improves along it
    with pytest.raises(ObjectiveError, match="no column val_lpips"):
        with_front(table, ["val_psnr", "val_lpips"], ["max", "min"])


def test_an_empty_table_has_no_front() -> None:
    out = with_front(pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Float64, "b": pl.Float64}), ["a", "b"],
                     ["max", "max"])
    assert out.height == 0 and out["rank"].dtype == pl.Int64


@pytest.mark.parametrize("text, problem", [
    ("psnr:max", "two or three objectives"),
    ("psnr:max,niqe:min,ssim:max,psnr:min", "named twice"),
    ("psnr:max,ssim:max,niqe:min,lpips:min", "unknown metric 'lpips'"),
    ("psnr:up,niqe:min", "mode must be max or min"),
    ("psnr,niqe:min", "is not METRIC:max"),
    ("psnr:max,fid:min", "unknown metric 'fid'"),
])
def test_bad_objectives_are_errors_naming_the_option(text: str, problem: str) -> None:
    with pytest.raises(ObjectiveError, match="--objectives") as err:
        parse_objectives(text, known={"psnr", "ssim", "niqe"})
    assert problem in str(err.value)


def test_objectives_parse_in_order_with_their_modes() -> None:
    got = parse_objectives(" PSNR:max , niqe:MIN ", known={"psnr", "niqe"})
    assert [o.text for o in got] == ["psnr:max", "niqe:min"]


def test_neighbours_are_told_apart_only_by_disjoint_intervals() -> None:
    a = [Interval(25.0, 25.4), Interval(6.0, 6.5)]
    b = [Interval(25.3, 25.6), Interval(6.4, 7.0)]  # overlaps a on both
    c = [Interval(26.0, 26.2), Interval(8.0, 8.5)]  # apart from b on both
    assert distinguishable(a, b) is False and distinguishable(b, c) is True
    assert distinguishable(a, [None, Interval(6.1, 6.2)]) is None  # one seed on PSNR, NIQE overlaps: unknown
    assert neighbour_separation([a, b, c]) == [False, False, True]
    assert neighbour_separation([a]) == [None]
