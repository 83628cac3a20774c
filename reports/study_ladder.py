"""The Study section's answer to the trade-off claim from a loss-weight ladder (study_dose.parquet, `results.dose`):
one sentence with the exchange rate per decade of the weight, the ladder as a path on the PD plane (arms in
weight order, seed ranges), and a table of the arms against the 0 arm.

"Each ×10 of adversarial weight changes PSNR by X dB [CI] and NIQE by Y [CI]": X and Y are the slopes per decade
over the non-zero arms with their raw intervals; whether a slope counts is its Holm-adjusted verdict (p_holm in
the study's family). The trade-off of the original study (and of SRGAN / ESRGAN) is "reproduced" only when PSNR
falls and the perception metric improves, both distinguishable; when the perception metric worsens the sentence
says that the adversarial term degrades both axes at this size, and names what the papers rely on that the run
lacks (from the run's own configs: its perceptual features, GAN steps and discriminator).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import polars as pl

from reports import figures, plane
from reports.text import METRIC_NAMES, METRIC_UNITS, MISSING, fmt_p, plural
from reports.text import finite as _finite
from reports.text import fmt as _num
from reports.verdicts import assess, estimate
from results import dose
from results.schema import STUDY_ORDER, UNTRAINED_VGG

UNTRAINED_FLAG = figures.UNTRAINED_FLAG


@dataclass
class LadderCell:
    text: str  # "27.42 [26.50–28.33]"
    diff: str  # "−1.29 dB [−2.1, −0.5]; srresnet-continued better (p_holm 0.01)"
    state: str  # CSS hook as the diff table's: "a-better" | "b-better" | "zero" | "no-data" | ""


@dataclass
class LadderRow:
    label: str  # "adv_weight = 0.1"
    version: str
    cells: list[LadderCell]


@dataclass
class LadderTable:
    title: str  # "v2's recipe, loss.adv_weight, Set5"
    metrics: list[str]
    rows: list[LadderRow]
    trend: list[str]  # one cell per metric: "−0.70 dB [−0.9, −0.5] per ×10; falls with the weight (p_holm 0.002)"


@dataclass
class Ladder:
    sentences: list[str]  # the trade-off claim's answer, one per ladder
    tables: list[LadderTable]
    planes: list[tuple[str, str, str]]  # (id, figure JSON, title)
    notes: list[str] = field(default_factory=list)


def _weight_label(key: str, value: float) -> str:
    return f"{key.rsplit('.', 1)[-1]} = {value:g}"


def _interval(r: dict, *, per: str = "") -> str:
    metric = r["metric"]
    unit = METRIC_UNITS.get(metric, "")
    if not _finite(r.get("slope")):
        return MISSING
    text = f"{_num(r['slope'], metric, sign=True)}{unit}{per}"
    if _finite(r.get("ci_low")) and _finite(r.get("ci_high")):
        text += f" [{_num(r['ci_low'], metric, sign=True)}, {_num(r['ci_high'], metric, sign=True)}]"
    return text


def _mdd(r: dict) -> str:
    """"; MDD 0.45 dB": the smallest slope this design detects with 80 % power (none without an interval)."""
    if not _finite(r.get("mdd")):
        return ""
    return f"; MDD {_num(r['mdd'], r['metric'])}{METRIC_UNITS.get(r['metric'], '')} per ×10"


def _verdict(r: dict) -> str:
    if r.get("p_holm") is None or not _finite(r.get("p_holm")):
        return r.get("verdict") or "no verdict"
    return f"{r['verdict']} (p_holm {fmt_p(r['p_holm'])})"


def _worse(r: dict) -> bool | None:
    """The slope's direction against its metric (True: worse with the weight); None without a slope."""
    if not _finite(r.get("slope")):
        return None
    return (r["slope"] < 0) == bool(r["higher_is_better"])


def _config_facts(trials: pl.DataFrame, versions: list[str]) -> dict[str, object]:
    """GAN steps, discriminator stages and perceptual features of the ladder's arms (their configs)."""
    facts: dict[str, object] = {}
    part = trials.filter(pl.col("version").is_in(versions)) if "version" in trials.columns else trials.head(0)
    for text in part["config_json"].drop_nulls().to_list():
        try:
            config = json.loads(text)
        except json.JSONDecodeError:
            continue
        train, disc, loss = (config.get(k) if isinstance(config.get(k), dict) else {} for k in
                             ("train", "discriminator", "loss"))
        facts.setdefault("gan_steps", train.get("gan_steps"))
        facts.setdefault("d_stages", disc.get("num_stages"))
        facts.setdefault("perceptual_weight", loss.get("perceptual_weight"))
        facts.setdefault("perceptual_features", loss.get("perceptual_weights"))
    return facts


