"""How many sweep trials run at once, and what each Tune trial holds (fractional GPUs included)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.cluster.resources import UNITS, ray_units

# What a sweep's Tune trial holds when it only drives a TorchTrainer (a multi-worker trial): one byte of Ray's
# "memory" resource. Tune places every trial in a placement group and a bundle cannot be empty; holding CPU
# instead (0.001) made 2 one-CPU trials need 2.002 CPUs, so a 2-core machine ran one trial at a time (measured:
# two Tune trials of 4-s TorchTrainer runs took 41.7 s with 0.001 CPU, 30.6 s with this).
# `max_concurrent_trials` bounds the number of drivers (Ray Train's Tune guide).
TRIAL_DRIVER_RESOURCES = {"memory": 1}


def trial_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float) -> dict[str, float]:
    """What one Tune trial of a sweep reserves. A single-worker trial trains in the trial's own process
    (`harness.run.train.train_in_trial`), so the trial holds the worker's CPUs and GPUs itself; a multi-worker trial
    only drives its TorchTrainer, whose workers reserve theirs."""
    if workers > 1:
        return dict(TRIAL_DRIVER_RESOURCES)
    return {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker > 0 else {})}


def plan_concurrency(available: Mapping[str, float], per_trial_cpu: float, per_trial_gpu: float,
                     max_concurrent: int = 0, *, driver_cpu: float = TRIAL_DRIVER_RESOURCES.get("CPU", 0.0)
                     ) -> tuple[int, str]:
    """How many sweep trials run at once, and a one-line account of it.

    A trial holds `driver_cpu` for its Tune function plus its workers' `per_trial_cpu`/`per_trial_gpu`. A
    fractional GPU (below 1) is packed within one GPU, `floor(1 / gpu)` trials per GPU; whole GPUs are counted
    against the total. `max_concurrent` (> 0) caps the result. At least 1 (check_resources refuses what cannot
    fit at all)."""
    have_cpu, have_gpu = float(available.get("CPU", 0)), float(available.get("GPU", 0))
    cpu_units = ray_units(per_trial_cpu + driver_cpu)
    by_cpu = ray_units(have_cpu) // cpu_units if cpu_units else math.inf
    parts = [f"{per_trial_cpu + driver_cpu:g} CPU"]
    if per_trial_gpu <= 0:
        by_gpu = math.inf
    elif per_trial_gpu < 1:
        share = UNITS // ray_units(per_trial_gpu)
        by_gpu = share * math.floor(have_gpu + 1e-9)
        parts.append(f"{per_trial_gpu:g} GPU: {share} trials share each GPU ({per_trial_gpu:g} GPU per worker)")
    else:
        by_gpu = ray_units(have_gpu) // ray_units(per_trial_gpu)
        parts.append(f"{per_trial_gpu:g} GPU")
    fit = min(by_cpu, by_gpu)
    limit = "CPUs" if by_cpu <= by_gpu else "GPUs"
    if fit == math.inf:
        fit, limit = 1, "no resources asked"
    n = max(int(fit), 1)
    text = (f"{n} trial(s) at once; each holds {' + '.join(parts)}; cluster {have_cpu:g} CPU / {have_gpu:g} GPU "
            f"(limited by {limit})")
    if max_concurrent and max_concurrent < n:
        n = max_concurrent
        text = f"{n} trial(s) at once (--max-concurrent); " + text.split("; ", 1)[1]
    return n, text
