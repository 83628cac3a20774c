"""Resource arithmetic of runs and sweeps: the fail-fast check, GPU packing (fractional GPUs per worker), the
per-GPU batch warning; and, in a local Ray that believes in one GPU, that Ray packs what the plan says."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pytest

from harness.cluster.packing import TRIAL_DRIVER_RESOURCES, plan_concurrency, trial_resources
from harness.cluster.resources import MIN_PER_GPU_BATCH, check_resources, check_run, per_gpu_batch_warning


def packed_trials(n_gpus: int, n_cpus: float, trial_cpu: float, trial_gpu: float, driver_cpu: float) -> int:
    """Reference: place trials one by one, first fit, the way Ray places a fractional GPU (within one GPU);
    counted in Ray's 1/10000 units so float rounding cannot decide."""
    gpus = [10_000] * n_gpus
    cpus = round(n_cpus * 10_000)
    need_cpu, need_gpu = round((trial_cpu + driver_cpu) * 10_000), round(trial_gpu * 10_000)
    placed = 0
    while cpus >= need_cpu:
        if need_gpu:
            if need_gpu <= 10_000:
                slot = next((i for i, free in enumerate(gpus) if free >= need_gpu), None)
                if slot is None:
                    break
                gpus[slot] -= need_gpu
            else:  # whole GPUs: that many free GPUs
                whole = need_gpu // 10_000
                free = [i for i, f in enumerate(gpus) if f == 10_000][:whole]
                if len(free) < whole:
                    break
                for i in free:
                    gpus[i] = 0
        cpus -= need_cpu
        placed += 1
    return placed


# ------------------------------------------------------------------------------------------ check_resources


def test_fractional_gpu_per_worker_is_accepted():
    assert check_resources(1, 1.0, 0.25, 16, {"CPU": 4, "GPU": 1}) is None
    assert check_resources(1, 1.0, 0.1, 16, {"CPU": 4, "GPU": 1}) is None


@pytest.mark.parametrize(("args", "words"), [
    ((1, 1.0, 1.5, 16, {"CPU": 4, "GPU": 2}), "whole number"),
    ((1, 1.0, 0.00001, 16, {"CPU": 4, "GPU": 1}), "0.0001"),
    ((2, 1.0, 0.5, 16, {"CPU": 4, "GPU": 1}), "NCCL"),
    ((4, 1.0, 1.0, 16, {"CPU": 8, "GPU": 2}), "needs 4 CPU / 4 GPU"),
    ((3, 1.0, 0.0, 16, {"CPU": 2, "GPU": 0}), "the cluster has 2 CPU / 0 GPU"),
    ((3, 1.0, 0.0, 16, {"CPU": 8, "GPU": 0}), "not divisible by 3"),
    ((0, 1.0, 0.0, 16, {"CPU": 8, "GPU": 0}), "at least 1"),
    ((1, -1.0, 0.0, 16, {"CPU": 8, "GPU": 0}), "negative"),
])
def test_impossible_requests_are_refused_with_the_reason(args, words):
    with pytest.raises(ValueError, match=words):
        check_resources(*args)


def test_exact_fit_is_not_refused_by_float_rounding():
    # 3 x 0.1 CPU is exactly 0.3 CPU in Ray's units, although 3 * 0.1 > 0.3 in floats
    assert 3 * 0.1 > 0.3
    assert check_resources(3, 0.1, 0.0, 3, {"CPU": 0.3, "GPU": 0}) is None


def test_check_run_reads_a_spec_and_returns_the_batch_warning(caplog):
    spec = SimpleNamespace(workers=8, cpus_per_worker=1.0, gpus_per_worker=1.0,
                           cfg=SimpleNamespace(data=SimpleNamespace(batch_size=16)))
    with caplog.at_level("WARNING"):
        warning = check_run(spec, {"CPU": 64, "GPU": 8})
    assert warning is not None and "batch of 2 per GPU" in warning
    assert warning in caplog.text


# ------------------------------------------------------------------------------------ per-GPU batch warning


@pytest.mark.parametrize(("batch", "workers", "gpus", "warns"), [
    (16, 8, 1.0, True),  # the papers' batch over 8 GPUs: 2 per GPU
    (16, 4, 1.0, True),  # 4 per GPU
    (16, 2, 1.0, False),  # exactly 8 per GPU
    (64, 8, 1.0, False),
    (16, 8, 0.0, False),  # CPU DDP: no GPU to starve
    (4, 1, 1.0, False),  # one worker: no DDP split
])
def test_per_gpu_batch_warning(batch, workers, gpus, warns):
    warning = per_gpu_batch_warning(batch, workers, gpus)
    assert (warning is not None) == warns
    if warns:
        assert f"{batch / workers:g} per GPU" in warning and str(MIN_PER_GPU_BATCH * workers) in warning


# ------------------------------------------------------------------------------------------ plan_concurrency


def test_quarter_gpu_packs_four_trials_per_gpu_and_says_so():
    n, text = plan_concurrency({"CPU": 16, "GPU": 1}, 1.0, 0.25)
    assert n == 4
    assert "4 trials share each GPU (0.25 GPU per worker)" in text and "limited by GPUs" in text


