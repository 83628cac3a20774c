"""study_profile.parquet's rows: per version, the configuration facts its trials share and, for GAN stages, the
stability measured from the training history (`profile_rows`): discriminator-collapse reports, the spread of the
unweighted adversarial loss, PSNR drift from where the GAN stage started, and divergence stops.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from results import dose, schema
from results.rows import json_list, source_trial
from results.study_input import StudyInput, used_trials
from results.study_versions import ordered_versions

# stops.json reasons (and trials' stop_reason) that are divergence stops, as the stopper writes them
DIVERGENCE_PREFIXES = ("diverged", "discriminator collapse")


def _config(row: dict) -> dict:
    """A trial's resolved config (trials.parquet's config_json); {} where it has none or it is not a JSON object."""
    try:
        parsed = json.loads(row["config_json"]) if row["config_json"] else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


FACTS = {  # profile column -> (config section, key)
    "arch": ("generator", "arch"),
    "patch_size": ("data", "patch_size"),
    "batch_size": ("data", "batch_size"),
    "train_data": ("data", "train_dirs"),
    "degradation": ("data", "degradation"),
    "warmup_steps": ("train", "warmup_steps"),
    "gan_steps": ("train", "gan_steps"),
    "pixel_type": ("loss", "pixel_type"),
    "perceptual_weight": ("loss", "perceptual_weight"),
    "perceptual_layer": ("loss", "perceptual_layer"),
    "perceptual_features": ("loss", "perceptual_weights"),
    "adv_type": ("loss", "adv_type"),
    "adv_weight": ("loss", "adv_weight"),
    "log_every": ("train", "log_every"),
    "val_every": ("train", "val_every"),
}


def _facts(part: pl.DataFrame) -> dict[str, Any]:
    values: dict[str, list] = {name: [] for name in FACTS}
    for row in part.iter_rows(named=True):
        config = _config(row)
        for name, (section, key) in FACTS.items():
            value = (config.get(section) or {}).get(key) if isinstance(config.get(section), dict) else None
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            if value is not None and value not in values[name]:
                values[name].append(value)
    facts: dict[str, Any] = {name: found[0] if len(found) == 1 else None for name, found in values.items()}
    if facts["perceptual_weight"] == 0:  # no perceptual loss: its layer and features do not apply
        facts["perceptual_layer"] = facts["perceptual_features"] = None
    varies = sorted(name for name, found in values.items() if len(found) > 1)
    facts["varies"] = json.dumps(varies) if varies else None
    return facts


def _flags(part: pl.DataFrame) -> list[str]:
    flags: list[str] = []
    for value in part["flags"].to_list():
        for flag in json_list(value):
            if flag not in flags:
                flags.append(flag)
    return flags


# How the stability measures were taken (study_profile's adv_loss_source / collapse_source).
ADV_RAW = "loss_adv_raw"
ADV_FROM_WEIGHTED = "loss_adv_g / adv_weight (older history)"
GAP_LOGGED = "d_gap"
GAP_FROM_D = "d_real - d_fake (older history; for a relativistic D it can miss a saturated D_Ra)"


@dataclass(frozen=True)
class TrialStability:
    gan_reports: int
    collapse_reports: int
    adv_loss_std: float | None
    psnr_drift: float | None
    drift_from: str | None
    adv_source: str | None = None  # ADV_*: what adv_loss_std was measured on
    gap_source: str | None = None  # GAP_*: what the collapse reports were measured on


def _last_val(history: pl.DataFrame, phase: str | None = None) -> float | None:
    part = history if phase is None else history.filter(pl.col("phase") == phase)
    values = part.sort("step")["val_psnr"].drop_nulls().drop_nans()
    return float(values[-1]) if values.len() else None


def _adversarial_loss(gan: pl.DataFrame, adv_weight: float | None) -> tuple[pl.DataFrame, str | None]:
    """(step, loss) of the unweighted adversarial G loss: `loss_adv_raw`, or in histories that lack it the
    logged (weighted) `loss_adv_g` divided by the trial's adv_weight, so versions with different weights compare."""
    raw = gan.select("step", pl.col("loss_adv_raw").alias("loss")).drop_nulls().filter(pl.col("loss").is_finite())
    if raw.height:
        return raw, ADV_RAW
    if not adv_weight:  # None or 0: the weighted loss cannot be unweighted
        return raw, None
    weighted = gan.select("step", (pl.col("loss_adv_g") / adv_weight).alias("loss")).drop_nulls()
    weighted = weighted.filter(pl.col("loss").is_finite())
    return weighted, ADV_FROM_WEIGHTED if weighted.height else None


