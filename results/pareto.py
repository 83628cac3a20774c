"""Pareto fronts on several objectives: non-dominated sorting, the front flag, the order along a trade-off, and
whether neighbouring front points are told apart by their seed intervals. Plain Python and polars (no torch, no
Ray): `harness.sweeps.pareto_search` writes pareto.parquet with it, the report and the study's ladder (issue 25) draw
with it, so a search and a ladder on the same key share one front computation.

A point *dominates* another when it is at least as good on every objective and strictly better on one (equal
points do not dominate each other, so they share a rank). Ranks are those of non-dominated sorting (Deb et al.
2002, NSGA-II sec. III-A): rank 0 is the front, rank 1 the front once rank 0 is removed, and so on. A row missing
an objective (None, NaN or inf) is not ranked (rank None) and is never on the front: it neither dominates nor is
dominated, and it is reported as such rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import polars as pl

MODES = ("max", "min")


class ObjectiveError(ValueError):
    """A malformed objective list (`--objectives`): the message names the option and the problem."""


@dataclass(frozen=True)
class Objective:
    """One objective: a metric name (e.g. "psnr", "niqe") and whether higher ("max") or lower ("min") is better."""

    metric: str
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ObjectiveError(f"objective {self.metric}: mode {self.mode!r} is not one of {', '.join(MODES)}")

    @property
    def text(self) -> str:
        return f"{self.metric}:{self.mode}"


def parse_objectives(text: str, *, known: Collection[str], option: str = "--objectives") -> tuple[Objective, ...]:
    """"psnr:max,niqe:min" -> (Objective("psnr", "max"), Objective("niqe", "min")): two or three distinct metrics
    among `known`, each with its mode; anything else an `ObjectiveError` naming `option` and the problem."""
    items = [part.strip() for part in (text or "").split(",") if part.strip()]
    out: list[Objective] = []
    for item in items:
        metric, sep, mode = item.partition(":")
        metric, mode = metric.strip().lower(), mode.strip().lower()
        if not sep or not metric or not mode:
            raise ObjectiveError(f"{option}: {item!r} is not METRIC:max or METRIC:min (e.g. psnr:max,niqe:min)")
        if metric not in known:
            raise ObjectiveError(f"{option}: unknown metric {metric!r}; the validation computes: "
                                 f"{', '.join(sorted(known))}")
        if mode not in MODES:
            raise ObjectiveError(f"{option}: {item!r}: the mode must be max or min, not {mode!r}")
        if any(o.metric == metric for o in out):
            raise ObjectiveError(f"{option}: {metric} is named twice")
        out.append(Objective(metric, mode))
    if not 2 <= len(out) <= 3:
        raise ObjectiveError(f"{option}: a Pareto search takes two or three objectives, got {len(out)} "
                             f"({text!r}); e.g. psnr:max,niqe:min")
    return tuple(out)


def _present(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _gains(point: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """The point with every objective turned into "higher is better"."""
    return tuple(float(v) if m == "max" else -float(v) for v, m in zip(point, modes, strict=True))


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """True when `a` is at least as good as `b` on every objective and strictly better on one."""
    ga, gb = _gains(a, modes), _gains(b, modes)
    return all(x >= y for x, y in zip(ga, gb, strict=True)) and any(x > y for x, y in zip(ga, gb, strict=True))


def nondominated_ranks(points: Sequence[Sequence[float | None]], modes: Sequence[str]) -> list[int | None]:
    """The non-dominated sorting rank of every point (0: the front), None for a point missing an objective.

    Deb's fast non-dominated sort: O(k n^2) comparisons, then the layers peeled off by domination counts."""
    modes = tuple(modes)
    for m in modes:
        if m not in MODES:
            raise ObjectiveError(f"mode {m!r} is not one of {', '.join(MODES)}")
    for i, p in enumerate(points):
        if len(p) != len(modes):
            raise ObjectiveError(f"point {i} has {len(p)} value(s) for {len(modes)} objective(s)")
    ranked = [i for i, p in enumerate(points) if all(_present(v) for v in p)]
    gains = {i: _gains(points[i], modes) for i in ranked}
    beaten_by = {i: 0 for i in ranked}  # how many points dominate i
    beats: dict[int, list[int]] = {i: [] for i in ranked}
    for pos, i in enumerate(ranked):
        for j in ranked[pos + 1:]:
            gi, gj = gains[i], gains[j]
            i_ge = all(x >= y for x, y in zip(gi, gj, strict=True))
            j_ge = all(y >= x for x, y in zip(gi, gj, strict=True))
            if i_ge and not j_ge:
                beats[i].append(j)
                beaten_by[j] += 1
            elif j_ge and not i_ge:
                beats[j].append(i)
                beaten_by[i] += 1
    ranks: list[int | None] = [None] * len(points)
    layer, rank = [i for i in ranked if beaten_by[i] == 0], 0
    while layer:
        following = []
        for i in layer:
            ranks[i] = rank
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        layer, rank = following, rank + 1
    return ranks


