"""study.parquet's rows: which comparisons a study makes (`comparisons`) and what each measured on every dataset
and metric (`comparison_rows`), Holm-adjusted over each metric's family (`adjust`).

The comparisons: consecutive versions (v2 - v1, v3 - v2, ragan - v3, esrgan - ragan), each GAN stage against the
pretraining it started from (unequal budgets: descriptive), and `results.dose`'s equal-budget controls and ladder
arms. The interval and test of each row are `results.stats.seed_image_t`'s (two-way crossed random effects over
training seed x image, Satterthwaite t); the verdict uses the Holm-adjusted p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from results import dose, schema, stats
from results.rows import budget_flag, json_list, source_trial
from results.schema import KIND_PRETRAIN, KIND_STEP, SELECTED_ON_TEST, STUDY_ORDER
from results.study_input import (
    StudyInput,
    datasets_of,
    metrics_of,
    missing_reason,
    paired_grids,
    scores_of,
    usable,
    used_trials,
)

VERDICT_A, VERDICT_B, VERDICT_NONE = "a better", "b better", "not distinguishable"
VERDICT_ONE_SEED, VERDICT_NO_DATA = "one seed", "no data"
VERDICT_NO_VARIATION = "no variation"  # every pair differs by the same non-zero amount: no test applies


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    kind: str
    a_trials: tuple[tuple[str, int], ...]  # (trial_id, seed)
    b_trials: tuple[tuple[str, int], ...]  # (trial_id, the seed of the a trial it is paired with)
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.a} - {self.b}"


def comparisons(trials: pl.DataFrame) -> list[Comparison]:
    """Consecutive versions present (v2 - v1, ...), then each GAN version against the pretraining(s) its trials
    started from, each GAN trial paired with its own (one per seed, or one shared by every seed)."""
    used = used_trials(trials)
    gan = used.filter(~dose.compared_by_dose(used)).filter(pl.col("stage") == schema.STAGE_GAN)
    by_version: dict[str, list[tuple[str, int]]] = {}
    for row in gan.iter_rows(named=True):
        by_version.setdefault(row["version"], []).append((row["trial_id"], row["seed"]))
    out = []
    for b, a in zip(STUDY_ORDER, STUDY_ORDER[1:], strict=False):
        if a in by_version and b in by_version:
            out.append(Comparison(a, b, KIND_STEP, tuple(by_version[a]), tuple(by_version[b])))
    known = {r["trial_id"]: r for r in used.iter_rows(named=True)}
    ordered = [v for v in STUDY_ORDER if v in by_version] + sorted(set(by_version) - set(STUDY_ORDER))
    for version in ordered:
        pairs: dict[str, list[tuple[str, int, str]]] = {}  # pretraining version -> (gan trial, seed, source)
        unknown = set()
        for row in gan.filter(pl.col("version") == version).iter_rows(named=True):
            if row["init_from"] is None:
                continue
            source = source_trial(row["init_from"], known)
            if source not in known or known[source]["stage"] != schema.STAGE_PRETRAIN:
                unknown.add(source)
                continue
            pairs.setdefault(known[source]["version"], []).append((row["trial_id"], row["seed"], source))
        if not pairs and not unknown:
            continue  # single-stage (v1)
        missing = (f"init_from is not a scored pretraining trial: {', '.join(sorted(unknown))}" if unknown else "")
        if not pairs:
            out.append(Comparison(version, "pretraining", KIND_PRETRAIN, (), (), missing))
        for pre_version, triples in sorted(pairs.items()):
            sources = sorted({s for _, _, s in triples})
            note = f"b is the pretraining this GAN stage started from ({', '.join(sources)})"
            out.append(Comparison(version, pre_version, KIND_PRETRAIN, tuple((t, s) for t, s, _ in triples),
                                  tuple((src, s) for _, s, src in triples),
                                  "; ".join(x for x in (note, missing) if x)))
    controls = dose.control_pairings(trials)
    extra = controls + dose.arm_pairings(trials, already={(p.a, p.b) for p in controls})
    return out + [Comparison(p.a, p.b, p.kind, p.a_trials, p.b_trials, p.note) for p in extra]


# ---------------------------------------------------------------------------------- one comparison row


@dataclass(frozen=True)
class Measured:
    """What one (comparison, dataset, metric) measured, before the family's Holm adjustment."""

    result: stats.SeedImageT | None
    p_improve: float | None
    mdd: float | None
    notes: tuple[str, ...] = field(default=())


