"""A sweep's shared pretrainings and the pretraining cache (`harness.sweeps.cache`): which come from the cache
(verified,
copied into their trial folders, scored like trained ones), which are left to train, storing the finished ones,
and what run.json records of it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.sweeps import cache, plan
from results import schema

log = logging.getLogger(__name__)


def cached_pretrainings(sweep: plan.SweepPlan, out: Path, *, resuming: bool,
                        dry_run: bool = False) -> dict[str, cache.Entry]:
    """The shared pretrainings the cache holds, verified (`harness.sweeps.cache.lookup`), by run name; none with
    --no-cache. On --resume a pretraining that already has its trial folder keeps it (trained here, or copied
    from the cache before). A dry run leaves a bad entry where it is."""
    if not sweep.request.pretrain_cache:
        return {}
    hits = {}
    for name, cfg in sorted(sweep.pretrain_configs.items()):
        if resuming and (out / schema.TRIALS_DIR / name).is_dir():
            continue
        try:
            entry = cache.lookup(cfg, sweep.settings.data_root, discard_bad=not dry_run)
        except OSError as err:  # an unreadable cache is a miss, never a failed sweep
            log.warning("pretraining cache: %s not looked up (%s)", name, err)
            continue
        if entry is not None:
            hits[name] = entry
    return hits


def pretrainings_to_train(sweep: plan.SweepPlan, out: Path, cached: dict[str, cache.Entry]) -> list[str]:
    """Copy the cached pretrainings into their trial folders; the names of those left to train."""
    left = []
    for name in sorted(sweep.settings.pretrainings):
        folder = out / schema.TRIALS_DIR / name
        if cache.from_cache(folder) is not None:  # copied before an interruption
            continue
        entry = cached.get(name)
        if entry is not None:
            try:
                cache.materialise(entry, folder)
                print(f"  {name}: from the cache ({entry.path}, trained in {entry.source.get('run')}); "
                      "no pretraining trial runs", flush=True)
                continue
            except (cache.CacheError, OSError) as err:
                log.warning("pretraining cache: %s could not be copied (%s); it is trained", name, err)
        left.append(name)
    return left


def store_pretrainings(sweep: plan.SweepPlan, out: Path, names: list[str]) -> None:
    """Keep every pretraining of `names` that finished in the cache (`harness.sweeps.cache.store`, under the key each
    recorded when it trained: never what the data root holds now); a failure to store is a warning (the cache
    saves time, the run does not depend on it)."""
    configs = sweep.pretrain_configs
    for name in names:
        try:
            cache.store(out / schema.TRIALS_DIR / name, configs[name], source_run=out)  # under the key it trained on
        except (cache.CacheError, OSError) as err:
            log.warning("pretraining cache: %s not stored (%s)", name, err)


def copied_from_cache(out: Path, params: dict[str, Any]) -> bool:
    """Whether a Tune trial's pretraining (`params["run_name"]`) was copied from the cache into its folder: Tune
    planned it before an interruption, the resume found it in the cache, and its trial must not train it again
    (it would fail on the copied folder and print FAILED; issue 27.8)."""
    name = params.get("run_name")
    return bool(name) and cache.from_cache(out / schema.TRIALS_DIR / name) is not None


def record_key(run_dir: Path, cfg, data_root: str | Path) -> None:
    """Record, in the pretraining's trial folder as it starts, the cache key of what it trains on
    (`harness.sweeps.cache.record_key`); a failure is a warning: the pretraining then is not stored."""
    try:
        cache.record_key(run_dir, cfg, data_root)
    except (OSError, ValueError) as err:
        log.warning("pretraining %s: its cache key was not recorded (%s); it will not be stored", Path(run_dir).name,
                    err)


def pretrain_outcomes(sweep: plan.SweepPlan, out: Path) -> list:
    """The shared pretrainings' outcomes: those copied from the cache (scored like trained ones), then Tune's."""
    from harness.sweeps.collect import Outcome, tune_outcomes

    names = sorted(n for n in sweep.settings.pretrainings if cache.from_cache(out / schema.TRIALS_DIR / n))
    outcomes = [Outcome(trial_id=n, run_dir=out / schema.TRIALS_DIR / n, stage=schema.STAGE_PRETRAIN,
                        params={"run_name": n}) for n in names]
    if (out / schema.PRETRAIN_TUNE_DIR).is_dir():
        outcomes += [o for o in tune_outcomes(out / schema.PRETRAIN_TUNE_DIR, out, stage=schema.STAGE_PRETRAIN)
                     if o.trial_id not in names]
    return outcomes


def cache_record(sweep: plan.SweepPlan, out: Path) -> dict[str, Any]:
    """run.json's `pretrain_cache`: whether the cache was used, where, and which pretrainings came from it (the
    entry, and the run that trained it)."""
    used = {n: cache.from_cache(out / schema.TRIALS_DIR / n) for n in sorted(sweep.settings.pretrainings)}
    return {"enabled": sweep.request.pretrain_cache,
            "root": str(cache.cache_root()) if sweep.request.pretrain_cache else None,
            "from_cache": {n: marker for n, marker in used.items() if marker is not None}}