def lacks(facts: dict[str, object]) -> str:
    """What SRGAN's trade-off rests on that this ladder's runs lack, from their configs (SRGAN: Ledig et al. 2017)."""
    parts = []
    weight, features = facts.get("perceptual_weight"), facts.get("perceptual_features")
    if not weight:
        parts.append("ImageNet perceptual features (this recipe has no perceptual loss; SRGAN pairs the adversarial "
                     "term with a VGG19 ImageNet feature loss, sec. 2.2)")
    elif features != "imagenet":
        parts.append("ImageNet perceptual features (this run's VGG19 features are untrained; SRGAN sec. 2.2)")
    steps = facts.get("gan_steps")
    parts.append(f"~10^5 GAN steps ({steps} here; SRGAN trains 2 × 10^5 updates, sec. 3.2)" if steps
                 else "~10^5 GAN steps (SRGAN trains 2 × 10^5 updates, sec. 3.2)")
    stages = facts.get("d_stages")
    parts.append(f"a full-size discriminator ({stages} stage{'s' if stages != 1 else ''} here; SRGAN's has eight "
                 "convolutions up to 512 features, sec. 2.1 and Fig. 4)" if stages else
                 "a full-size discriminator (SRGAN's has eight convolutions up to 512 features, sec. 2.1 and Fig. 4)")
    return ", ".join(parts)


def trade_off_sentence(trend: pl.DataFrame, dataset: str, perception: str | None, facts: dict[str, object]) -> str:
    """The exchange rate of one ladder on one dataset and what it says about the trade-off claim."""
    first = trend.row(0, named=True)
    weights = [w for w in json.loads(first["weights"]) if w > 0]
    by_metric = {r["metric"]: r for r in trend.filter(pl.col("dataset") == dataset).iter_rows(named=True)}
    psnr, perc = by_metric.get("psnr"), by_metric.get(perception) if perception else None
    key = first["key"].rsplit(".", 1)[-1]
    seeds = max((r["n_seeds"] or 0) for r in by_metric.values()) if by_metric else 0
    head = (f"Trade-off, measured on a ladder of {first['key']} ({first['recipe']}'s recipe, weights "
            f"{', '.join(f'{w:g}' for w in json.loads(first['weights']))}, {plural(seeds, 'seed')}, {dataset}): ")
    if psnr is None or not _finite(psnr.get("slope")):
        return head + f"no slope ({(psnr or {}).get('note') or 'PSNR not measured'})."
    rate = f"each ×10 of {key} changes PSNR by {_interval(psnr)}"
    if perc is not None and _finite(perc.get("slope")):
        rate += f" and {METRIC_NAMES[perception]} by {_interval(perc)}"
    rate += f" (slopes over {_fmt_weights(weights)}, raw 95 % intervals; PSNR {_verdict(psnr)}"
    rate += f", {METRIC_NAMES[perception]} {_verdict(perc)})" if perc is not None else ")"
    if perc is None or not _finite(perc.get("slope")):
        return head + rate + "; no perception metric was measured, so the trade-off cannot be read."
    psnr_falls = psnr["verdict"] == dose.TREND_DOWN
    perc_worse, perc_shown = _worse(perc), bool(perc.get("distinguishable"))
    name = METRIC_NAMES[perception]
    if perc_worse and perc_shown:
        verdict = (f"{name} worsens with the weight too: at this size the adversarial term degrades both axes, so the "
                   f"original study's trade-off is not reproduced here. The papers rely on what this run lacks: "
                   f"{lacks(facts)}")
    elif psnr_falls and perc_shown:
        verdict = f"PSNR falls and {name} improves as the weight grows: the trade-off is reproduced at this size"
    else:
        direction = "worse" if perc_worse else "better"
        verdict = (f"{name}'s slope points {direction} with the weight but is not distinguishable, so the trade-off is "
                   f"not shown at this size (what the papers rely on that this run lacks: {lacks(facts)})")
    return head + rate + ". " + verdict + "."


def _fmt_weights(weights: list[float]) -> str:
    return f"{weights[0]:g} to {weights[-1]:g}" if len(weights) > 1 else f"{weights[0]:g}"


def _study_row(study: pl.DataFrame, a: str, b: str, dataset: str, metric: str) -> dict | None:
    part = study.filter((pl.col("a") == a) & (pl.col("b") == b) & (pl.col("dataset") == dataset)
                        & (pl.col("metric") == metric))
    return part.row(0, named=True) if part.height else None


def _diff_text(r: dict | None) -> tuple[str, str]:
    """One study.parquet row in the diff table's words."""
    if r is None or not r["n"]:  # the metric was not measured (the reason is said once, under Missing metrics)
        return "not computed (see Missing metrics)", "no-data"
    a = assess(r, adjusted=True)
    if a.state == "no-data":
        return a.short, a.state
    return f"{estimate(r)}; {a.short}", a.state


