"""Scores a resume can keep: a results folder records in run.json (`scored`) what each model's scores were computed
from (the sha256 of the generator file it scored, and one digest of how it was scored: the benchmark sets, scale,
data folder, kept images, the scoring and model code and the torch and pyiqa versions). A resume that finds a model's
weights and that digest unchanged takes its rows from scores.parquet and summary.parquet instead of scoring it
again (`harness.sweeps.collect.collect_results`); its trial row is built anew. A resume with nothing left to train
scores nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from results import io, schema

log = logging.getLogger(__name__)

RUN_KEY = schema.RUN_SCORED  # run.json: {"with": scoring digest, "weights": {trial_id: sha256 of the scored file}}
BASELINE = "baseline"  # the "weights" of the bicubic baseline: none to change


class Scoring(Protocol):
    """What a score depends on beside the weights (`harness.sweeps.collect.Scoring` has it)."""

    datasets: Sequence[str]
    scale: int
    data_root: Path
    images_dir: Path
    save_images: Sequence[str]


@dataclass(frozen=True)
class Prior:
    """One model's rows from the folder's last scoring, and the weights they were computed from."""

    weights: str
    scores: pl.DataFrame
    summary: pl.DataFrame


def weights_digest(checkpoint: Path) -> str:
    """sha256 of a checkpoint's generator file: the weights a model's scores were computed from."""
    from srgan.checkpoint import GENERATOR_FILE
    from srgan.files import file_hash

    return file_hash(Path(checkpoint) / GENERATOR_FILE)


@lru_cache(maxsize=1)
def _code() -> str:
    """sha256 over the sources a score depends on: srgan's (the models, resize and checkpoints: the pretraining
    cache's `code_version`) and benchmarks/scoring's (metrics, datasets; `package_sources`)."""
    import benchmarks.scoring
    from harness.sweeps.cache import code_version, package_sources

    return hashlib.sha256(json.dumps([code_version(), package_sources(benchmarks.scoring)]).encode()).hexdigest()


def scoring_digest(scoring: Scoring) -> str:
    """One digest of how `scoring` scores a model, beside its weights (see the module docstring)."""
    import torch

    try:
        pyiqa = metadata.version("pyiqa")
    except metadata.PackageNotFoundError:
        pyiqa = None
    record = {"datasets": list(scoring.datasets), "scale": scoring.scale,
              "data_root": str(Path(scoring.data_root).resolve()), "save_images": list(scoring.save_images),
              "images_dir": str(Path(scoring.images_dir).resolve()), "code": _code(), "torch": torch.__version__,
              "pyiqa": pyiqa}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def record(scoring: Scoring, weights: dict[str, str]) -> dict[str, Any]:
    """run.json's `scored`."""
    return {"with": scoring_digest(scoring), "weights": dict(sorted(weights.items()))}


def priors(out: Path, scoring: Scoring) -> dict[str, Prior]:
    """By trial id, the rows the folder's last scoring wrote and the weights they came from; {} where there was
    none, it scored another way, or its tables cannot be read. A model with no score rows (it failed), or whose kept
    images are gone, has none."""
    recorded = (io.read_json(out / schema.RUN_FILE, required=False) or {}).get(RUN_KEY)
    if not isinstance(recorded, dict) or recorded.get("with") != scoring_digest(scoring):
        return {}
    try:
        scores = pl.read_parquet(out / schema.SCORES_FILE)
        summary = pl.read_parquet(out / schema.SUMMARY_FILE)
    except (OSError, pl.exceptions.PolarsError) as err:
        log.warning("scores of %s not reused: %s", out, err)
        return {}
    found = {}
    for trial_id, weights in (recorded.get("weights") or {}).items():
        mine = scores.filter(pl.col("trial_id") == trial_id), summary.filter(pl.col("trial_id") == trial_id)
        kept = not scoring.save_images or (Path(scoring.images_dir) / trial_id).is_dir()
        if mine[0].height and mine[1].height and kept:
            found[trial_id] = Prior(weights, *mine)
    return found


def kept(out: Path, scoring: Scoring, jobs: Sequence[Any], checkpoint_of: Callable[[Any], Path | None]
         ) -> dict[int, Prior]:
    """By index in `jobs` (a `harness.sweeps.collect.Outcome`, or None for the baseline), the prior scores that
    stay: those of a job whose checkpoint to score (`checkpoint_of(job)`) holds the weights they came from."""
    found = priors(out, scoring)
    if not found:
        return {}
    stay = {}
    for i, job in enumerate(jobs):
        prior = found.get(job.trial_id if job is not None else "bicubic")
        if prior is None:
            continue
        ckpt = checkpoint_of(job) if job is not None else None
        now = BASELINE if job is None else weights_digest(ckpt) if ckpt is not None else None
        if prior.weights == now:
            stay[i] = prior
    if stay:
        log.info("scoring: %d of %d models keep the scores of %s's last scoring (their weights and how they are "
                 "scored unchanged)", len(stay), len(jobs), out)
    return stay


def take(prior: Prior, into: Any) -> None:
    """Add a model's `prior` rows to a `harness.sweeps.collect.Collected`, as scoring it would."""
    from benchmarks.scoring.evaluate import missing_reasons

    into.scores.append(prior.scores)
    into.summaries.append(prior.summary)
    into.missing.update(missing_reasons(prior.summary))
