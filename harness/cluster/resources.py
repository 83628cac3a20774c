"""What a run may ask of Ray, checked before Ray starts: the machine's (or cluster's) resources, the fail-fast
check of a request Ray could never place, and the per-GPU batch warning. Starting Ray: `harness.cluster.local_ray`; how
many sweep trials fit at once: `harness.cluster.packing`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

MIN_PER_GPU_BATCH = 8
UNITS = 10_000  # Ray accounts resources in units of 1/10000 (ray._raylet.RESOURCE_UNIT_SCALING)


def local_resources() -> dict[str, float]:
    """What a local Ray on this machine will offer: its CPUs and CUDA GPUs (before Ray starts)."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


def ray_units(x: float) -> int:
    """`x` in Ray's resource units (1/10000): compare requests the way Ray does, without float rounding."""
    return round(x * UNITS)


def check_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float, batch_size: int,
                    available: Mapping[str, float]) -> str | None:
    """Fail fast (ValueError) on a request Ray could never place; return the per-GPU batch warning, if any.

    A request that does not fit would otherwise stay PENDING forever with only a warning from Ray.
    GPUs per worker may be a fraction (below 1: several workers share a GPU) or a whole number."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if cpus_per_worker < 0 or gpus_per_worker < 0:
        raise ValueError(f"resources per worker cannot be negative: {cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU")
    gpu_units = ray_units(gpus_per_worker)
    if gpus_per_worker and (gpu_units == 0 or abs(gpu_units / UNITS - gpus_per_worker) > 1e-12):
        raise ValueError(f"--gpus-per-worker {gpus_per_worker!r}: Ray counts GPUs in steps of 0.0001")
    if gpus_per_worker > 1 and ray_units(gpus_per_worker) % UNITS:
        raise ValueError(f"--gpus-per-worker {gpus_per_worker:g}: above 1 it must be a whole number of GPUs "
                         f"(Ray places a fraction only within one GPU)")
    if 0 < gpus_per_worker < 1 and workers > 1:
        raise ValueError(f"--gpus-per-worker {gpus_per_worker:g} with {workers} workers: a fractional GPU is for "
                         f"packing several single-worker runs on one GPU; DDP ranks of one run may land on the "
                         f"same GPU, which NCCL refuses. Use 1 worker per run, or whole GPUs per worker")
    need_cpu = workers * cpus_per_worker
    need_gpu = workers * gpus_per_worker
    have_cpu, have_gpu = float(available.get("CPU", 0)), float(available.get("GPU", 0))
    if ray_units(need_cpu) > ray_units(have_cpu) or ray_units(need_gpu) > ray_units(have_gpu):
        raise ValueError(
            f"impossible resource request: {workers} worker(s) x ({cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU) "
            f"needs {need_cpu:g} CPU / {need_gpu:g} GPU, the cluster has {have_cpu:g} CPU / {have_gpu:g} GPU")
    if batch_size % workers:
        raise ValueError(f"data.batch_size {batch_size} is not divisible by {workers} workers")
    return per_gpu_batch_warning(batch_size, workers, gpus_per_worker)


def check_run(spec: Any, available: Mapping[str, float]) -> str | None:
    """`check_resources` for a `RunSpec` (workers, cpus_per_worker, gpus_per_worker, cfg.data.batch_size); logs
    and returns the per-GPU batch warning, if any."""
    warning = check_resources(spec.workers, spec.cpus_per_worker, spec.gpus_per_worker, spec.cfg.data.batch_size,
                              available)
    if warning:
        log.warning("warning: %s", warning)
    return warning


def per_gpu_batch_warning(batch_size: int, workers: int, gpus_per_worker: float) -> str | None:
    """A warning when DDP over GPUs leaves each GPU a batch below MIN_PER_GPU_BATCH (launch-bound, and batch
    statistics from a handful of images); None for CPU runs, a single worker, or a large enough batch."""
    if gpus_per_worker <= 0 or workers <= 1:
        return None
    per_gpu = batch_size / workers
    if per_gpu >= MIN_PER_GPU_BATCH:
        return None
    return (f"DDP over {workers} GPU workers leaves a batch of {per_gpu:g} per GPU (data.batch_size {batch_size}): "
            f"below {MIN_PER_GPU_BATCH}, the GPUs wait on kernel launches and per-GPU batch statistics are noisy. "
            f"Raise data.batch_size to at least {MIN_PER_GPU_BATCH * workers} or use fewer workers")
