"""The report's "Study" section: the original study's claims put to the measured, Holm-adjusted verdicts.

Built from the study tables that `results.study.compute_study` writes (study.parquet, study_versions.parquet,
study_profile.parquet) and the trials' flags and configs. Everything here is plain data for the template
(which escapes it) and plotly figures (embedded with `figures.figure_json`).

A verdict is only ever the adjusted one (`verdict`, from `p_holm`); the raw interval is shown beside it and
never turned into a verdict. A study.parquet written before the adjustment existed still renders: its
intervals are shown, the columns it lacks are named, and no claim gets a verdict from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from reports import figures, plane
from reports.load import STUDY_CONTRACT
from reports.study_claims import claims, method, protocol, stability_finding, untested, variance_line
from reports.study_ladder import UNTRAINED_FLAG, Ladder, ladder_section
from reports.text import METRIC_NAMES, METRIC_UNITS, MISSING, Cell, non_finite, pct, plural
from reports.text import finite as _finite
from reports.text import fmt as _num
from reports.verdicts import assess, estimate, has_interval
from reports.verdicts import flags as row_flags
from results import dose, schema
from results.rows import json_list
from results.schema import UNTRAINED_VGG

# The original study's table (v1 / v2 / v3), each cell summarised in English; the measured rows answer them.
CLAIMS = {
    "Training data": "basic → improved → structured, robust",
    "Patch size": "96×96 → larger → larger",
    "Warmup": "not structured → partial → yes",
    "Perceptual loss": "no → partial → yes",
    "GAN stability": "medium → good → stable",
    "Metric tracking": "limited → adequate → structured",
    "Overall robustness": "low → medium → high",
}






@dataclass
class TableRow:
    criterion: str
    claim: str
    cells: list[Cell]
    group: str = ""  # a CSS hook: "facts" | "stability" | "scores"


@dataclass
class DiffCell:
    estimate: str  # "+0.98 dB [+0.90, +1.11]" (the raw interval), or the mean alone with one seed
    verdict_text: str  # "v2 better (p_holm 0.003)"
    details: str  # "P(improve) 0.89 · MDD 0.35 dB"
    statement: str  # the full sentence (the cell's title)
    verdict: str  # CSS hook: "a-better" | "b-better" | "zero" | "one-seed" | "unadjusted" | "no-data"


@dataclass
class DiffRow:
    comparison: str
    kind: str
    dataset: str
    n: str  # "9 (3 seeds × 3 images)"
    flags: list[str]  # "unequal budget (…)", "selected on test data"
    cells: list[DiffCell]  # one per shown metric


@dataclass
class Plane:
    id: str
    json: str
    title: str


@dataclass
class StudySection:
    versions: list[str]
    table: list[TableRow]
    diffs: list[DiffRow]
    diff_metrics: list[str]  # the metrics with at least one difference (the diff table's columns)
    diff_notes: list[str]  # why the other metrics have none
    planes: list[Plane]
    plane_notes: list[str]
    protocol: str  # how to read an interval and a verdict
    variance: str  # which sources of variation the intervals include
    claims: list[str]  # one sentence per claim of the original study
    findings: list[str]  # descriptive measurements that are not tests (stability)
    untested: list[str]
    method: str
    notes: list[str] = field(default_factory=list)
    adjusted: bool = True  # the table has Holm-adjusted verdicts
    ladder: Ladder | None = None  # a loss weight's dose-response (study_dose.parquet), when the study ran one


# ------------------------------------------------------------------------------------------- formatting


def _mean_std(mean: float | None, std: float | None, metric: str) -> str:
    if not _finite(mean):
        return MISSING
    return f"{_num(mean, metric)} ± {_num(std, metric)}" if _finite(std) else _num(mean, metric)


def _sig(value: float | None) -> str:
    """Three significant digits (a loss's spread can be 1e-5 in a short run)."""
    return f"{value:.3g}" if _finite(value) else MISSING




# ------------------------------------------------------------------------------------ comparison table


def _facts_cells(p: dict) -> dict[str, Cell]:
    """The measured answer to each criterion of the original table, for one version's profile row."""
    stage = p["stage"]
    if stage == schema.STAGE_BASELINE:
        none = Cell(MISSING, "not trained", missing=True)
        return {k: none for k in ("Training data", "Patch size", "Warmup", "Perceptual loss", "GAN loss",
                                  "Metric tracking")}
    data = p["train_data"] or MISSING
    if p["degradation"]:
        data += f" ({p['degradation']} bicubic pairs)"
    patch = f"{p['patch_size']}×{p['patch_size']}" if p["patch_size"] else MISSING
    if stage == schema.STAGE_PRETRAIN:
        warmup = Cell(f"is a pretraining: {p['warmup_steps']} pixel-loss steps" if p["warmup_steps"] is not None
                      else "is a pretraining")
    elif p["pretrained_from"]:
        steps = f", {p['pretrain_steps']} steps" if p["pretrain_steps"] is not None else ""
        warmup = Cell(f"starts from {p['pretrained_from']} (pixel loss{steps})")
    elif p["warmup_steps"]:
        warmup = Cell(f"{p['warmup_steps']} pixel-only steps, then the GAN")
    else:
        warmup = Cell("none: single stage from scratch")
    if stage == schema.STAGE_PRETRAIN or not p["perceptual_weight"]:
        perceptual = Cell("none")
    else:
        text = f"VGG19 {p['perceptual_layer'] or ''}, weight {p['perceptual_weight']:g}".replace("  ", " ")
        untrained = p["perceptual_features"] == "untrained"
        perceptual = Cell(text + (", untrained features" if untrained else ", ImageNet features"),
                          "random VGG19 weights (explicit opt-in): not a perceptual loss in the study's sense"
                          if untrained else None, warn=untrained)
    gan = Cell(MISSING, missing=True) if stage != schema.STAGE_GAN else Cell(
        f"{p['adv_type'] or '?'}, weight {p['adv_weight']:g}" if _finite(p["adv_weight"]) else p["adv_type"] or "?")
    if dose.is_control(p):
        gan = Cell("none: the pixel loss only (the GAN stages' equal-budget control)")
    tracking = []
    if p["val_every"]:
        tracking.append(f"validation every {p['val_every']} steps")
    if _finite(p["val_points"]):
        tracking.append(f"{p['val_points']:g} validations per run")
    logged = Cell("; ".join(tracking) or MISSING, f"logged: {p['logged']}" if p["logged"] else None)
    return {"Training data": Cell(data), "Patch size": Cell(patch), "Warmup": warmup, "Perceptual loss": perceptual,
            "GAN loss": gan, "Metric tracking": logged}


def _stability_cells(p: dict) -> dict[str, Cell]:
    if p["stage"] != schema.STAGE_GAN or dose.is_control(p):
        none = Cell(MISSING, "no GAN stage", missing=True)
        return {k: none for k in ("collapse", "spread", "drift", "stops")}
    gap = p["collapse_gap"]
    collapse = Cell(MISSING, "no D reports", missing=True) if not p["gan_reports"] else Cell(
        f"{pct(p['collapse_share'])} of {p['gan_reports']} reports (worst run {pct(p['collapse_share_max'])})",
        f"share of GAN-stage reports with a D gap above {gap:g} (the history's d_gap; D(real) − D(fake) in older "
        "histories)", warn=(p["collapse_share"] or 0) > 0)
    spread_sd = f" ± {_sig(p['adv_loss_std_sd'])}" if _finite(p["adv_loss_std_sd"]) else ""
    spread = Cell(_sig(p["adv_loss_std"]) + spread_sd,
                  "std of the generator's adversarial loss over the last half of the GAN stage (unweighted where the "
                  "history records it); mean ± std over runs")
    drift = Cell(f"{_num(p['psnr_drift'], 'psnr', sign=True)} ± {_num(p['psnr_drift_sd'], 'psnr')} dB"
                 if _finite(p["psnr_drift_sd"]) else (f"{_num(p['psnr_drift'], 'psnr', sign=True)} dB"
                                                      if _finite(p["psnr_drift"]) else MISSING),
                 f"validation PSNR at the end of the GAN stage minus {p['drift_from'] or 'its start'}",
                 missing=not _finite(p["psnr_drift"]))
    runs = (p["n_trials"] or 0) + (p["failed"] or 0)
    stops = Cell(f"{p['divergence_stops']} of {runs} runs", "runs stopped, or failed, because the GAN diverged "
                 "(non-finite loss, or a D gap above the threshold for several reports)",
                 warn=bool(p["divergence_stops"]))
    return {"collapse": collapse, "spread": spread, "drift": drift, "stops": stops}


def _robustness(p: dict, versions: pl.DataFrame, dataset: str | None) -> Cell:
    total = (p["n_trials"] or 0) + (p["failed"] or 0)
    finished = (p["n_trials"] or 0) - (p["stopped"] or 0)
    parts = [f"{finished}/{total} runs finished"] if p["stage"] != schema.STAGE_BASELINE else ["deterministic"]
    if dataset is not None:
        row = versions.filter((pl.col("version") == p["version"]) & (pl.col("dataset") == dataset)
                              & (pl.col("metric") == "psnr"))
        if row.height and _finite(row["std"][0]):
            parts.append(f"PSNR spread over seeds {row['std'][0]:.2f} dB on {dataset}")
    warn = bool(p["failed"] or p["stopped"])
    return Cell("; ".join(parts), "stopped: early-stopped runs; the rest of the total failed" if warn else None,
                warn=warn)


def _score_cell(match: pl.DataFrame, metric: str) -> Cell:
    if match.height == 0:
        return Cell(MISSING, "no scores", missing=True)
    r = match.row(0, named=True)
    bad = non_finite(r["mean"])
    if bad:
        return Cell("not computed", f"the mean over seeds is {bad}", missing=True)
    if not _finite(r["mean"]):
        return Cell(MISSING, "not computed (why: see Missing metrics)", missing=True)
    title = f"mean ± std over {r['n_seeds']} seed(s) of the mean over {r['n_images']} images"
    if non_finite(r["std"]):
        title += f"; the std over seeds is {non_finite(r['std'])}, not shown"
    return Cell(_mean_std(r["mean"], r["std"], metric), title)


def comparison_table(profile: pl.DataFrame, versions: pl.DataFrame, datasets: list[str],
                     metrics: list[str] | None = None) -> list[TableRow]:
    rows = list(profile.iter_rows(named=True))
    facts = [_facts_cells(p) for p in rows]
    stability = [_stability_cells(p) for p in rows]
    table = [TableRow(k, CLAIMS.get(k, MISSING), [f[k] for f in facts], "facts")
             for k in ("Training data", "Patch size", "Warmup", "Perceptual loss", "GAN loss")]
    labels = {"collapse": "GAN stability: D collapse", "spread": "GAN stability: adversarial-loss spread",
              "drift": "GAN stability: PSNR drift", "stops": "GAN stability: divergence stops"}
    table += [TableRow(label, CLAIMS["GAN stability"] if key == "collapse" else "", [s[key] for s in stability],
                       "stability") for key, label in labels.items()]
    table.append(TableRow("Metric tracking", CLAIMS["Metric tracking"], [f["Metric tracking"] for f in facts], "facts"))
    table.append(TableRow("Overall robustness", CLAIMS["Overall robustness"],
                          [_robustness(p, versions, datasets[0] if datasets else None) for p in rows], "facts"))
    metrics = [m for m in (metrics if metrics is not None else METRIC_NAMES)
               if versions.filter(pl.col("metric") == m).height]
    for dataset in datasets:
        for metric in metrics:
            cells = [_score_cell(versions.filter((pl.col("version") == p["version"]) & (pl.col("dataset") == dataset)
                                                 & (pl.col("metric") == metric)), metric) for p in rows]
            arrow = "↑" if schema.HIGHER_IS_BETTER[metric] else "↓"
            table.append(TableRow(f"{dataset} {METRIC_NAMES[metric]} {arrow}", "", cells, "scores"))
    return table


# ---------------------------------------------------------------------------------- paired differences












def _details(r: dict, *, adjusted: bool) -> str:
    if not adjusted:
        return "P(improve), MDD: not recorded"
    if not has_interval(r):
        return ""
    unit = METRIC_UNITS.get(r["metric"], "")
    improve = f"{r['p_improve']:.2f}" if _finite(r["p_improve"]) else MISSING
    mdd = f"{_num(r['mdd'], r['metric'])}{unit}" if _finite(r["mdd"]) else MISSING
    return f"P(improve) {improve} · MDD {mdd}"


def _diff_cell(r: dict | None, *, adjusted: bool) -> DiffCell:
    if r is None:
        return DiffCell(MISSING, "not computed", "", "not computed", "no-data")
    a = assess(r, adjusted=adjusted)
    name = METRIC_NAMES.get(r["metric"], r["metric"])
    if a.state == "no-data":
        return DiffCell(MISSING, "not computed", "", f"{r['a']} − {r['b']} on {name}, {r['dataset']}: {a.short}",
                        "no-data")
    level = f"{r['ci_level']:.0%} " if _finite(r["ci_level"]) else ""
    statement = f"{r['a']} − {r['b']} on {name}, {r['dataset']}: {estimate(r)}"
    statement += f" ({level}raw interval, not adjusted); {a.short}" if has_interval(r) else f"; {a.short}"
    flags = row_flags(r)
    if flags:
        statement += "; " + "; ".join(flags)
    return DiffCell(estimate(r), a.short, _details(r, adjusted=adjusted), statement + ".", a.state)


def diff_metrics(study: pl.DataFrame, metrics: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(metrics with at least one difference, a note for each recorded metric with none saying so)."""
    shown, notes = [], []
    for metric in (metrics if metrics is not None else METRIC_NAMES):
        part = study.filter(pl.col("metric") == metric)
        if part.height and part.filter(pl.col("n") > 0).height:
            shown.append(metric)
        elif part.height:
            notes.append(f"{METRIC_NAMES[metric]}: no difference computed (not measured: see Missing metrics).")
    return shown, notes


def diff_rows(study: pl.DataFrame, metrics: list[str] | None = None, *, adjusted: bool = True) -> list[DiffRow]:
    """One row per (comparison, dataset), a cell per metric (`metrics`, default all)."""
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for r in study.iter_rows(named=True):
        by_key.setdefault((r["comparison"], r["dataset"]), {})[r["metric"]] = r
    rows = []
    for (comparison, dataset), by_metric in by_key.items():
        first = next(iter(by_metric.values()))
        counted = max(by_metric.values(), key=lambda r: r["n"] or 0)
        n = (f"{counted['n']} ({plural(counted['n_seeds'], 'seed')} × {counted['n_images']} images)"
             if counted["n"] else "0")
        flags = list(dict.fromkeys(f for r in by_metric.values() for f in row_flags(r)))
        cells = [_diff_cell(by_metric.get(m), adjusted=adjusted)
                 for m in (metrics if metrics is not None else METRIC_NAMES)]
        rows.append(DiffRow(comparison, first["kind"], dataset, n, flags, cells))
    return rows


# ---------------------------------------------------------------------------------------------- planes


def planes(versions: pl.DataFrame, profile: pl.DataFrame, datasets: list[str],
           perception: dict[str, str | None]) -> tuple[list[Plane], list[str]]:
    """Per dataset, PSNR against its perception metric (LPIPS, else NIQE), a point per version: its mean over
    seeds with the seed range as bars (`plane.pd_plane`: runaways at the edge, labels apart), a version trained
    with untrained VGG19 features flagged on its point, and the Pareto front of the means."""
    order = profile["version"].to_list()
    stage = dict(zip(profile["version"], profile["stage"], strict=True))
    flags = dict(zip(profile["version"], profile["flags"], strict=True))
    out, notes = [], []
    for i, dataset in enumerate(datasets):
        metric = perception.get(dataset)
        part = versions.filter(pl.col("dataset") == dataset)
        by = {(r["version"], r["metric"]): r for r in part.iter_rows(named=True)}
        series = []
        for k, version in enumerate(order):
            x, ps = by.get((version, metric)), by.get((version, "psnr"))
            if not (x and ps and _finite(x["mean"]) and _finite(ps["mean"])):
                continue
            flag = UNTRAINED_FLAG if UNTRAINED_VGG in json_list(flags.get(version)) else None
            mark = plane.PlaneMark(version, x["mean"], ps["mean"], x.get("low"), x.get("high"), ps.get("low"),
                                     ps.get("high"), flag=flag, hover=plural(ps["n_seeds"], "seed") + (
                                         ": mean, bars the seed range" if (ps["n_seeds"] or 0) > 1 else ""))
            symbol = {schema.STAGE_BASELINE: "star", schema.STAGE_PRETRAIN: "diamond"}.get(stage.get(version), "circle")
            series.append(plane.PlaneSeries(version, [mark], "points", figures.color(k), symbol))
        if metric and series:
            marks = [s.marks[0] for s in series]
            points = [plane.PlanePoint(m.label, m.x, m.y, False) for m in marks]
            front = plane.pareto_front(points, x_lower_is_better=not schema.HIGHER_IS_BETTER[metric])
            front_marks = [plane.PlaneMark(p.label, p.x, p.y) for p in front]
            title = f"{dataset}: versions, PSNR against {METRIC_NAMES[metric]} (mean over seeds; bars: seed range)"
            fig = plane.pd_plane([plane.PlaneSeries("Pareto front", front_marks, "front"), *series],
                                   metric=metric, title=title)
            out.append(Plane(f"study-plane-{i}", figures.figure_json(fig), dataset))
        else:
            notes.append(f"{dataset}: no perception–distortion plane: no perception metric (LPIPS or NIQE) was "
                         "measured on it (see Missing metrics); PSNR and SSIM both measure distortion.")
    return out, notes


# ------------------------------------------------------------------------------------------- the prose
























# -------------------------------------------------------------------------------------------- entry point


def study_section(study: pl.DataFrame | None, versions: pl.DataFrame | None, profile: pl.DataFrame | None,
                  trials: pl.DataFrame, datasets: list[str], *, present: frozenset[str] | None = None,
                  perception: dict[str, str | None] | None = None,
                  metrics: list[str] | None = None, dose: pl.DataFrame | None = None) -> StudySection | None:
    """The section's data, or None when the folder has no study tables (a plain sweep, an evaluate run).

    `present`: the columns study.parquet really has (default: all of them); `perception`: each dataset's
    perception metric (LPIPS, else NIQE, else None), the one the trial-level plane uses too; `metrics`: the
    metrics the results folder recorded (default: every metric of the schema); `dose`: study_dose.parquet (the
    ladder's trends), when the study ran a ladder."""
    if study is None:
        return None
    present = frozenset(study.columns) if present is None else present
    adjusted = "p_holm" in present and "verdict" in present
    notes = []
    absent = [c for c in STUDY_CONTRACT if c not in present]
    if absent:
        notes.append(f"This study.parquet was written before adjusted verdicts: its columns {', '.join(absent)} are "
                     "missing" + (", so its intervals are shown as computed then and no claim gets a verdict from it"
                                  if not adjusted else "") + ". Recomputing the study tables with the current "
                     "results.study (compute_study) writes them.")
    if versions is None or profile is None:
        notes.append("study_versions.parquet or study_profile.parquet is missing: only the paired differences "
                     "are shown.")
    versions = versions if versions is not None else pl.DataFrame(
        schema=schema.polars_schema(schema.STUDY_VERSION_COLUMNS))
    profile = profile if profile is not None else pl.DataFrame(
        schema=schema.polars_schema(schema.STUDY_PROFILE_COLUMNS))
    study_sets = study["dataset"].unique(maintain_order=True).to_list() + versions["dataset"].unique(
        maintain_order=True).to_list()
    datasets = [d for d in datasets if d in study_sets] + [d for d in dict.fromkeys(study_sets) if d not in datasets]
    perception = perception if perception is not None else {}
    with_data = study.filter(pl.col("n") > 0)
    one_seed = with_data.height > 0 and not any(has_interval(r) for r in with_data.iter_rows(named=True))
    if one_seed:
        notes.append("One training seed per version: no seed-level interval exists, so none is drawn and no "
                     "comparison gets a verdict; the differences below are single measurements.")
    plane_list, plane_notes = planes(versions, profile, datasets, perception)
    shown, shown_notes = diff_metrics(study, metrics)
    ladder = ladder_section(dose, study, trials, datasets, perception) if adjusted else None
    sentences = claims(study, datasets, perception, adjusted=adjusted) if study.height else []
    if ladder is not None:  # the exchange rate answers the trade-off claim: right after it
        at = next((k + 1 for k, c in enumerate(sentences) if "trades PSNR for perceptual quality" in c), len(sentences))
        sentences[at:at] = ladder.sentences
    return StudySection(
        versions=profile["version"].to_list(),
        table=comparison_table(profile, versions, datasets, metrics),
        diffs=diff_rows(study, shown, adjusted=adjusted),
        diff_metrics=shown,
        diff_notes=shown_notes,
        planes=plane_list,
        plane_notes=plane_notes,
        protocol=protocol(study, adjusted=adjusted, one_seed=one_seed),
        variance=variance_line(study, present=present),
        claims=sentences,
        findings=stability_finding(profile),
        untested=untested(profile, trials, versions, perception=perception, present=present),
        method=method(study, adjusted=adjusted),
        notes=notes,
        adjusted=adjusted,
        ladder=ladder,
    )
