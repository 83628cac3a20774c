"""The study's statistics, computed from a results folder: `compute_study(results_dir)` writes the study tables.

It answers the original study's comparison (v1 -> v2 -> v3, then RaGAN and ESRGAN) with measured values, one
module per table:

- study.parquet (`results.study_comparisons`): paired differences between consecutive versions (v2 - v1, v3 - v2,
  ragan - v3, esrgan - ragan), between each GAN stage and the pretraining it started from
  (`v3 - srresnet-pretrain`, unequal budgets: descriptive), between each GAN stage and its equal-budget control
  (`v3 - srresnet-continued`) and between each ladder arm and its 0 arm (`results.dose`), over (seed, image)
  pairs. The interval is a t interval from a two-way crossed random-effects model of the differences (training
  seed x image, ANOVA estimates, Satterthwaite degrees of freedom: `results.stats`, which cites its sources), so
  it covers seed-to-seed and image-to-image variation and keeps its coverage at 3 seeds. Each comparison has a
  two-sided t test; the verdict uses its p-value Holm-adjusted over the study's family for that metric (every
  comparison on every dataset, and a ladder's trends). Each row also gives the minimum difference the study
  could detect (`mdd`, 80 % power at alpha 0.05), the probability of improvement over seeds, the estimated
  variance components, whether the two sides had equal training budgets and what sources of variation the
  interval includes;
- study_dose.parquet (`results.dose`): a ladder's trend, Holm-adjusted in the same family;
- study_versions.parquet (`results.study_versions`): per-version means and standard deviations over seeds;
- study_profile.parquet (`results.study_profile`): per-version configuration facts and GAN stability measured from
  the training history.

`results.study_input` reads the folder for all of them. Power for the next study (`harness.study --dry-run
--variance-from DIR`) is `results.study_power`.

Table layouts are in `results.schema` (STUDY_*). Torch-free: numpy and polars only.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import polars as pl

from results import dose, io, schema
from results.stats import CI_LEVEL
from results.study_comparisons import adjust, comparison_rows
from results.study_input import datasets_of, load_study_input, metrics_of
from results.study_profile import profile_rows
from results.study_versions import version_rows

log = logging.getLogger(__name__)


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pl.DataFrame:
    full = [{name: row.get(name) for name in columns} for row in rows]
    return pl.DataFrame(full, schema=schema.polars_schema(columns))


def _json_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return [{k: clean(v) for k, v in record.items()} for record in frame.to_dicts()]


def compute_study(results_dir: str | Path, *, ci: float = CI_LEVEL) -> dict[str, Path]:
    """Write the study tables (parquet + JSON) into `results_dir`; returns {table name: parquet path}.

    Needs trials.parquet and scores.parquet; history.parquet and stops.json are used when present."""
    root = Path(results_dir)
    data = load_study_input(root)
    io.check_writable(root)
    rows = comparison_rows(data, ci=ci)
    trend = dose.dose_rows(data.trials, data.scores, datasets_of(data), metrics_of(data), ci=ci)
    if trend:  # the trends join each metric's family: p_holm over the comparisons and the trends together
        adjust(rows + trend)
        dose.trend_verdicts(trend)
    tables = {
        "study": (rows, schema.STUDY_COLUMNS, schema.STUDY_FILE, schema.STUDY_JSON),
        "dose": (trend, schema.STUDY_DOSE_COLUMNS, schema.STUDY_DOSE_FILE, schema.STUDY_DOSE_JSON),
        "versions": (version_rows(data), schema.STUDY_VERSION_COLUMNS, schema.STUDY_VERSIONS_FILE,
                     schema.STUDY_VERSIONS_JSON),
        "profile": (profile_rows(data), schema.STUDY_PROFILE_COLUMNS, schema.STUDY_PROFILE_FILE,
                    schema.STUDY_PROFILE_JSON),
    }
    paths = {}
    for name, (rows, columns, parquet_name, json_name) in tables.items():
        frame = _frame(rows, columns)
        paths[name] = io.write_table(root / parquet_name, frame)
        io.write_json(root / json_name, _json_records(frame))
    log.info("study tables written to %s", root)
    return paths
