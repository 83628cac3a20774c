"""What one row of study.parquet lets the report say: its adjusted verdict, or why it has none.

Only the Holm-adjusted verdict (`verdict`, from `p_holm`) is ever a verdict. A row with no data, a non-finite
number, or columns that contradict each other (a verdict that does not follow from its p_holm or the sign of
its difference) is "not computed" with the reason; a row with one seed has no seed-level interval; a row whose
pairs all differ by one non-zero constant says "no variation" (no test applies, so it is no verdict); a row of a
table written before the adjustment has no verdict at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.text import METRIC_UNITS, fmt_p, non_finite
from reports.text import fmt as _num
from results.schema import SELECTED_ON_TEST
from results.stats import ALPHA  # a verdict: p_holm below ALPHA

UNEQUAL_BUDGET = "unequal-budget"  # study.parquet's `budget` when the sides' generator updates differ by > 1 %


@dataclass(frozen=True)
class Assessment:
    """What one study.parquet row lets the report say."""

    state: str  # "a-better" | "b-better" | "zero" | "one-seed" | "no-variation" | "unadjusted" | "no-data"
    short: str  # "v2 better (p_holm 0.003)", "not distinguishable (p_holm 0.41)", "not computed: …"
    reason: str = ""  # why nothing is computed (no data, a non-finite number, a contradiction)


def has_interval(r: dict) -> bool:
    return bool(r["n_seeds"] and r["n_seeds"] > 1 and r["verdict"] != "one seed")


def assess(r: dict, *, adjusted: bool) -> Assessment:
    """The row's verdict, or why it has none; never a verdict from the raw interval, never one from a
    non-finite number or from a row whose columns contradict each other."""
    if not r["n"] or r["verdict"] == "no data" or r["mean_diff"] is None:
        reason = r["note"] or "no data"
        return Assessment("no-data", f"not computed: {reason}", reason)
    one_seed = not has_interval(r)
    no_variation = r["verdict"] == "no variation"  # no test, so no p-value to check
    numbers = [("mean difference", r["mean_diff"])]
    if not one_seed:
        numbers += [("interval's lower end", r["ci_low"]), ("interval's upper end", r["ci_high"])]
        if adjusted and not no_variation:
            numbers.append(("adjusted p-value", r["p_holm"]))
    for what, value in numbers:
        bad = non_finite(value) or ("missing" if value is None else None)
        if bad:
            reason = f"the {what} is {bad}" + (f" ({r['note']})" if r["note"] else "")
            return Assessment("no-data", f"not computed: {reason}", reason)
    if one_seed:
        return Assessment("one-seed", "one seed: no seed-level interval, no verdict")
    if no_variation:
        if r.get("p_holm") is not None or r["mean_diff"] == 0:
            reason = f"the table contradicts itself: verdict 'no variation' with p_holm {r.get('p_holm')}"
            return Assessment("no-data", f"not computed: {reason}", reason)
        unit = METRIC_UNITS.get(r["metric"], "")
        return Assessment("no-variation", f"no variation: every pair differs by "
                                          f"{_num(r['mean_diff'], r['metric'], sign=True)}{unit}, no test, no verdict")
    if not adjusted:
        side = "excludes" if r["excludes_zero"] else "contains"
        return Assessment("unadjusted", f"no adjusted verdict (the raw interval {side} 0)")
    p = f"p_holm {fmt_p(r['p_holm'])}"
    significant = r["p_holm"] < ALPHA
    verdict = r["verdict"]
    if r["distinguishable"] is not None and bool(r["distinguishable"]) != significant:
        reason = f"the table contradicts itself: distinguishable is {r['distinguishable']} with {p}"
        return Assessment("no-data", f"not computed: {reason}", reason)
    if verdict in ("a better", "b better"):
        a_higher = r["mean_diff"] > 0
        if not significant or (verdict == "a better") != (a_higher == bool(r["higher_is_better"])):
            reason = (f"the table contradicts itself: verdict {verdict!r} with mean difference "
                      f"{r['mean_diff']:+.3g}, {p}")
            return Assessment("no-data", f"not computed: {reason}", reason)
        winner = r["a"] if verdict == "a better" else r["b"]
        return Assessment("a-better" if verdict == "a better" else "b-better", f"{winner} better ({p})")
    if verdict == "not distinguishable" and not significant:
        return Assessment("zero", f"not distinguishable ({p})")
    reason = f"verdict {verdict!r} does not match {p}"
    return Assessment("no-data", f"not computed: the table contradicts itself: {reason}", reason)


def flags(r: dict) -> list[str]:
    out = []
    if r["budget"] == UNEQUAL_BUDGET:
        sides = (f": {r['a']} {r['g_updates_a']:,} vs {r['b']} {r['g_updates_b']:,} generator updates"
                 if r["g_updates_a"] is not None and r["g_updates_b"] is not None else "")
        out.append(f"unequal budget{sides}")
    elif r["budget"] == "unknown":
        out.append("budget unknown (generator updates not recorded)")
    if r["selection"] == SELECTED_ON_TEST:
        out.append("selected on test data")
    return out


def estimate(r: dict) -> str:
    unit = METRIC_UNITS.get(r["metric"], "")
    mean = f"{_num(r['mean_diff'], r['metric'], sign=True)}{unit}"
    if not has_interval(r):
        return f"{mean} (one seed: no interval)"
    return f"{mean} [{_num(r['ci_low'], r['metric'], sign=True)}, {_num(r['ci_high'], r['metric'], sign=True)}]"
