"""study_versions.parquet's rows: each version's mean and standard deviation over seeds on every dataset and
metric (`version_rows`), in the order the report lists versions (`ordered_versions`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from results import dose, schema
from results.rows import source_trial
from results.schema import STUDY_ORDER
from results.study_input import StudyInput, datasets_of, metrics_of, missing_reason, scores_of, usable, used_trials


def version_rows(data: StudyInput) -> list[dict[str, Any]]:
    """Mean +- std over seeds (of the mean over images per seed) for every version, dataset and metric."""
    used = used_trials(data.trials)
    rows = []
    for version in ordered_versions(used):
        part = used.filter(pl.col("version") == version)
        trial_seeds = list(zip(part["trial_id"].to_list(), part["seed"].to_list(), strict=True))
        stage = part["stage"][0]
        for dataset in datasets_of(data):
            for metric in metrics_of(data):
                values = usable(scores_of(data, trial_seeds, dataset, metric))
                row = {"version": version, "stage": stage, "dataset": dataset, "metric": metric,
                       "n_trials": part.height}
                if values.height == 0:
                    row.update(n_seeds=0, n_images=0, mean=None, std=None,
                               missing=missing_reason(data, part["trial_id"].to_list(), dataset, metric))
                else:
                    per_seed = values.group_by("seed").agg(pl.col("value").mean())["value"].to_numpy()
                    row.update(n_seeds=len(per_seed), n_images=values["image"].n_unique(),
                               mean=float(per_seed.mean()), low=float(per_seed.min()), high=float(per_seed.max()),
                               std=float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None, missing=None)
                rows.append(row)
    return rows


def ordered_versions(trials: pl.DataFrame) -> list[str]:
    """Baselines, then the study's order with each pretraining (and its equal-budget control) before the first
    version that started from it."""
    present = trials["version"].unique().to_list()
    baselines = sorted(trials.filter(pl.col("stage") == schema.STAGE_BASELINE)["version"].unique().to_list())
    by_id = {r["trial_id"]: r for r in trials.iter_rows(named=True)}
    controls = {source_trial(r["init_from"], by_id): r["version"] for r in by_id.values() if dose.is_control(r)}
    order: list[str] = []
    for name in STUDY_ORDER:
        sources = trials.filter((pl.col("version") == name) & pl.col("init_from").is_not_null())["init_from"]
        for source in sources.to_list():
            source = source_trial(source, by_id)
            if source in by_id and by_id[source]["version"] not in order:
                order.append(by_id[source]["version"])
                order += [controls[source]] if controls.get(source) not in (None, *order) else []
        order.append(name)
    known = [v for v in order if v in present and v not in baselines]
    return baselines + known + sorted(set(present) - set(known) - set(baselines))
