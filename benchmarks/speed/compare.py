"""The `compare` section of `python -m benchmarks.speed.throughput --compare`: per preset, batch, autocast and compile
setting, in the same run, images/s of `GanEngine.train_step` (one `pop_metrics` per timed block, as a loop that
logs) against `benchmarks.speed.reference_step.ReferenceStep` per phase, with FLOPs per image, MFU, the GPU-busy share
and host syncs per step (`benchmarks.speed.measure`); then the raw loader and the device batch stage against the
step's demand."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmarks.speed.measure import (
    TRAIN_DIRS,
    bench_config,
    flops_per_image,
    gpu_busy_share,
    matmul_ceiling,
    syncs_per_step,
    timed,
)
from benchmarks.speed.reference_step import ReferenceStep
from srgan.batches import device_batch
from srgan.config import ExperimentConfig, override
from srgan.data import PatchDataset, make_loader
from srgan.engine import GanEngine
from srgan.resize import imresize

PHASES = ("warmup", "gan")


def _phase_config(cfg: ExperimentConfig, phase: str, steps: int) -> ExperimentConfig:
    """The engine runs one phase throughout and collects once per timed block (log_every = steps)."""
    big = 10**9
    return override(cfg, {"train.warmup_steps": big if phase == "warmup" else 0, "train.gan_steps": big,
                          "train.log_every": steps, "train.val_every": big, "train.ckpt_every": big})


def compare_one(cfg: ExperimentConfig, *, amp: str, device: torch.device, steps: int, warmup: int,
                repeats: int, ceiling: float, clock: Callable[[], float] = time.perf_counter,
                torch_compile: str = "off", phases: Sequence[str] = PHASES) -> list[dict]:
    """Engine against reference for each phase of one config (`torch_compile`: `train.compile` of both sides): a row
    per phase."""
    b, p, s = cfg.data.batch_size, cfg.data.patch_size, cfg.scale
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(b, 3, p, p, generator=gen).to(device)
    lq = imresize(gt, scale=1 / s).clamp(0, 1)  # (B, 3, p/s, p/s)
    cfg = override(cfg, {"optim.amp": amp, "train.compile": torch_compile})
    return [_compare_phase(cfg, phase, lq=lq, gt=gt, device=device, steps=steps, warmup=warmup,
                           repeats=repeats, ceiling=ceiling, clock=clock) for phase in phases]


def _compare_phase(cfg: ExperimentConfig, phase: str, *, lq: torch.Tensor, gt: torch.Tensor,
                   device: torch.device, steps: int, warmup: int, repeats: int, ceiling: float,
                   clock: Callable[[], float]) -> dict:
    b = cfg.data.batch_size
    engine = GanEngine(_phase_config(cfg, phase, steps), device=device)
    ref = ReferenceStep(cfg, device=device, use_amp=engine.use_amp)
    if engine.use_amp:
        gt, lq = gt.contiguous(memory_format=torch.channels_last), lq.contiguous(memory_format=torch.channels_last)
    ref_step = ref.warmup if phase == "warmup" else ref.gan

    def engine_step() -> None:
        engine.train_step(lq, gt)

    def engine_block() -> None:
        for _ in range(steps):
            engine.train_step(lq, gt)
        engine.pop_metrics()

    def ref_block() -> None:
        for _ in range(steps):
            ref_step(lq, gt)

    for _ in range(warmup):  # untimed: allocator, cuDNN autotuning, lazy optimiser state, compilation
        engine_step()
        ref_step(lq, gt)
    engine.pop_metrics()
    t_engine, t_ref = math.inf, math.inf
    for _ in range(repeats):  # alternate, best of: both see the same machine load
        t_engine = min(t_engine, timed(engine_block, repeats=1, warmup=0, device=device, clock=clock) / steps)
        t_ref = min(t_ref, timed(ref_block, repeats=1, warmup=0, device=device, clock=clock) / steps)
    flops = flops_per_image(engine_step, b)
    busy = gpu_busy_share(engine_block, calls=1, device=device)
    syncs = syncs_per_step(engine_step, calls=3, device=device)
    engine.pop_metrics()
    ips_engine, ips_ref = b / t_engine, b / t_ref
    return {"preset": cfg.name, "batch": b, "patch_size": cfg.data.patch_size,
            "amp": "bf16" if engine.use_amp else "fp32", "compile": cfg.train.compile, "phase": phase,
            "engine": ips_engine, "reference": ips_ref,
            "ratio": ips_engine / ips_ref, "flops_per_image": flops, "mfu_engine": flops * ips_engine / ceiling,
            "mfu_reference": flops * ips_ref / ceiling, "gpu_busy_engine": busy, "host_syncs_per_step": syncs}


def compare_loader(cfg: ExperimentConfig, *, root: Path, workers: Sequence[int], batches: int,
                   device: torch.device, demand: float | None) -> list[dict]:
    """Raw uint8 patches/s from the loader (per worker count) and the device batch stage's patches/s."""
    ds = PatchDataset([root / d for d in TRAIN_DIRS], scale=cfg.scale, patch_size=cfg.data.patch_size,
                      augment=cfg.data.augment, degradation=cfg.data.degradation, seed=0)
    b = cfg.data.batch_size
    first = next(iter(make_loader(ds, global_batch=b, start_step=0, num_steps=1, raw=True)))
    stage_seconds = timed(lambda: device_batch(*first, scale=cfg.scale, degradation=cfg.data.degradation,
                                               device=device), repeats=20, warmup=2, device=device)
    rows = []
    for n_workers in workers:
        loader = make_loader(ds, global_batch=b, start_step=0, num_steps=batches + 1, num_workers=n_workers,
                             raw=True, pin_memory=device.type == "cuda")
        it = iter(loader)
        next(it)  # worker start-up is not throughput
        start = time.perf_counter()
        count = sum(pixels.shape[0] for pixels, _, _ in it)
        rate = count / (time.perf_counter() - start)
        per_worker = rate / max(n_workers, 1)
        rows.append({"preset": cfg.name, "batch": b, "workers": n_workers, "loader_patches_per_s": rate,
                     "per_worker": per_worker, "device_stage_patches_per_s": b / stage_seconds,
                     "demand_images_per_s": demand,
                     "workers_needed": math.ceil(demand / per_worker) if demand else None})
    return rows


