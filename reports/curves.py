"""The Training section: one figure per measure, the versions overlaid, each the mean over its seeds with a
band for their spread, on one axis of generator updates.

A GAN stage that started from a pretraining is drawn after it: its steps are shifted by the pretraining's
length, so the pretraining (dashed) is the stage before its GAN trials. Trials group by version (and, in a
sweep of loss weights, by those weights): the members of a group differ only by seed. Histories written before
`loss_adv_raw` and `d_gap` existed fall back to the weighted adversarial loss divided by the trial's weight,
and to D(real) − D(fake).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reports import figures
from reports.text import long_name
from results import schema

_NUMBER = pl.Float64


@dataclass(frozen=True)
class Measure:
    column: str
    title: str
    y_title: str
    threshold: float | None = None  # a horizontal reference line (the D gap's collapse threshold)


MEASURES = (
    Measure("val_psnr", "validation PSNR", "PSNR (dB, Y), higher is better"),
    Measure("val_niqe", f"validation {long_name('niqe')}" if "niqe" in schema.METRICS else "validation NIQE",
            "NIQE, lower is better"),
    Measure("loss_pixel", "pixel loss", "loss"),
    Measure("loss_perceptual", "perceptual loss (VGG19 features)", "loss"),
    Measure("adv_raw", "adversarial loss of G, unweighted (comparable across adversarial weights)", "loss"),
    Measure("loss_d", "discriminator loss (real + fake)", "loss"),
    Measure("d_gap", f"D gap (collapse above {schema.COLLAPSE_GAP:g}): σ(D(real)) − σ(D(fake)), or its "
            "relativistic form", "gap", threshold=schema.COLLAPSE_GAP),
)


@dataclass(frozen=True)
class CurveFigure:
    measure: Measure
    figure: dict  # plotly JSON


def _column(history: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name).cast(_NUMBER) if name in history.columns else pl.lit(None, dtype=_NUMBER)


def _offsets(trials: pl.DataFrame, history: pl.DataFrame) -> dict[str, int]:
    """trial_id -> generator updates before the trial's own first step (its pretraining's length)."""
    last_step = dict(history.group_by("trial_id").agg(pl.col("step").max()).iter_rows())
    rows = {r["trial_id"]: r for r in trials.iter_rows(named=True)}
    out = {}
    for trial_id, row in rows.items():
        source = rows.get(row["init_from"] or "")
        offset = 0
        if row["stage"] == schema.STAGE_GAN and source is not None:
            offset = source.get("g_updates") or source["steps"] or last_step.get(source["trial_id"]) or 0
        elif row["stage"] == schema.STAGE_GAN and row.get("g_updates") and row["steps"] is not None:
            offset = max(0, row["g_updates"] - row["steps"])  # init_from a path: g_updates counts the pretraining
        out[trial_id] = int(offset)
    return out


def _groups(trials: pl.DataFrame) -> dict[str, str]:
    """trial_id -> its curve's name: the version, with its loss weights where a version has several."""
    rows = [r for r in trials.iter_rows(named=True) if r["stage"] != schema.STAGE_BASELINE]

    def weights(r: dict) -> tuple:
        if r["stage"] == schema.STAGE_PRETRAIN:
            return ()
        return tuple((name, r[name]) for name in ("pixel_weight", "perceptual_weight", "adv_weight"))

    keys: dict[str, set] = {}
    for r in rows:
        keys.setdefault(r["version"], set()).add(weights(r))
    out = {}
    for r in rows:
        name = r["version"]
        if len(keys[name]) > 1:
            name += " (" + ", ".join(f"{k.removesuffix('_weight')} {v:g}" for k, v in weights(r) if v is not None) + ")"
        out[r["trial_id"]] = name
    return out


def long_history(history: pl.DataFrame, trials: pl.DataFrame) -> pl.DataFrame:
    """(trial_id, group, pretraining, x, one column per measure): each trial's last report per step, its steps
    shifted to generator updates, the fallbacks for older histories applied."""
    groups = _groups(trials)
    offsets = _offsets(trials, history)
    adv_weight = {r["trial_id"]: r["adv_weight"] for r in trials.iter_rows(named=True)}
    stage = {r["trial_id"]: r["stage"] for r in trials.iter_rows(named=True)}
    ids = [t for t in history["trial_id"].unique(maintain_order=True).to_list() if t in groups]
    info = pl.DataFrame({
        "trial_id": ids, "group": [groups[t] for t in ids], "offset": [offsets.get(t, 0) for t in ids],
        "pretraining": [stage[t] == schema.STAGE_PRETRAIN for t in ids],
        "adv_weight": [adv_weight[t] for t in ids],
    }, schema={"trial_id": pl.Utf8, "group": pl.Utf8, "offset": pl.Int64, "pretraining": pl.Boolean,
               "adv_weight": _NUMBER})
    frame = history.unique(["trial_id", "step"], keep="last", maintain_order=True).join(info, on="trial_id")
    weighted = _column(frame, "loss_adv_g") / pl.when(pl.col("adv_weight") > 0).then(pl.col("adv_weight"))
    return frame.select(
        "trial_id", "group", "pretraining", (pl.col("step") + pl.col("offset")).alias("x"), "offset",
        _column(frame, "val_psnr").alias("val_psnr"), _column(frame, "val_niqe").alias("val_niqe"),
        _column(frame, "loss_pixel").alias("loss_pixel"), _column(frame, "loss_perceptual").alias("loss_perceptual"),
        pl.coalesce(_column(frame, "loss_adv_raw"), weighted).alias("adv_raw"),
        (_column(frame, "loss_d_real") + _column(frame, "loss_d_fake")).alias("loss_d"),
        pl.coalesce(_column(frame, "d_gap"), _column(frame, "d_real") - _column(frame, "d_fake")).alias("d_gap"),
    )


def _series(frame: pl.DataFrame, measure: str, colors: dict[str, int]) -> list[figures.CurveSeries]:
    values = frame.filter(pl.col(measure).is_not_null() & pl.col(measure).is_finite())
    out = []
    for (name,), part in values.group_by(["group"], maintain_order=True):
        stats = (part.group_by("x").agg(pl.col(measure).mean().alias("mean"), pl.col(measure).min().alias("low"),
                                        pl.col(measure).max().alias("high"), pl.len().alias("n"))
                 .sort("x"))
        spread = stats["n"].max() > 1
        out.append(figures.CurveSeries(
            name=str(name), x=stats["x"].to_list(), mean=stats["mean"].to_list(),
            low=stats["low"].to_list() if spread else None, high=stats["high"].to_list() if spread else None,
            n_trials=part["trial_id"].n_unique(), color=colors[str(name)], pretraining=bool(part["pretraining"][0])))
    return out


def curve_figures(history: pl.DataFrame, trials: pl.DataFrame) -> list[CurveFigure]:
    """One figure per measure that some trial reported (never an empty one)."""
    frame = long_history(history, trials)
    if frame.height == 0:
        return []
    order = frame.sort("pretraining", descending=True, maintain_order=True)["group"].unique(maintain_order=True)
    colors = {name: i for i, name in enumerate(order.to_list())}
    out = []
    for measure in MEASURES:
        series = _series(frame, measure.column, colors)
        if not series:
            continue
        drawn = frame.filter(pl.col(measure.column).is_not_null() & ~pl.col("pretraining") & (pl.col("offset") > 0))
        fig = figures.compare_curves(series, title=measure.title, y_title=measure.y_title,
                                     stage_ends=drawn["offset"].unique().to_list(), threshold=measure.threshold)
        out.append(CurveFigure(measure, fig))
    return out