def measure(data: StudyInput, comp: Comparison, dataset: str, metric: str, ci: float) -> tuple[Measured, str]:
    """The statistics of one row, and why it has no data ("" when it has)."""
    higher = schema.HIGHER_IS_BETTER[metric]
    a_values = scores_of(data, comp.a_trials, dataset, metric)
    b_values = scores_of(data, comp.b_trials, dataset, metric)
    notes = []
    dropped = sum(v.filter(pl.col("value").is_not_null() & ~pl.col("value").is_finite()).height
                  for v in (a_values, b_values))
    if dropped:
        notes.append(f"{dropped} non-finite score(s) left out")
    for side, values in (("a", a_values), ("b", b_values)):
        repeated = usable(values).group_by("seed", "image").len().filter(pl.col("len") > 1).height
        if repeated and (side == "a" or comp.kind == KIND_STEP):
            notes.append(f"{side}: several trials share a seed; their values are averaged")
    grid_a, grid_b, seeds, images = paired_grids(a_values, b_values)
    with np.errstate(over="ignore", invalid="ignore"):
        overflowed = int((~np.isfinite(grid_a - grid_b) & np.isfinite(grid_a) & np.isfinite(grid_b)).sum())
    if overflowed:
        notes.append(f"{overflowed} difference(s) beyond the float range left out")
    result = stats.seed_image_t(grid_a, grid_b, ci=ci) if grid_a.size else None
    if result is None:
        reason = "not computed: every difference is beyond the float range" if overflowed else _no_pairs_reason(
            data, comp, dataset, metric, a_values, b_values)
        return Measured(None, None, None, tuple(notes)), reason
    if result.dropped_seeds or result.dropped_images:
        left = ([f"seed {seeds[k]}" for k in result.dropped_seeds]
                + [f"image {images[k]}" for k in result.dropped_images])
        notes.append(f"left out for missing pairs (the interval needs a complete seeds x images grid): "
                     f"{', '.join(left)}")
    p_improve = mdd = None
    if result.n_seeds >= 2:
        rows, cols = np.ix_(result.seeds, result.images)
        p_improve = stats.probability_of_improvement(grid_a[rows, cols].mean(axis=1), grid_b[rows, cols].mean(axis=1),
                                                     higher_is_better=higher)
        mdd = stats.mdd(result.components, result.n_seeds, result.n_images, alpha=stats.ALPHA, power=stats.POWER)
    return Measured(result, p_improve, mdd, tuple(notes)), ""


def _no_pairs_reason(data: StudyInput, comp: Comparison, dataset: str, metric: str, a_values: pl.DataFrame,
                     b_values: pl.DataFrame) -> str:
    if not comp.a_trials or not comp.b_trials:
        return "no pairs"
    if not usable(a_values).height:
        return f"{comp.a}: {missing_reason(data, [t for t, _ in comp.a_trials], dataset, metric)}"
    if not usable(b_values).height:
        return f"{comp.b}: {missing_reason(data, [t for t, _ in comp.b_trials], dataset, metric)}"
    return "no (image, seed) pair scored on both sides"


def _budget(data: StudyInput, comp: Comparison) -> dict[str, Any]:
    """g_updates of each side (the largest where a side's trials differ) and the budget flag."""
    by_id = {r["trial_id"]: r["g_updates"] for r in data.trials.iter_rows(named=True)}
    sides = [[by_id.get(t) for t, _ in trials] for trials in (comp.a_trials, comp.b_trials)]
    if not sides[0] or not sides[1]:
        return {"budget": None, "g_updates_a": None, "g_updates_b": None}
    if any(v is None for side in sides for v in side):
        return {"budget": "unknown", "g_updates_a": None, "g_updates_b": None}
    return {"budget": budget_flag([v for side in sides for v in side]), "g_updates_a": max(sides[0]),
            "g_updates_b": max(sides[1])}


def _selection(data: StudyInput, comp: Comparison) -> str | None:
    ids = {t for t, _ in comp.a_trials + comp.b_trials}
    flags = data.trials.filter(pl.col("trial_id").is_in(list(ids)))["flags"].to_list()
    return SELECTED_ON_TEST if any(SELECTED_ON_TEST in json_list(f) for f in flags) else None


def variance_sources(data: StudyInput, comp: Comparison) -> str:
    """One line: the sources of variation the comparison's interval includes (before a row's own limits: one
    seed, one image)."""
    by_id = {r["trial_id"]: r for r in data.trials.iter_rows(named=True)}
    pretrain_seeds: dict[str, set[int]] = {}  # pretraining trial -> the seeds that use it
    for trial_id, seed in comp.a_trials + comp.b_trials:
        row = by_id.get(trial_id)
        if row is None:
            continue
        source = trial_id if row["stage"] == schema.STAGE_PRETRAIN else source_trial(row["init_from"], by_id)
        if source is not None:
            pretrain_seeds.setdefault(source, set()).add(seed)
    if not pretrain_seeds:
        return "training seed and image"
    seeds = {s for _, s in comp.a_trials + comp.b_trials}
    base = "training seed of the GAN stage and image"
    if all(len(used) == 1 for used in pretrain_seeds.values()):
        return f"{base}; one pretraining per seed (included)"
    if all(used == seeds for used in pretrain_seeds.values()):
        return f"{base}; pretraining shared by all seeds (one run: its variance is not included)"
    return (f"{base}; {len(pretrain_seeds)} pretraining runs for {len(seeds)} seeds (partly shared: their "
            f"variance is only partly included)")