def bench_compare(names: Sequence[str], *, device: torch.device, batches: Sequence[int | None], amps: Sequence[str],
                  steps: int, warmup: int, repeats: int, tiny: bool, root: Path | None, workers: Sequence[int],
                  loader_batches: int, clock: str = "wall", compiles: Sequence[str] = ("off",)) -> dict:
    """The whole section: a printed table and its numbers (`rows`, `loader`, `worst_ratio`)."""
    clock_fn = time.process_time if clock == "process" else time.perf_counter
    ceiling, how = matmul_ceiling(device, clock=clock_fn)
    print(f"\n== compare: engine vs minimal reference step ({steps} steps timed, best of {repeats}, after "
          f"{warmup} warm-up; {clock} clock) ==")
    print(f"matmul ceiling: {ceiling / 1e12:.3f} TFLOP/s ({how}, measured now)")
    print(f"{'preset':<12} {'batch':>5} {'amp':>4} {'compile':>12} {'phase':>6} {'engine':>9} {'reference':>9} "
          f"{'ratio':>6} {'GFLOP/img':>9} {'MFU eng':>8} {'MFU ref':>8} {'GPU busy':>8} {'syncs':>5}  (images/s)")
    rows = []
    for name in names:
        for batch in batches:
            cfg, untrained = bench_config(name, batch=batch, tiny=tiny)
            for amp in amps:
                for compiled in compiles:
                    for r in compare_one(cfg, amp=amp, torch_compile=compiled, device=device, steps=steps,
                                         warmup=warmup, repeats=repeats, ceiling=ceiling, clock=clock_fn):
                        r["untrained_vgg"] = untrained
                        rows.append(r)
                        print(format_row(r), flush=True)
    loader_rows = []
    if root is not None and (root / TRAIN_DIRS[0]).is_dir():
        print(f"\n-- loader: raw uint8 patches ({' + '.join(TRAIN_DIRS)}, {loader_batches} batches) and the device "
              f"batch stage, against the engine's G+D demand --")
        print(f"{'preset':<12} {'batch':>5} {'workers':>7} {'patches/s':>10} {'per worker':>10} {'stage/s':>10} "
              f"{'demand':>9} {'workers needed':>14}")
        for name in names:
            cfg, _ = bench_config(name, batch=batches[0], tiny=tiny)
            demand = max((r["engine"] for r in rows if r["preset"] == cfg.name and r["phase"] == "gan"
                          and r["batch"] == cfg.data.batch_size), default=None)
            for r in compare_loader(cfg, root=root, workers=workers, batches=loader_batches, device=device,
                                    demand=demand):
                loader_rows.append(r)
                print(f"{r['preset']:<12} {r['batch']:>5} {r['workers']:>7} {r['loader_patches_per_s']:>10.1f} "
                      f"{r['per_worker']:>10.1f} {r['device_stage_patches_per_s']:>10.1f} "
                      f"{(r['demand_images_per_s'] or 0):>9.1f} {r['workers_needed'] or '-':>14}", flush=True)
    worst = min((r["ratio"] for r in rows), default=math.nan)
    print(f"engine/reference: worst ratio {worst:.2f} (target >= 0.9)")
    return {"ceiling_flops": ceiling, "ceiling": how, "clock": clock, "rows": rows, "loader": loader_rows,
            "worst_ratio": worst}


def format_row(r: dict) -> str:
    """One printed line of the compare table."""
    busy = f"{r['gpu_busy_engine']:8.0%}" if r["gpu_busy_engine"] is not None else f"{'-':>8}"
    syncs = f"{r['host_syncs_per_step']:5.1f}" if r["host_syncs_per_step"] is not None else f"{'-':>5}"
    return (f"{r['preset']:<12} {r['batch']:>5} {r['amp']:>4} {r['compile']:>12} {r['phase']:>6} "
            f"{r['engine']:>9.2f} {r['reference']:>9.2f} {r['ratio']:>6.2f} {r['flops_per_image'] / 1e9:>9.3f} "
            f"{r['mfu_engine']:>8.2%} {r['mfu_reference']:>8.2%} {busy} {syncs}")