def with_front(table: pl.DataFrame, columns: Sequence[str], modes: Sequence[str]) -> pl.DataFrame:
    """`table` with `rank` (Int64, null where an objective is missing) and `front` (rank 0) columns, computed on
    `columns` (one per objective, in the order of `modes`); a missing column is an error naming it."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ObjectiveError(f"no column {', '.join(missing)} in the table (columns: {', '.join(table.columns)})")
    points = list(zip(*(table[c].to_list() for c in columns), strict=True)) if table.height else []
    ranks = nondominated_ranks(points, modes)
    return table.with_columns(pl.Series("rank", ranks, dtype=pl.Int64),
                              pl.Series("front", [r == 0 for r in ranks], dtype=pl.Boolean))


def along_front(table: pl.DataFrame, columns: Sequence[str], modes: Sequence[str]) -> pl.DataFrame:
    """The front's rows (`front` true) in order along the trade-off: best first on the first objective, ties
    broken best first on the next. With two objectives the second then runs from worst to best."""
    front = table.filter(pl.col("front"))
    return front.sort(list(columns), descending=[m == "max" for m in modes], nulls_last=True)


@dataclass(frozen=True)
class Interval:
    """A point's interval on one objective (over seeds): `low` <= `high`."""

    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def distinguishable(a: Sequence[Interval | None], b: Sequence[Interval | None]) -> bool | None:
    """Whether two points are told apart: their intervals are disjoint on at least one objective. None where an
    objective has no interval on either point and the others overlap (one seed: nothing to tell them apart by)."""
    unknown = False
    for ia, ib in zip(a, b, strict=True):
        if ia is None or ib is None:
            unknown = True
        elif not ia.overlaps(ib):
            return True
    return None if unknown else False


def neighbour_separation(intervals: Sequence[Sequence[Interval | None]]) -> list[bool | None]:
    """For front points in order along the trade-off (`along_front`), each point's intervals: whether each point
    is distinguishable from both its neighbours (an end point: from its one neighbour; a lone point: None)."""
    n = len(intervals)
    out: list[bool | None] = []
    for i in range(n):
        sides = [distinguishable(intervals[i], intervals[j]) for j in (i - 1, i + 1) if 0 <= j < n]
        if not sides:
            out.append(None)
        elif any(s is False for s in sides):
            out.append(False)
        elif any(s is None for s in sides):
            out.append(None)
        else:
            out.append(True)
    return out


def confirm_summary(members: pl.DataFrame, summary: pl.DataFrame, metrics: Sequence[tuple[str, str]]
                    ) -> pl.DataFrame:
    """A front confirmed over seeds, on the test sets: one row per (point, dataset, metric).

    `members`: `point` (the front point's id, in order along the front), `trial_id` and `seed` of every trial
    that trained it (the search's own and the confirm seeds'); `summary`: summary.parquet (`trial_id`, `dataset`
    and a column per metric); `metrics`: (metric, "max"|"min") pairs to report, the test-set versions of the
    objectives. Each row holds `n_seeds`, `mean`, and the seed range `low`..`high` (min and max over seeds: the
    interval, which stays inside the metric's range). Per (point, dataset): `front_of_means` (the point's seed
    means are non-dominated among the front's on this dataset: it survives other seeds) and `distinguishable`
    (its seed ranges are apart from both neighbours' along the front on some metric; null: unknown)."""
    names = [m for m, _ in metrics if m in summary.columns]
    modes = [mode for m, mode in metrics if m in summary.columns]
    order = list(dict.fromkeys(members["point"].to_list()))
    joined = members.join(summary.select("trial_id", "dataset", *names), on="trial_id", how="inner")
    rows: list[dict] = []
    for dataset in sorted(set(joined["dataset"].to_list())):
        part = joined.filter(pl.col("dataset") == dataset)
        stats: dict[str, dict[str, tuple[int, float | None, float | None, float | None]]] = {}
        for point in order:
            mine = part.filter(pl.col("point") == point)
            stats[point] = {}
            for m in names:
                values = [v for v in mine[m].to_list() if _present(v)]
                stats[point][m] = ((len(values), sum(values) / len(values), min(values), max(values)) if values
                                   else (0, None, None, None))
        points = [point for point in order if stats[point]]
        ranks = nondominated_ranks([[stats[p][m][1] for m in names] for p in points], modes)
        intervals = [[Interval(stats[p][m][2], stats[p][m][3]) if stats[p][m][0] > 1 else None for m in names]
                     for p in points]
        apart = neighbour_separation(intervals)
        for point, rank, sep in zip(points, ranks, apart, strict=True):
            for m in names:
                n, mean, low, high = stats[point][m]
                rows.append({"point": point, "dataset": dataset, "metric": m, "n_seeds": n, "mean": mean,
                             "low": low, "high": high, "front_of_means": rank == 0 if rank is not None else None,
                             "distinguishable": sep})
    schema = {"point": pl.String, "dataset": pl.String, "metric": pl.String, "n_seeds": pl.Int64, "mean": pl.Float64,
              "low": pl.Float64, "high": pl.Float64, "front_of_means": pl.Boolean, "distinguishable": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)