def ladder_section(dose_table: pl.DataFrame | None, study: pl.DataFrame, trials: pl.DataFrame, datasets: list[str],
                   perception: dict[str, str | None]) -> Ladder | None:
    """The ladder's sentence, tables and planes; None when the study ran no ladder."""
    if dose_table is None or dose_table.height == 0:
        return None
    sentences, tables, planes, notes = [], [], [], []
    arms = dose.ladders(dose.with_ladder_columns(trials))
    groups = sorted(dose_table.group_by("recipe", "key", maintain_order=True),  # the study's order: v2's first
                    key=lambda g: STUDY_ORDER.index(g[0][0]) if g[0][0] in STUDY_ORDER else len(STUDY_ORDER))
    for (recipe, key), trend in groups:
        ladder_arms = arms.get((str(recipe), str(key)), [])
        versions = [a.version for a in ladder_arms]
        facts = _config_facts(trials, versions)
        flagged = _flagged_versions(trials, versions)
        for dataset in [d for d in datasets if d in set(trend["dataset"].to_list())]:
            part = trend.filter(pl.col("dataset") == dataset)
            metric = perception.get(dataset)
            sentences.append(trade_off_sentence(part, dataset, metric, facts))
            tables.append(_table(part, study, ladder_arms, dataset))
            plane = _plane(part, ladder_arms, dataset, metric, flagged, len(planes))
            if plane is None:
                notes.append(f"{recipe}, {key}, {dataset}: no ladder plane (PSNR or the perception metric is "
                             "missing on an arm).")
            else:
                planes.append(plane)
    return Ladder(sentences, tables, planes, notes)


def _flagged_versions(trials: pl.DataFrame, versions: list[str]) -> set[str]:
    out = set()
    for r in trials.filter(pl.col("version").is_in(versions)).iter_rows(named=True):
        try:
            flags = json.loads(r["flags"] or "[]")
        except json.JSONDecodeError:
            flags = []
        if UNTRAINED_VGG in flags:
            out.add(r["version"])
    return out


def _table(part: pl.DataFrame, study: pl.DataFrame, arms: list[dose.Arm], dataset: str) -> LadderTable:
    first = part.row(0, named=True)
    by_metric = {r["metric"]: r for r in part.iter_rows(named=True)}
    metrics = [m for m in METRIC_NAMES if m in by_metric  # a metric measured on no arm has no column
               and any(v is not None for v in json.loads(by_metric[m]["arm_means"] or "[]"))]
    zero = next((a for a in arms if a.value == 0), None)
    # an arm with other seeds than most (the top arm and 0 arm's further seed block) says how many; on a tie the
    # fewer count is the usual one (a seed block only adds seeds)
    seeds = [len({s for _, s in arm.trials}) for arm in arms]
    usual = min(seeds, key=lambda n: (-seeds.count(n), n)) if seeds else 0
    rows = []
    for k, arm in enumerate(arms):
        cells = []
        for metric in metrics:
            r = by_metric[metric]
            means, lows, highs = (json.loads(r[c] or "[]") for c in ("arm_means", "arm_low", "arm_high"))
            value = means[k] if k < len(means) else None
            text = MISSING if value is None else _num(value, metric)
            if value is not None and lows[k] is not None and highs[k] is not None and lows[k] != highs[k]:
                text += f" [{_num(lows[k], metric)}–{_num(highs[k], metric)}]"
            if arm.value == 0 or zero is None:
                diff, state = ("the reference (0 arm)" if arm.value == 0 else "no 0 arm"), ""
            else:
                diff, state = _diff_text(_study_row(study, arm.version, zero.version, dataset, metric))
            cells.append(LadderCell(text, diff, state))
        notes = ([arm.version] if arm.value == 0 else []) + ([plural(seeds[k], "seed")] if seeds[k] != usual else [])
        label = _weight_label(first["key"], arm.value) + (f" ({', '.join(notes)})" if notes else "")
        rows.append(LadderRow(label, arm.version, cells))
    trend = [f"{_interval(by_metric[m], per=' per ×10')}; {_verdict(by_metric[m])}{_mdd(by_metric[m])}"
             for m in metrics]
    return LadderTable(f"{first['recipe']}'s recipe, {first['key']}, {dataset}", metrics, rows, trend)


def _plane(part: pl.DataFrame, arms: list[dose.Arm], dataset: str, metric: str | None, flagged: set[str],
           index: int) -> tuple[str, str, str] | None:
    by_metric = {r["metric"]: r for r in part.iter_rows(named=True)}
    if metric is None or metric not in by_metric or "psnr" not in by_metric:
        return None
    x, y = by_metric[metric], by_metric["psnr"]
    xm, xl, xh = (json.loads(x[c] or "[]") for c in ("arm_means", "arm_low", "arm_high"))
    ym, yl, yh = (json.loads(y[c] or "[]") for c in ("arm_means", "arm_low", "arm_high"))
    marks = []
    for k, arm in enumerate(arms):
        if k >= len(xm) or xm[k] is None or ym[k] is None or not all(math.isfinite(v) for v in (xm[k], ym[k])):
            return None
        marks.append(plane.PlaneMark(
            _weight_label(x["key"], arm.value), xm[k], ym[k], xl[k], xh[k], yl[k], yh[k],
            flag=UNTRAINED_FLAG if arm.version in flagged else None,
            hover=f"{arm.version}; {plural(len({s for _, s in arm.trials}), 'seed')}: mean, bars the seed range"))
    title = f"{dataset}: {x['recipe']}'s {x['key']} ladder, in weight order (bars: seed range)"
    fig = plane.pd_plane([plane.PlaneSeries(f"{x['recipe']} {x['key']}", marks, "path")], metric=metric,
                           title=title)
    return f"study-ladder-{index}", figures.figure_json(fig), title
