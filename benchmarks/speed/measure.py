"""What the speed benchmarks measure with: the device's description, a timer that waits for the device, the
benchmark configs, and the measures of how well a step uses the device: conv/matmul FLOPs per image, a matmul
ceiling measured now (the MFU denominator), the share of a window the GPU was busy (profiler) and host
synchronisations per call (CUDA sync debug mode). Used by `benchmarks.speed.throughput` and
`benchmarks.speed.gpu_check`."""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from srgan.config import ExperimentConfig, override
from srgan.losses import vgg19_cache_path
from srgan.versions import preset

TRAIN_DIRS = ("train/T91", "train/BSD200")  # the loader benchmarks' folders (under the data root)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"cpu: {model}, {cores} cores usable, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, load average {load}")


def sync(device: torch.device) -> None:
    """Wait for the device to finish what is queued (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], *, repeats: int, warmup: int, device: torch.device,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per call of `fn`, after `warmup` untimed calls, on `clock` (wall by default)."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = clock()
    for _ in range(repeats):
        fn()
    sync(device)
    return (clock() - start) / repeats


def bench_config(name: str, *, batch: int | None, tiny: bool = False) -> tuple[ExperimentConfig, bool]:
    """A full-size preset, or its tiny variant (batch overridden if asked); untrained VGG when the ImageNet
    weights are missing."""
    cfg = preset(f"{name}-tiny" if tiny else name)
    updates: dict[str, object] = {}
    if batch is not None:
        updates["data.batch_size"] = batch
    untrained = cfg.loss.perceptual_weight > 0 and not vgg19_cache_path().exists()
    if untrained:
        updates["loss.perceptual_weights"] = "untrained"
    return (override(cfg, updates) if updates else cfg), untrained


def matmul_ceiling(device: torch.device, *, clock: Callable[[], float] = time.perf_counter) -> tuple[float, str]:
    """Dense matmul FLOP/s measured now: the MFU denominator (bf16 on CUDA, fp32 on the CPU)."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    seconds = min(timed(lambda: a @ b, repeats=20 if device.type == "cuda" else 5, warmup=1, device=device,
                        clock=clock) for _ in range(3))  # best of three: a busy machine only ever slows it down
    return 2 * n**3 / seconds, f"{str(dtype).removeprefix('torch.')} {n}x{n} matmul"


def flops_per_image(fn: Callable[[], object], batch: int) -> float:
    """Conv/matmul FLOPs of one call of `fn` (forward and backward), per image."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / batch


def gpu_busy_share(fn: Callable[[], object], *, calls: int, device: torch.device) -> float | None:
    """Share of a window of `calls` calls (from the first launch to the device finishing) during which at
    least one GPU kernel ran, from the profiler's trace. None off CUDA or when the trace has no kernels."""
    if device.type != "cuda":
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    sync(device)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities) as prof, record_function("bench_window"):
        for _ in range(calls):
            fn()
        sync(device)
    events = prof.events()
    window = next((e for e in events if e.name == "bench_window"), None)
    kernels = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    if window is None or not kernels:
        return None
    start, end = window.time_range.start, window.time_range.end
    busy, cur_start, cur_end = 0.0, None, None
    for k_start, k_end in kernels:  # the union of the kernels' intervals, clipped to the window
        k_start, k_end = max(k_start, start), min(k_end, end)
        if k_end <= k_start:
            continue
        if cur_end is None or k_start > cur_end:
            busy += (cur_end - cur_start) if cur_end is not None else 0.0
            cur_start, cur_end = k_start, k_end
        else:
            cur_end = max(cur_end, k_end)
    busy += (cur_end - cur_start) if cur_end is not None else 0.0
    return busy / max(end - start, 1e-9)


def syncs_per_step(fn: Callable[[], object], *, calls: int, device: torch.device) -> float | None:
    """Host synchronisations per call that CUDA's sync debug mode reports (torch's own included)."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(calls):
                fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / calls