def _row_sources(base: str, result: stats.SeedImageT | None) -> str | None:
    if result is None:
        return None
    if result.n_seeds < 2:
        return "none at the seed level (one seed)"
    if result.n_images < 2:
        return base.replace(" and image", "") + "; one image: image-to-image variation not included"
    return base


def comparison_rows(data: StudyInput, *, ci: float = stats.CI_LEVEL) -> list[dict[str, Any]]:
    """study.parquet's rows (`schema.STUDY_COLUMNS`), Holm-adjusted per metric over every comparison and dataset."""
    rows = []
    for comp in comparisons(data.trials):
        budget = _budget(data, comp)
        selection = _selection(data, comp)
        sources = variance_sources(data, comp)
        for dataset in datasets_of(data):
            for metric in metrics_of(data):
                measured, no_data = measure(data, comp, dataset, metric, ci)
                row = _row(comp, dataset, metric, measured, no_data, ci)
                row.update(budget, selection=selection, variance_sources=_row_sources(sources, measured.result))
                rows.append(row)
    adjust(rows)
    return rows


def _row(comp: Comparison, dataset: str, metric: str, measured: Measured, no_data: str, ci: float) -> dict[str, Any]:
    higher = schema.HIGHER_IS_BETTER[metric]
    row: dict[str, Any] = {"comparison": comp.name, "kind": comp.kind, "dataset": dataset, "metric": metric,
                           "a": comp.a, "b": comp.b, "ci_level": ci, "higher_is_better": higher,
                           "n": 0, "n_seeds": 0, "n_images": 0, "verdict": VERDICT_NO_DATA}
    notes = [no_data, *measured.notes]
    r = measured.result
    if r is not None:
        sd_seed, sd_image, sd_resid = r.components.sd()
        row.update(n=r.n, n_seeds=r.n_seeds, n_images=r.n_images, mean_diff=r.mean_diff, ci_low=r.ci_low,
                   ci_high=r.ci_high, method=r.method, df=r.df, p_value=r.p_value, excludes_zero=r.excludes_zero,
                   p_improve=measured.p_improve, mdd=measured.mdd, sd_seed=sd_seed, sd_image=sd_image,
                   sd_resid=sd_resid, verdict=None)
        if r.n_seeds < 2:
            row["verdict"] = VERDICT_ONE_SEED
            notes.append("one seed: no seed-level interval (the training seed is the unit of replication; an "
                         "interval needs at least 2)")
        elif r.n_images < 2:
            notes.append("one image: the interval covers seed-to-seed variation only")
        if r.no_variation:
            row["verdict"] = VERDICT_NO_VARIATION
            notes.append(f"no variation between the pairs: every pair differs by {r.mean_diff:+.6g}, so no test "
                         "applies (no p-value) and nothing measures how the difference varies with other seeds or "
                         "images")
        elif r.df is None and r.ci_low is not None:
            notes.append("no variation between the pairs: the interval has zero width")
        bad = [name for name in ("mean_diff", "ci_low", "ci_high", "df", "p_value", "mdd", "p_improve", "sd_seed",
                                 "sd_image", "sd_resid")
               if isinstance(row.get(name), float) and not math.isfinite(row[name])]
        if bad:
            for name in ("mean_diff", "ci_low", "ci_high", "df", "p_value", "excludes_zero", "mdd", "p_improve",
                         "sd_seed", "sd_image", "sd_resid"):
                row[name] = None
            row["verdict"] = VERDICT_NO_DATA
            notes.append(f"not computed: non-finite {', '.join(bad)}")
    notes.append(comp.note)
    row["note"] = "; ".join(n for n in notes if n) or None
    return row


def adjust(rows: list[dict[str, Any]]) -> None:
    """p_holm within each metric's family, then `distinguishable` and the verdict from it (a ladder's trend row,
    which has a slope instead of a mean difference, gets its verdict from `dose.trend_verdicts`)."""
    for metric in dict.fromkeys(r["metric"] for r in rows):
        family = [r for r in rows if r["metric"] == metric]
        for r, adjusted in zip(family, stats.holm([r.get("p_value") for r in family]), strict=True):
            r["p_holm"] = adjusted
            if adjusted is None:
                r["distinguishable"] = None
                continue
            r["distinguishable"] = adjusted < stats.ALPHA
            if "mean_diff" not in r:
                continue
            if not r["distinguishable"]:
                r["verdict"] = VERDICT_NONE
            else:
                r["verdict"] = VERDICT_A if (r["mean_diff"] > 0) == r["higher_is_better"] else VERDICT_B