def trial_stability(history: pl.DataFrame, trial_id: str, pretrain_id: str | None, *,
                    gap: float = schema.COLLAPSE_GAP, adv_weight: float | None = None) -> TrialStability:
    """Collapse reports, adversarial-loss spread and PSNR drift of one trial's GAN stage.

    Collapse: `d_gap` > gap (the discriminator's gap the engine logs: relativistic for a relativistic D), or for
    histories without it D(real) - D(fake). Spread: the std of the unweighted adversarial loss over the second half
    of the GAN stage (`_adversarial_loss`)."""
    own = history.filter(pl.col("trial_id") == trial_id).sort("step")
    gan = own.filter(pl.col("phase") == "gan")
    logged = gan["d_gap"].drop_nulls().drop_nans()
    if logged.len():
        gaps, gap_source = logged, GAP_LOGGED
    else:
        d = gan.select("d_real", "d_fake").drop_nulls()
        gaps, gap_source = d["d_real"] - d["d_fake"], (GAP_FROM_D if d.height else None)
    collapse = int((gaps > gap).sum()) if gaps.len() else 0
    adv_std = None
    adv, adv_source = _adversarial_loss(gan, adv_weight)
    if adv.height >= 2:
        first, last = gan["step"].min(), gan["step"].max()
        half = adv.filter(pl.col("step") >= first + (last - first) / 2)["loss"].to_numpy()
        adv_std = float(half.std(ddof=1)) if len(half) >= 2 else None
    gan_vals = gan["val_psnr"].drop_nulls().drop_nans()
    end = float(gan_vals[-1]) if gan_vals.len() else None
    start, drift_from = None, None
    if pretrain_id is not None and (pre := _last_val(history.filter(pl.col("trial_id") == pretrain_id))) is not None:
        start, drift_from = pre, "the pretraining's final validation"
    elif (warm := _last_val(own, "warmup")) is not None:
        start, drift_from = warm, "the end of the warmup"
    elif gan_vals.len() >= 2:
        start, drift_from = float(gan_vals[0]), "the first GAN-stage validation"
    drift = end - start if end is not None and start is not None else None
    return TrialStability(gaps.len(), collapse, adv_std, drift, drift_from if drift is not None else None,
                          adv_source if adv_std is not None else None, gap_source)


def _mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return None, None
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else None


def _is_divergence(reason: str | None) -> bool:
    return bool(reason) and str(reason).startswith(DIVERGENCE_PREFIXES)


def profile_rows(data: StudyInput, *, gap: float = schema.COLLAPSE_GAP) -> list[dict[str, Any]]:
    """One row per version: its configuration facts and, for GAN stages, the measured stability."""
    trials = data.trials
    by_id = {r["trial_id"]: r for r in trials.iter_rows(named=True)}
    rows = []
    used = used_trials(trials)
    for version in ordered_versions(used.filter(~dose.arms_only(used))):  # the ladder's own arms: study_dose
        every = trials.filter(pl.col("version") == version)
        part = used_trials(every)
        stage = part["stage"][0]
        row: dict[str, Any] = {"version": version, "stage": stage, "n_trials": part.height,
                               "seeds": json.dumps(sorted(s for s in set(part["seed"].to_list()) if s >= 0)),
                               **_facts(part), "flags": json.dumps(_flags(part)), "collapse_gap": gap,
                               "stopped": every.filter(pl.col("status") == schema.STATUS_STOPPED).height,
                               "failed": every.filter(pl.col("status") == schema.STATUS_FAILED).height}
        history = data.history.filter(pl.col("trial_id").is_in(part["trial_id"].to_list()))
        logged = [c for c in schema.HISTORY_COLUMNS if c not in ("trial_id", "step", "phase")
                  and history[c].drop_nulls().len() > 0]
        row["logged"] = ", ".join(logged) if logged else None
        val_points = [history.filter(pl.col("trial_id") == t)["val_psnr"].drop_nulls().len()
                      for t in part["trial_id"].to_list()]
        row["val_points"] = float(np.mean(val_points)) if history.height else None
        sources = [by_id[s] for s in {source_trial(s, by_id) for s in part["init_from"].drop_nulls().to_list()}
                   if s in by_id]
        row["pretrained_from"] = ", ".join(sorted({s["version"] for s in sources})) or None
        pre_steps = sorted({s["steps"] for s in sources if s["steps"] is not None})
        row["pretrain_steps"] = pre_steps[0] if len(pre_steps) == 1 else None
        if stage == schema.STAGE_GAN:
            row.update(_stability(data, part, every, gap, by_id))
        rows.append(row)
    return rows


def _adv_weight(row: dict) -> float | None:
    loss = _config(row).get("loss")
    weight = loss.get("adv_weight") if isinstance(loss, dict) else None
    weight = weight if isinstance(weight, int | float) else row.get("adv_weight")
    return float(weight) if weight is not None and math.isfinite(weight) else None


def _stability(data: StudyInput, part: pl.DataFrame, every: pl.DataFrame, gap: float,
               by_id: dict[str, dict]) -> dict[str, Any]:
    """Stability of a version's GAN stages: measured on its scored trials (`part`); divergence counted over all
    of them (`every`: a diverged run that left no checkpoint is a failed trial whose error says so)."""
    measured = [trial_stability(data.history, r["trial_id"], source_trial(r["init_from"], by_id), gap=gap,
                                adv_weight=_adv_weight(r)) for r in part.iter_rows(named=True)]
    reports = sum(m.gan_reports for m in measured)
    collapses = sum(m.collapse_reports for m in measured)
    shares = [m.collapse_reports / m.gan_reports for m in measured if m.gan_reports]
    adv, adv_sd = _mean_sd([m.adv_loss_std for m in measured])
    drift, drift_sd = _mean_sd([m.psnr_drift for m in measured])
    froms = sorted({m.drift_from for m in measured if m.drift_from})
    stops = 0
    for r in every.iter_rows(named=True):
        reasons = (data.stops.get(r["trial_id"]), r["stop_reason"], r["error"])
        stops += any(_is_divergence(reason) for reason in reasons)
    return {"gan_reports": reports, "collapse_reports": collapses,
            "collapse_share": collapses / reports if reports else None,
            "collapse_share_max": max(shares) if shares else None,
            "collapse_source": "; ".join(sorted({m.gap_source for m in measured if m.gap_source})) or None,
            "adv_loss_std": adv, "adv_loss_std_sd": adv_sd,
            "adv_loss_source": "; ".join(sorted({m.adv_source for m in measured if m.adv_source})) or None,
            "psnr_drift": drift, "psnr_drift_sd": drift_sd,
            "drift_from": "; ".join(froms) or None, "divergence_stops": stops}
