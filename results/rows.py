"""One builder for trials.parquet rows, used by every writer (an evaluate run, a sweep's trials, baselines)."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from results import legacy, schema

# srgan.versions.SIZES as preset-name suffixes ("full" has none), and the renamed ones results folders written
# before the size ladder was unified still have (results.legacy, until its CUTOFF).
SIZE_SUFFIXES = ("-tiny", "-cpu", "-paper", *legacy.RENAMED_SIZE_SUFFIXES)


def trial_row(trial_id: str, *, label: str, status: str, config: dict | None = None, flags: Sequence[str] = (),
              steps: int | None = None, wall_s: float | None = None, devices: int = 1, stage: str | None = None,
              init_from: str | None = None, error: str | None = None, stop_reason: str | None = None,
              seed: int | None = None, preset: str | None = None, g_updates: int | None = None,
              images_seen: int | None = None, selection: str | None = None, version: str | None = None,
              control: str | None = None, ladder_recipe: str | None = None, ladder_key: str | None = None,
              ladder_value: float | None = None) -> dict[str, Any]:
    """A trials.parquet row (`schema.TRIAL_COLUMNS`) from a resolved config dict (`asdict(ExperimentConfig)`).

    `preset` is the config's name without its size suffix (`-tiny`, `-cpu`, `-paper`); `device_hours` is wall time x
    devices. `version`, `control` and `ladder_*`: the trial's role in a study as its plan gave it (harness.sweeps.arms;
    a baseline's version is its preset)."""
    config = config or {}
    loss = config.get("loss", {})
    train = config.get("train", {})
    name = config.get("name")
    if stage is None:
        stage = schema.STAGE_BASELINE if status == schema.STATUS_BASELINE else schema.STAGE_GAN
    pretraining = stage == schema.STAGE_PRETRAIN  # pixel loss only: no perceptual or adversarial weight applies
    return {
        "trial_id": trial_id,
        "label": label,
        "preset": preset or (_version(name) if isinstance(name, str) else None),
        "pixel_weight": loss.get("pixel_weight"),
        "perceptual_weight": None if pretraining else loss.get("perceptual_weight"),
        "adv_weight": None if pretraining else loss.get("adv_weight"),
        "seed": seed if seed is not None else train.get("seed"),
        "status": status,
        "stage": stage,
        "init_from": init_from if init_from is not None else (train.get("init_from") or None),
        "error": error,
        "stop_reason": stop_reason,
        "steps": steps,
        "g_updates": g_updates,
        "images_seen": images_seen,
        "selection": selection,
        "wall_s": wall_s,
        "device_hours": wall_s * devices / 3600 if wall_s is not None else None,
        "flags": json.dumps(list(flags)),
        "config_json": json.dumps(config, sort_keys=True) if config else None,
        "version": version if version is not None else (preset if status == schema.STATUS_BASELINE else None),
        "control": control,
        "ladder_recipe": ladder_recipe,
        "ladder_key": ladder_key,
        "ladder_value": float(ladder_value) if ladder_value is not None else None,
    }


def json_list(value: str | None) -> list[str]:
    """A JSON-list column (trials' `flags`, the study profile's `flags` and `seeds`) as strings; a value that is
    not JSON is kept as one item, an empty one gives no item."""
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return [value]
    return [str(v) for v in parsed] if isinstance(parsed, list) else [str(parsed)]


def _version(config_name: str) -> str:
    """The version a config trains: its name without a size suffix ("v3-cpu" -> "v3")."""
    for size in SIZE_SUFFIXES:
        config_name = config_name.removesuffix(size)
    return config_name


BUDGET_TOLERANCE = 0.01  # generator updates differing by more than this share of the largest: "unequal-budget"


def budget_flag(updates: Sequence[int | None]) -> str | None:
    """The `budget` of a comparison whose trials made `updates` generator updates (g_updates): "unknown" where one
    is missing, "unequal-budget" where they differ by more than BUDGET_TOLERANCE of the largest, else None (equal)."""
    if any(u is None for u in updates):
        return "unknown"
    return "unequal-budget" if max(updates) - min(updates) > BUDGET_TOLERANCE * max(updates) else None


def source_trial(init_from: str | None, known: Collection[str]) -> str | None:
    """The trial a GAN stage started from, as a trial id: `init_from` itself when it is one of `known`, else the
    trial folder its path names (when known), else `init_from` as written."""
    if init_from is None or init_from in known:
        return init_from
    name = Path(init_from).name
    return name if name in known else init_from


def trial_version(row: Mapping[str, Any]) -> str:
    """What the study and the report call a trial: the `version` its row was written with (the harness writes it
    when it makes the row: "v3", "srresnet-pretrain", "srresnet-continued", "v2@adv_weight=0.1", "bicubic"). For
    folders written before that column existed (read until `results.legacy.CUTOFF`): a pretraining's name without its
    seed/hash suffix (or, older, its generator's family: `legacy.pretraining_version`), any other trial's preset
    without its size suffix."""
    if row.get("version"):
        return str(row["version"])
    preset = str(row.get("preset") or row.get("label") or row.get("trial_id") or "?")
    if row.get("stage") != schema.STAGE_PRETRAIN:
        return _version(preset)
    return legacy.pretraining_version(preset, row.get("config_json"))


def trials_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=schema.polars_schema(schema.TRIAL_COLUMNS))