@pytest.mark.parametrize(("cpus", "gpus", "trial_cpu", "trial_gpu"), [
    (16, 1, 1.0, 0.25),
    (16, 2, 1.0, 0.4),  # 2 per GPU: 4, not floor(2 / 0.4) = 5
    (16, 3, 1.0, 0.3),
    (64, 8, 2.0, 0.1),
    (4, 1, 1.0, 0.25),  # 4 by CPUs and by the GPU
    (3, 1, 1.0, 0.25),  # CPU-bound: 3
    (2, 0, 1.0, 0.0),  # the trial's Tune function holds no CPU: two 1-CPU trials fit in 2 CPUs
    (8, 0, 1.25, 0.0),
    (16, 8, 4.0, 2.0),  # whole GPUs
    (16, 8, 1.0, 1.0),
])
def test_plan_matches_first_fit_packing(cpus, gpus, trial_cpu, trial_gpu):
    n, _ = plan_concurrency({"CPU": cpus, "GPU": gpus}, trial_cpu, trial_gpu)
    expected = packed_trials(gpus, cpus, trial_cpu, trial_gpu, TRIAL_DRIVER_RESOURCES.get("CPU", 0.0))
    assert n == max(expected, 1)


def test_max_concurrent_caps_the_plan():
    n, text = plan_concurrency({"CPU": 16, "GPU": 1}, 1.0, 0.25, max_concurrent=2)
    assert n == 2 and text.startswith("2 trial(s) at once (--max-concurrent)")
    assert plan_concurrency({"CPU": 16, "GPU": 1}, 1.0, 0.25, max_concurrent=9)[0] == 4


# ------------------------------------------------------------------------------- the same arithmetic in Ray


@pytest.fixture(scope="module")
def fake_gpu_ray():
    """A local Ray with 5 CPUs and one GPU it believes in (there is none): enough CPUs that the GPU decides."""
    import ray

    from harness.cluster.local_ray import init_local_ray, shutdown_ray

    if ray.is_initialized():  # the session's Ray (tests/harness/conftest.py): shut down the product's way
        shutdown_ray()
    init_local_ray(5, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    shutdown_ray()


@pytest.mark.slow
def test_ray_packs_four_quarter_gpu_workers_and_holds_the_fifth(fake_gpu_ray):
    ray = fake_gpu_ray
    n, _ = plan_concurrency(ray.cluster_resources(), 1.0, 0.25)
    assert n == 4

    @ray.remote(num_cpus=1, num_gpus=0.25)
    class Worker:
        def gpu_ids(self):
            return ray.get_gpu_ids()

    workers = [Worker.remote() for _ in range(5)]
    calls = [w.gpu_ids.remote() for w in workers]
    # Ray places the five at once and in no promised order (on a loaded machine the fifth created may take a
    # quarter before the third): any four start, and then one waits
    ready, waiting = ray.wait(calls, num_returns=4, timeout=120)
    assert len(ready) == 4, "four 0.25-GPU workers did not all start on one GPU"
    assert {tuple(ids) for ids in ray.get(ready)} == {(0,)}, "the four workers should share GPU 0"
    ready5, _ = ray.wait(waiting, timeout=3)
    assert not ready5, "a fifth 0.25-GPU worker ran: the GPU was overcommitted"
    ray.kill(workers[calls.index(ready[0])])
    ready5, _ = ray.wait(waiting, timeout=120)
    assert ready5, "the fifth worker did not start once a quarter GPU was free"
    for w, call in zip(workers, calls, strict=True):
        if call != ready[0]:
            ray.kill(w)


@pytest.mark.slow
def test_ray_reserves_trials_as_the_plan_counts_them(fake_gpu_ray):
    """A sweep trial is a Tune function (one byte of memory, no CPU) plus its workers; with 1.25 CPU per trial's
    workers, 5 CPUs hold 4 trials: the plan's count, checked with Ray's own placement groups."""
    ray = fake_gpu_ray
    from ray.util.placement_group import placement_group, remove_placement_group

    n, text = plan_concurrency(ray.cluster_resources(), 1.25, 0.0)
    assert n == 4 and "limited by CPUs" in text
    # start from an idle cluster: the previous test's killed actors give their CPUs back asynchronously, and
    # 4 x 1.25 CPU fills the 5 CPUs exactly
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0.0) < 5 - 1e-6 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert math.isclose(ray.available_resources().get("CPU", 0.0), 5, abs_tol=1e-6), ray.available_resources()
    groups = []
    for _ in range(n + 1):
        groups.append(placement_group([TRIAL_DRIVER_RESOURCES]))
        groups.append(placement_group([{"CPU": 1.25}]))
    try:
        placed = [g.wait(timeout_seconds=30) for g in groups[: 2 * n]]
        assert all(placed)
        assert groups[2 * n].wait(timeout_seconds=10)  # the fifth trial's Tune function still fits ...
        assert not groups[2 * n + 1].wait(timeout_seconds=3)  # ... its workers do not
        assert math.isclose(ray.available_resources().get("CPU", 0.0), 5 - 4 * 1.25, abs_tol=1e-4)
    finally:
        for g in groups:
            remove_placement_group(g)


# ------------------------------------------------------------------------------------------ trial_resources


@pytest.mark.parametrize(("workers", "cpus", "gpus", "expected"), [
    (1, 1.0, 0.0, {"CPU": 1.0}),  # trains in the Tune trial itself: the trial holds the worker's CPU
    (1, 2.0, 0.25, {"CPU": 2.0, "GPU": 0.25}),
    (2, 1.0, 1.0, TRIAL_DRIVER_RESOURCES),  # drives a TorchTrainer whose workers hold their own
])
def test_a_trial_holds_what_trains_in_it(workers, cpus, gpus, expected):
    assert trial_resources(workers, cpus, gpus) == expected
