"""The report's "Study" section: the original study's comparison table answered with measured values.

Built from the study tables that `results.study.compute_study` writes (study.parquet, study_versions.parquet,
study_profile.parquet) and the trials' flags and configs. Everything here is plain data for the template
(which escapes it) and plotly figures (embedded with `figures.figure_json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from reports import figures
from reports.text import METRIC_NAMES, METRIC_UNITS, MISSING, Cell
from reports.text import finite as _finite
from reports.text import fmt as _num
from results import schema
from results.rows import json_list
from results.study import STUDY_ORDER

CPU_SIZES = ("tiny", "small")  # srgan.versions' reduced presets, named "<preset>-<size>"
UNTRAINED_VGG = "untrained-perceptual-vgg19"

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
    estimate: str  # "+0.98 dB [+0.90, +1.11]"
    verdict_text: str  # "distinguishable from zero: v2 better"
    statement: str  # the full sentence (the cell's title)
    verdict: str  # CSS hook: "a-better" | "b-better" | "zero" | "no-data"


@dataclass
class DiffRow:
    comparison: str
    kind: str
    dataset: str
    n: str  # "9 (3 seeds × 3 images)"
    cells: list[DiffCell]  # one per metric, in METRIC_NAMES order


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
    findings: list[str]
    untested: list[str]
    method: str
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- formatting


def _mean_std(mean: float | None, std: float | None, metric: str) -> str:
    if not _finite(mean):
        return MISSING
    return f"{_num(mean, metric)} ± {_num(std, metric)}" if _finite(std) else _num(mean, metric)


def _sig(value: float | None) -> str:
    """Three significant digits (a loss's spread can be 1e-5 in a short run)."""
    return f"{value:.3g}" if _finite(value) else MISSING


def _pct(value: float | None) -> str:
    return f"{100 * value:.0f} %" if _finite(value) else MISSING


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
    if not p["perceptual_weight"]:
        perceptual = Cell("none")
    else:
        text = f"VGG19 {p['perceptual_layer'] or ''}, weight {p['perceptual_weight']:g}".replace("  ", " ")
        untrained = p["perceptual_features"] == "untrained"
        perceptual = Cell(text + (", untrained features" if untrained else ", ImageNet features"),
                          "random VGG19 weights (explicit opt-in): not a perceptual loss in the study's sense"
                          if untrained else None, warn=untrained)
    gan = Cell(MISSING, missing=True) if stage != schema.STAGE_GAN else Cell(
        f"{p['adv_type'] or '?'}, weight {p['adv_weight']:g}" if _finite(p["adv_weight"]) else p["adv_type"] or "?")
    tracking = []
    if p["val_every"]:
        tracking.append(f"validation every {p['val_every']} steps")
    if _finite(p["val_points"]):
        tracking.append(f"{p['val_points']:g} validations per run")
    logged = Cell("; ".join(tracking) or MISSING, f"logged: {p['logged']}" if p["logged"] else None)
    return {"Training data": Cell(data), "Patch size": Cell(patch), "Warmup": warmup, "Perceptual loss": perceptual,
            "GAN loss": gan, "Metric tracking": logged}


def _stability_cells(p: dict) -> dict[str, Cell]:
    if p["stage"] != schema.STAGE_GAN:
        none = Cell(MISSING, "no GAN stage", missing=True)
        return {k: none for k in ("collapse", "spread", "drift", "stops")}
    gap = p["collapse_gap"]
    collapse = Cell(MISSING, "no D(real)/D(fake) reports", missing=True) if not p["gan_reports"] else Cell(
        f"{_pct(p['collapse_share'])} of {p['gan_reports']} reports (worst run {_pct(p['collapse_share_max'])})",
        f"share of GAN-stage reports with D(real) − D(fake) > {gap:g}", warn=(p["collapse_share"] or 0) > 0)
    spread_sd = f" ± {_sig(p['adv_loss_std_sd'])}" if _finite(p["adv_loss_std_sd"]) else ""
    spread = Cell(_sig(p["adv_loss_std"]) + spread_sd,
                  "std of the generator's adversarial loss over the last half of the GAN stage; mean ± std over runs")
    drift = Cell(f"{_num(p['psnr_drift'], 'psnr', sign=True)} ± {_num(p['psnr_drift_sd'], 'psnr')} dB"
                 if _finite(p["psnr_drift_sd"]) else (f"{_num(p['psnr_drift'], 'psnr', sign=True)} dB"
                                                      if _finite(p["psnr_drift"]) else MISSING),
                 f"validation PSNR at the end of the GAN stage minus {p['drift_from'] or 'its start'}",
                 missing=not _finite(p["psnr_drift"]))
    runs = (p["n_trials"] or 0) + (p["failed"] or 0)
    stops = Cell(f"{p['divergence_stops']} of {runs} runs", "runs stopped, or failed, because the GAN diverged "
                 "(non-finite loss, or D(real) − D(fake) above the gap for several reports)",
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


def comparison_table(profile: pl.DataFrame, versions: pl.DataFrame, datasets: list[str]) -> list[TableRow]:
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
    for dataset in datasets:
        for metric in METRIC_NAMES:
            cells = []
            for p in rows:
                match = versions.filter((pl.col("version") == p["version"]) & (pl.col("dataset") == dataset)
                                        & (pl.col("metric") == metric))
                if match.height == 0 or not _finite(match["mean"][0]):
                    reason = match["missing"][0] if match.height else "no scores"
                    cells.append(Cell(MISSING, reason, missing=True))
                else:
                    r = match.row(0, named=True)
                    title = f"mean ± std over {r['n_seeds']} seed(s) of the mean over {r['n_images']} images"
                    cells.append(Cell(_mean_std(r["mean"], r["std"], metric), title))
            arrow = "↑" if schema.HIGHER_IS_BETTER[metric] else "↓"
            table.append(TableRow(f"{dataset} {METRIC_NAMES[metric]} {arrow}", "", cells, "scores"))
    return table


# ---------------------------------------------------------------------------------- paired differences


def _statement(r: dict) -> tuple[str, str]:
    metric, a, b = r["metric"], r["a"], r["b"]
    if not r["n"] or not _finite(r["mean_diff"]):
        return f"not computed: {r['note'] or 'no data'}", "no-data"
    name = METRIC_NAMES.get(metric, metric)
    interval = f"[{_num(r['ci_low'], metric, sign=True)}, {_num(r['ci_high'], metric, sign=True)}]"
    if not r["excludes_zero"]:
        return (f"Not distinguishable from zero: the {r['ci_level']:.0%} interval {interval} contains 0, so this "
                f"run cannot tell {a} from {b} on {name}.", "zero")
    direction = "higher" if r["mean_diff"] > 0 else "lower"
    better = a if r["verdict"] == "a better" else b
    return (f"Distinguishable from zero: {a} scores {direction} than {b} on {name} (interval {interval} excludes 0); "
            f"{better} is better ({'higher' if r['higher_is_better'] else 'lower'} is better).",
            "a-better" if r["verdict"] == "a better" else "b-better")


def _diff_cell(r: dict | None) -> DiffCell:
    if r is None:
        return DiffCell(MISSING, "not computed", "not computed", "no-data")
    statement, verdict = _statement(r)
    if verdict == "no-data":
        return DiffCell(MISSING, "not computed", statement, verdict)
    unit = METRIC_UNITS.get(r["metric"], "")
    estimate = (f"{_num(r['mean_diff'], r['metric'], sign=True)}{unit} "
                f"[{_num(r['ci_low'], r['metric'], sign=True)}, {_num(r['ci_high'], r['metric'], sign=True)}]")
    short = {"a-better": f"distinguishable from zero: {r['a']} better",
             "b-better": f"distinguishable from zero: {r['b']} better",
             "zero": "not distinguishable from zero"}[verdict]
    return DiffCell(estimate, short, statement, verdict)


def diff_metrics(study: pl.DataFrame, versions: pl.DataFrame) -> tuple[list[str], list[str]]:
    """(metrics with at least one difference, a note for each metric with none saying why)."""
    shown, notes = [], []
    for metric in METRIC_NAMES:
        part = study.filter(pl.col("metric") == metric)
        if part.height and part.filter(pl.col("n") > 0).height:
            shown.append(metric)
        elif part.height:
            reasons = sorted(set(versions.filter(pl.col("metric") == metric)["missing"].drop_nulls().to_list()))
            notes.append(f"{METRIC_NAMES[metric]}: no difference computed ({'; '.join(reasons) or 'no scores'}).")
    return shown, notes


def diff_rows(study: pl.DataFrame, metrics: list[str] | None = None) -> list[DiffRow]:
    """One row per (comparison, dataset), a cell per metric (`metrics`, default all)."""
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for r in study.iter_rows(named=True):
        by_key.setdefault((r["comparison"], r["dataset"]), {})[r["metric"]] = r
    rows = []
    for (comparison, dataset), by_metric in by_key.items():
        first = next(iter(by_metric.values()))
        counted = max(by_metric.values(), key=lambda r: r["n"] or 0)
        n = (f"{counted['n']} ({counted['n_seeds']} seeds × {counted['n_images']} images)" if counted["n"]
             else "0")
        cells = [_diff_cell(by_metric.get(m)) for m in (metrics if metrics is not None else METRIC_NAMES)]
        rows.append(DiffRow(comparison, first["kind"], dataset, n, cells))
    return rows


# ---------------------------------------------------------------------------------------------- planes


def planes(versions: pl.DataFrame, profile: pl.DataFrame, datasets: list[str]) -> tuple[list[Plane], list[str]]:
    order = profile["version"].to_list()
    stage = dict(zip(profile["version"], profile["stage"], strict=True))
    out, notes = [], []
    for i, dataset in enumerate(datasets):
        part = versions.filter(pl.col("dataset") == dataset)
        by = {(r["version"], r["metric"]): r for r in part.iter_rows(named=True)}
        points = []
        for version in order:
            lp, ps = by.get((version, "lpips")), by.get((version, "psnr"))
            if lp and ps and _finite(lp["mean"]) and _finite(ps["mean"]):
                points.append(figures.VersionPoint(version, lp["mean"], lp["std"], ps["mean"], ps["std"],
                                                   ps["n_seeds"], stage.get(version) == schema.STAGE_BASELINE))
        if points:
            fig = figures.study_plane(points, dataset)
            out.append(Plane(f"study-plane-{i}", figures.figure_json(fig), dataset))
            continue
        reasons = sorted({r["missing"] for r in part.filter(pl.col("metric") == "lpips").iter_rows(named=True)
                          if r["missing"]})
        notes.append(f"{dataset}: the perception axis is unavailable: LPIPS was not computed "
                     f"({'; '.join(reasons) or 'no LPIPS scores'}). PSNR and SSIM both measure distortion, so no "
                     "perception–distortion plane is drawn for this dataset.")
    return out, notes


# ------------------------------------------------------------------------------------------- the prose


def _diff_phrase(r: dict) -> str:
    unit = METRIC_UNITS.get(r["metric"], "")
    verdict = "not distinguishable from zero"
    if r["excludes_zero"]:
        verdict = f"distinguishable from zero ({r['a'] if r['verdict'] == 'a better' else r['b']} better)"
    return (f"{r['a']} − {r['b']} {_num(r['mean_diff'], r['metric'], sign=True)}{unit} "
            f"[{_num(r['ci_low'], r['metric'], sign=True)}, {_num(r['ci_high'], r['metric'], sign=True)}], {verdict}")


def findings(study: pl.DataFrame, profile: pl.DataFrame, versions: pl.DataFrame, datasets: list[str]) -> list[str]:
    """Sentences stating the measured findings and their intervals (first dataset in detail)."""
    if not datasets:
        return ["No scores: nothing to compare."]
    primary = datasets[0]
    out = []
    with_data = study.filter(pl.col("n") > 0)
    first = with_data.filter(pl.col("dataset") == primary)
    if first.height:
        n = first.row(0, named=True)
        out.append(f"On {primary}, each difference is the mean of a − b over {n['n_images']} images × {n['n_seeds']} "
                   f"seeds with a {n['ci_level']:.0%} bootstrap interval in brackets.")
    for kind, lead in (("version step", "Consecutive versions"), ("GAN stage vs its pretraining",
                                                                   "Each GAN stage against its own pretraining")):
        for metric in ("psnr", "lpips"):
            part = first.filter((pl.col("kind") == kind) & (pl.col("metric") == metric))
            if part.height:
                phrases = "; ".join(_diff_phrase(r) for r in part.iter_rows(named=True))
                out.append(f"{lead}, {METRIC_NAMES[metric]}: {phrases}.")
    if not first.filter(pl.col("metric") == "lpips").height and study.filter(pl.col("metric") == "lpips").height:
        lpips = versions.filter((pl.col("metric") == "lpips") & (pl.col("dataset") == primary))
        reasons = sorted(set(lpips["missing"].drop_nulls().to_list()))
        out.append(f"No LPIPS difference on {primary}: LPIPS was not computed ({'; '.join(reasons) or 'no scores'}).")
    others = with_data.filter(pl.col("dataset") != primary)
    if others.height:
        distinct = others.filter(pl.col("excludes_zero")).height
        out.append(f"On the other dataset(s) ({', '.join(d for d in datasets if d != primary)}), {distinct} of "
                   f"{others.height} differences are distinguishable from zero (table below).")
    out += claims(study, primary)
    gan = profile.filter(pl.col("stage") == schema.STAGE_GAN)
    if gan.height:
        shares = ", ".join(f"{r['version']} {_pct(r['collapse_share'])}" for r in gan.iter_rows(named=True))
        gap = gan["collapse_gap"][0]
        stops = [f"{r['version']} {r['divergence_stops']} of {(r['n_trials'] or 0) + (r['failed'] or 0)}"
                 for r in gan.iter_rows(named=True) if r["divergence_stops"]]
        drifts = ", ".join(f"{r['version']} {_num(r['psnr_drift'], 'psnr', sign=True)} dB"
                           for r in gan.iter_rows(named=True) if _finite(r["psnr_drift"]))
        out.append(f"GAN stability: share of GAN-stage reports with D(real) − D(fake) > {gap:g}: {shares}; "
                   + (f"divergence stops: {', '.join(stops)}" if stops else "no divergence stops")
                   + (f"; PSNR drift over the GAN stage: {drifts}." if drifts else "."))
    return out


def _direction(r: dict | None) -> str:
    """What a difference says about a against b, in a word or three."""
    if r is None or not r["n"] or not _finite(r["mean_diff"]):
        return "not measured"
    if not r["excludes_zero"]:
        return "no distinguishable change"
    return "better" if r["verdict"] == "a better" else "worse"


def claims(study: pl.DataFrame, dataset: str) -> list[str]:
    """The study's two claims put to this run's intervals: each version improves on the one before, and the
    GAN stage trades PSNR for perceptual quality."""
    rows = {(r["comparison"], r["metric"]): r for r in study.filter(pl.col("dataset") == dataset).iter_rows(named=True)}
    out = []
    for kind, question in (
        ("version step", "Does each version improve on the one before, as the study reports?"),
        ("GAN stage vs its pretraining", "Does the GAN stage trade PSNR for perceptual quality, as the study reports?"),
    ):
        pairs = list(dict.fromkeys((r["comparison"], r["a"], r["b"]) for r in study.filter(
            (pl.col("kind") == kind) & (pl.col("dataset") == dataset)).iter_rows(named=True)))
        if not pairs:
            continue
        found = [(a, b, _direction(rows.get((c, "psnr"))), _direction(rows.get((c, "lpips")))) for c, a, b in pairs]
        no_lpips = all(lpips == "not measured" for *_, lpips in found)
        parts = []
        for a, b, psnr, lpips in found:
            text = f"{a} against {b}: PSNR {psnr}" + ("" if no_lpips else f", LPIPS {lpips}")
            if kind != "version step" and not no_lpips:
                text += (" (the trade is measured)" if (psnr, lpips) == ("worse", "better")
                         else " (only the PSNR side is measured)" if lpips == "not measured"
                         else " (not the trade the study describes)")
            parts.append(text)
        tail = " LPIPS was not measured, so only the PSNR side of this is tested." if no_lpips else ""
        out.append(f"{question} On {dataset}, " + "; ".join(parts) + "." + tail)
    return out


def untested(profile: pl.DataFrame, trials: pl.DataFrame, versions: pl.DataFrame) -> list[str]:
    """What the original study claimed that this run could not test, and why."""
    out = []
    flagged = [r["version"] for r in profile.iter_rows(named=True) if UNTRAINED_VGG in json_list(r["flags"])]
    if flagged:
        out.append(f"Perceptual loss: {', '.join(flagged)} used untrained (random) VGG19 features (flag "
                   f"{UNTRAINED_VGG}), because no ImageNet weights were available. The study's claim that a "
                   "feature loss gives less smoothed, more realistic textures is not tested by this run.")
    lpips = versions.filter(pl.col("metric") == "lpips")
    if lpips.height and lpips["mean"].drop_nulls().len() == 0:
        reasons = sorted(set(lpips["missing"].drop_nulls().to_list()))
        out.append("Perceptual quality: LPIPS was not computed (" + ("; ".join(reasons) or "no scores") + "), so "
                   "nothing here measures the perception side of the PSNR–perception trade-off; only the visual "
                   "crops show it.")
    missing = [v for v in STUDY_ORDER if v not in set(profile["version"].to_list())]
    if missing:
        out.append(f"Not run here: {', '.join(missing)}.")
    single = [r for r in profile.iter_rows(named=True)
              if r["stage"] != schema.STAGE_BASELINE and len(json_list(r["seeds"])) < 2]
    shared = [r["version"] for r in single if r["stage"] == schema.STAGE_PRETRAIN]
    if shared:
        out.append(f"One pretraining run per generator, shared by every seed ({', '.join(shared)}): the intervals "
                   "of the GAN stages against it include the GAN stage's seed-to-seed variation, not the "
                   "pretraining's.")
    single_gan = [r["version"] for r in single if r["stage"] != schema.STAGE_PRETRAIN]
    if single_gan:
        out.append(f"One seed only for {', '.join(single_gan)}: their intervals reflect image-to-image variation, "
                   "not training-to-training variation.")
    sizes = set()
    for value in trials["config_json"].drop_nulls().to_list():
        try:
            name = json.loads(value).get("name", "")
        except (json.JSONDecodeError, AttributeError):
            continue
        sizes.update(part for part in str(name).split("-") if part in CPU_SIZES)
    if sizes:
        out.append(f"Model size and training length: CPU-sized presets ({', '.join(sorted(sizes))}: fewer blocks and "
                   "features, short runs). The study's observations concern full-size models trained for tens of "
                   "epochs; this run tests the direction of the effects at a small scale only.")
    gan = profile.filter(pl.col("stage") == schema.STAGE_GAN)
    for column, what in (("patch_size", "patch size"), ("train_data", "training data")):
        values = set(gan[column].drop_nulls().to_list())
        if gan.height > 1 and len(values) == 1:
            value = values.pop()
            shown = f"{value}×{value}" if column == "patch_size" else value
            out.append(f"The {what} is the same for every version here ({shown}), so the study's change of "
                       f"{what} between versions is not tested.")
    return out


# -------------------------------------------------------------------------------------------- entry point


def study_section(study: pl.DataFrame | None, versions: pl.DataFrame | None, profile: pl.DataFrame | None,
                  trials: pl.DataFrame, datasets: list[str]) -> StudySection | None:
    """The section's data, or None when the folder has no study tables (a plain sweep, an evaluate run)."""
    if study is None:
        return None
    notes = []
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
    plane_list, plane_notes = planes(versions, profile, datasets)
    shown, shown_notes = diff_metrics(study, versions)
    method = "no paired comparison (fewer than two versions of the study)"
    if study.height:
        r = study.row(0, named=True)
        method = (f"Paired differences a − b over (image, seed) pairs; {r['ci_level']:.0%} percentile bootstrap "
                  f"interval, {r['n_resamples']:,} resamples (seed {r['bootstrap_seed']}), drawing seeds and "
                  "images with replacement (two-level). A difference is distinguishable from zero when its "
                  "interval excludes 0.")
    return StudySection(
        versions=profile["version"].to_list(),
        table=comparison_table(profile, versions, datasets),
        diffs=diff_rows(study, shown),
        diff_metrics=shown,
        diff_notes=shown_notes,
        planes=plane_list,
        plane_notes=plane_notes,
        findings=findings(study, profile, versions, datasets),
        untested=untested(profile, trials, versions),
        method=method,
        notes=notes,
    )
