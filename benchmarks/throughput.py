"""Speed benchmarks: GAN step throughput per preset, the data loader that must feed it, and metric speed.

    python -m benchmarks.throughput [--presets v1,v2,v3,ragan,esrgan] [--steps N] [--device cpu|cuda]
                                    [--sections train,loader,metrics,compare] [--batch B[,B...]] [--workers 0,2]
    python -m benchmarks.throughput --compare [--tiny] [--batch 16,64] [--amp off,bf16] [--json out.json]

Sections (each prints a small table; ratios are taken against a baseline measured in the same run):
- train:   images/s of the warmup (pixel-only), generator and discriminator steps of each full-size preset at
           its patch size and batch (`--batch` overrides, useful on a CPU), after `--warmup` untimed steps.
           Without ImageNet VGG19 weights in the torch hub cache the perceptual loss runs on untrained
           features (same cost) and the output says so.
- loader:  patches/s per worker of `srgan.data.PatchDataset` on T91 + BSD200 through `make_loader`, at each
           preset's patch size and degradation, next to the GAN step (G + D) rate it must feed.
- metrics: PSNR + SSIM (Y, crop 4) of bicubic x4 on Set5 + Set14 + BSD100 with `benchmarks.metrics` against
           the plain numpy/scipy `benchmarks.reference`: time of each, speed ratio, max abs difference.
- compare (`--compare`): per preset, batch (`--batch` list) and autocast setting (`--amp`; both fp32 and bf16 on
           CUDA), in the same run: images/s of `GanEngine.train_step` (with one `pop_metrics` per timed block,
           as a loop that logs) and of `ReferenceStep`, a minimal step written plainly here (same networks,
           losses and fused Adam, no bookkeeping), per phase (warmup = pixel only, gan = G + D); their ratio;
           conv/matmul FLOPs per image (FlopCounterMode) and MFU against a matmul ceiling measured in the run
           (bf16 on CUDA, fp32 on the CPU); on CUDA the share of the timed window the GPU was busy (profiler)
           and host synchronisations per engine step (CUDA sync debug mode); then the loader that ships raw
           uint8 patches (`srgan.batches`) and the device batch stage, in patches/s against the step's demand.
           `--tiny` compares the presets' tiny variants (CPU). `--json` keeps every number (`compare.rows`).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from benchmarks import metrics, reference
from benchmarks.datasets import data_root, load_pairs
from srgan.batches import device_batch
from srgan.config import ExperimentConfig, override
from srgan.data import PatchDataset, imresize, make_loader
from srgan.discriminator import build_discriminator
from srgan.engine import GanEngine, make_adam
from srgan.generator import build_generator
from srgan.losses import (
    build_perceptual,
    pixel_loss,
    relativistic_d_losses,
    relativistic_g_loss,
    vanilla_d_losses,
    vanilla_g_loss,
    vgg19_cache_path,
)
from srgan.versions import PRESETS, preset

SECTIONS = ("train", "loader", "metrics", "compare")
TRAIN_DIRS = ("train/T91", "train/BSD200")
METRIC_SETS = ("set5", "set14", "bsd100")


# ------------------------------------------------------------------------------------------------ helpers


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], *, repeats: int, warmup: int, device: torch.device,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per call of `fn`, after `warmup` untimed calls, on `clock` (wall by default)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = clock()
    for _ in range(repeats):
        fn()
    _sync(device)
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


# -------------------------------------------------------------------------------------------------- train


def bench_preset(name: str, *, device: torch.device, steps: int, warmup: int, batch: int | None) -> dict:
    """images/s of the warmup, G and D steps of one full-size preset on random patches."""
    cfg, untrained = bench_config(name, batch=batch)
    engine = GanEngine(cfg, device=device)
    b, p, s = cfg.data.batch_size, cfg.data.patch_size, cfg.scale
    gt = torch.rand(b, 3, p, p, generator=torch.Generator().manual_seed(0)).to(device)
    lq = imresize(gt, scale=1 / s).clamp(0, 1)  # (B, 3, p/s, p/s)
    if engine.use_amp:  # what the engine's train_step does to its inputs
        gt, lq = gt.contiguous(memory_format=torch.channels_last), lq.contiguous(memory_format=torch.channels_last)
    holder: dict[str, torch.Tensor] = {}

    def g_step() -> None:
        holder["sr"] = engine.generator_step(lq, gt)[1]

    t_warm = timed(lambda: engine.warmup_step(lq, gt), repeats=steps, warmup=warmup, device=device)
    t_g = timed(g_step, repeats=steps, warmup=warmup, device=device)
    t_d = timed(lambda: engine.discriminator_step(gt, holder["sr"]), repeats=steps, warmup=warmup, device=device)
    rates = {"warmup": b / t_warm, "generator": b / t_g, "discriminator": b / t_d, "gan": b / (t_g + t_d)}
    return {"batch": b, "patch_size": p, "images_per_s": rates, "untrained_vgg": untrained}


def bench_train(names: Sequence[str], *, device: torch.device, steps: int, warmup: int,
                batch: int | None) -> dict[str, dict]:
    print(f"\n== train: images/s per step (timed {steps} step(s) after {warmup} warm-up step(s)) ==")
    print(f"{'preset':<8} {'batch':>5} {'patch':>5} {'warmup':>9} {'G step':>9} {'D step':>9} {'G+D':>9}  note")
    results = {}
    for name in names:
        r = results[name] = bench_preset(name, device=device, steps=steps, warmup=warmup, batch=batch)
        rates = r["images_per_s"]
        note = "untrained VGG19 (ImageNet weights not cached)" if r["untrained_vgg"] else ""
        print(f"{name:<8} {r['batch']:>5} {r['patch_size']:>5} {rates['warmup']:>9.2f} {rates['generator']:>9.2f} "
              f"{rates['discriminator']:>9.2f} {rates['gan']:>9.2f}  {note}", flush=True)
    return results


# ------------------------------------------------------------------------------------------------- loader


def bench_loader(names: Sequence[str], *, root: Path, workers: Sequence[int], batches: int,
                 train_rates: dict[str, dict]) -> dict[str, dict]:
    folders = [root / d for d in TRAIN_DIRS]
    print(f"\n== loader: PatchDataset on {' + '.join(TRAIN_DIRS)} via make_loader ({batches} batches timed) ==")
    print(f"{'preset':<8} {'patch':>5} {'degr.':>7} {'workers':>7} {'patches/s':>10} {'per worker':>10} "
          f"{'G+D img/s':>10} {'workers needed':>14}")
    datasets: dict[tuple, PatchDataset] = {}
    results = {}
    for name in names:
        cfg, _ = bench_config(name, batch=None)
        key = (cfg.scale, cfg.data.patch_size, cfg.data.degradation)
        if key not in datasets:
            datasets[key] = PatchDataset(folders, scale=cfg.scale, patch_size=cfg.data.patch_size,
                                         augment=True, degradation=cfg.data.degradation, seed=0)
        ds = datasets[key]
        batch = cfg.data.batch_size  # the preset's own batch: the loader's rate is per patch anyway
        step_rate = train_rates.get(name, {}).get("images_per_s", {}).get("gan")
        results[name] = {}
        for n_workers in workers:
            loader = make_loader(ds, global_batch=batch, start_step=0, num_steps=batches + 1, num_workers=n_workers)
            it = iter(loader)
            next(it)  # worker start-up is not throughput
            start = time.perf_counter()
            count = sum(gt.shape[0] for _, gt in it)
            rate = count / (time.perf_counter() - start)
            per_worker = rate / max(n_workers, 1)
            needed = math.ceil(step_rate / per_worker) if step_rate else None
            step_text = f"{step_rate:10.2f}" if step_rate else f"{'-':>10}"
            print(f"{name:<8} {cfg.data.patch_size:>5} {cfg.data.degradation:>7} {n_workers:>7} {rate:>10.1f} "
                  f"{per_worker:>10.1f} {step_text} {needed if needed is not None else '-':>14}")
            results[name][str(n_workers)] = {"patches_per_s": rate, "per_worker": per_worker,
                                             "workers_needed": needed}
    print(f"   ({len(datasets)} dataset scan(s); images kept per scan: "
          f"{', '.join(str(len(d)) for d in datasets.values())}; workers 0 = the main process)")
    return results


# ------------------------------------------------------------------------------------------------ compare


class ReferenceStep:
    """A minimal training step written plainly: the engine's networks (same builders, same seed) and losses,
    Adam (fused, as the engine), autocast and channels_last as the engine decides, EMA when the preset has
    one, and nothing else: no metrics, no non-finite checks, no lr schedule, no DDP hooks."""

    def __init__(self, cfg: ExperimentConfig, *, device: torch.device, use_amp: bool) -> None:
        self.cfg, self.use_amp = cfg, use_amp
        torch.manual_seed(cfg.train.seed)
        fmt = torch.channels_last if use_amp else torch.contiguous_format
        self.net_g = build_generator(cfg.generator, scale=cfg.scale).to(device, memory_format=fmt)
        self.net_d = build_discriminator(cfg.discriminator).to(device, memory_format=fmt)
        self.perceptual = build_perceptual(cfg.loss)
        if self.perceptual is not None:
            self.perceptual = self.perceptual.to(device)
        self.ema = copy.deepcopy(self.net_g).requires_grad_(False) if cfg.optim.ema_decay > 0 else None
        o = cfg.optim
        self.opt_g = make_adam(self.net_g.parameters(), lr=o.lr_g, betas=o.betas, device=device)
        self.opt_d = make_adam(self.net_d.parameters(), lr=o.lr_d, betas=o.betas, device=device)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()

    @torch.no_grad()
    def ema_update(self) -> None:
        if self.ema is not None:
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.net_g.parameters()),
                                 1 - self.cfg.optim.ema_decay)

    def warmup(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        with self.autocast():
            sr = self.net_g(lq)
        loss = pixel_loss(sr.float(), gt, self.cfg.loss.pixel_type)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.ema_update()

    def gan(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        w = self.cfg.loss
        relativistic = w.adv_type == "relativistic"
        self.net_d.requires_grad_(False)
        with self.autocast():
            sr = self.net_g(lq)
            fake = self.net_d(sr).float()
            real = self.net_d(gt).float() if relativistic else None
        sr = sr.float()
        loss = w.pixel_weight * pixel_loss(sr, gt, w.pixel_type)
        if self.perceptual is not None:
            loss = loss + w.perceptual_weight * self.perceptual(sr, gt)
        loss = loss + w.adv_weight * (relativistic_g_loss(real, fake) if relativistic else vanilla_g_loss(fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.net_d.requires_grad_(True)
        with self.autocast():
            real = self.net_d(gt).float()
            fake = self.net_d(sr.detach()).float()
        loss_real, loss_fake = (relativistic_d_losses if relativistic else vanilla_d_losses)(real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_real + loss_fake).backward()
        self.opt_d.step()
        self.ema_update()


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

    _sync(device)
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=activities) as prof, record_function("bench_window"):
        for _ in range(calls):
            fn()
        _sync(device)
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


def _phase_config(cfg: ExperimentConfig, phase: str, steps: int) -> ExperimentConfig:
    """The engine runs one phase throughout and collects once per timed block (log_every = steps)."""
    big = 10**9
    return override(cfg, {"train.warmup_steps": big if phase == "warmup" else 0, "train.gan_steps": big,
                          "train.log_every": steps, "train.val_every": big, "train.ckpt_every": big})


def compare_one(cfg: ExperimentConfig, *, amp: str, device: torch.device, steps: int, warmup: int,
                repeats: int, ceiling: float, clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    """Engine against reference for both phases of one config: a row per phase."""
    b, p, s = cfg.data.batch_size, cfg.data.patch_size, cfg.scale
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(b, 3, p, p, generator=gen).to(device)
    lq = imresize(gt, scale=1 / s).clamp(0, 1)  # (B, 3, p/s, p/s)
    return [_compare_phase(cfg, phase, amp=amp, lq=lq, gt=gt, device=device, steps=steps, warmup=warmup,
                           repeats=repeats, ceiling=ceiling, clock=clock) for phase in ("warmup", "gan")]


def _compare_phase(cfg: ExperimentConfig, phase: str, *, amp: str, lq: torch.Tensor, gt: torch.Tensor,
                   device: torch.device, steps: int, warmup: int, repeats: int, ceiling: float,
                   clock: Callable[[], float]) -> dict:
    b = cfg.data.batch_size
    engine = GanEngine(override(_phase_config(cfg, phase, steps), {"optim.amp": amp}), device=device)
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

    for _ in range(warmup):  # untimed: allocator, cuDNN autotuning, lazy optimiser state
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
            "amp": "bf16" if engine.use_amp else "fp32", "phase": phase, "engine": ips_engine, "reference": ips_ref,
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
                  loader_batches: int, clock: str = "wall") -> dict:
    clock_fn = time.process_time if clock == "process" else time.perf_counter
    ceiling, how = matmul_ceiling(device, clock=clock_fn)
    print(f"\n== compare: engine vs minimal reference step ({steps} steps timed, best of {repeats}, after "
          f"{warmup} warm-up; {clock} clock) ==")
    print(f"matmul ceiling: {ceiling / 1e12:.3f} TFLOP/s ({how}, measured now)")
    print(f"{'preset':<12} {'batch':>5} {'amp':>4} {'phase':>6} {'engine':>9} {'reference':>9} {'ratio':>6} "
          f"{'GFLOP/img':>9} {'MFU eng':>8} {'MFU ref':>8} {'GPU busy':>8} {'syncs':>5}  (images/s)")
    rows = []
    for name in names:
        for batch in batches:
            cfg, untrained = bench_config(name, batch=batch, tiny=tiny)
            for amp in amps:
                for r in compare_one(cfg, amp=amp, device=device, steps=steps, warmup=warmup, repeats=repeats,
                                     ceiling=ceiling, clock=clock_fn):
                    r["untrained_vgg"] = untrained
                    rows.append(r)
                    busy = f"{r['gpu_busy_engine']:8.0%}" if r["gpu_busy_engine"] is not None else f"{'-':>8}"
                    syncs = f"{r['host_syncs_per_step']:5.1f}" if r["host_syncs_per_step"] is not None else f"{'-':>5}"
                    print(f"{r['preset']:<12} {r['batch']:>5} {r['amp']:>4} {r['phase']:>6} {r['engine']:>9.2f} "
                          f"{r['reference']:>9.2f} {r['ratio']:>6.2f} {r['flops_per_image'] / 1e9:>9.3f} "
                          f"{r['mfu_engine']:>8.2%} {r['mfu_reference']:>8.2%} {busy} {syncs}", flush=True)
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


# ------------------------------------------------------------------------------------------------ metrics


def bench_metrics(*, root: Path, device: torch.device, scale: int = 4) -> dict:
    print(f"\n== metrics: PSNR + SSIM (Y, crop {scale}) of bicubic x{scale}, torch vs numpy/scipy reference ==")
    items = []
    for name in METRIC_SETS:
        for pair in load_pairs(name, scale, root):
            sr = imresize(pair.lq, scale=scale).clamp(0, 1)  # (3, H, W)
            items.append((name, sr[None].to(device), pair.gt[None].to(device)))
    u8 = [(s[0].mul(255).round().byte().permute(1, 2, 0).cpu().numpy(),
           g[0].mul(255).round().byte().permute(1, 2, 0).cpu().numpy()) for _, s, g in items]

    def run_torch() -> list[tuple[float, float]]:
        return [(float(metrics.psnr(s, g, crop=scale)[0]), float(metrics.ssim(s, g, crop=scale)[0]))
                for _, s, g in items]

    def run_reference() -> list[tuple[float, float]]:
        return [(reference.psnr_y_reference(s, g, scale), reference.ssim_y_reference(s, g, scale)) for s, g in u8]

    ours = run_torch()  # warm-up (and the values)
    _sync(device)
    start = time.perf_counter()
    ours = run_torch()
    _sync(device)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    ref = run_reference()
    t_ref = time.perf_counter() - start
    diff_psnr = max(abs(a[0] - b[0]) for a, b in zip(ours, ref, strict=True))
    diff_ssim = max(abs(a[1] - b[1]) for a, b in zip(ours, ref, strict=True))
    for name in METRIC_SETS:
        vals = np.array([v for (n, _, _), v in zip(items, ours, strict=True) if n == name])
        print(f"{name:<7} {len(vals):>4} images  bicubic PSNR {vals[:, 0].mean():.2f} dB  SSIM {vals[:, 1].mean():.4f}")
    n = len(items)
    print(f"benchmarks.metrics   : {t_ours:8.3f} s  ({n / t_ours:8.1f} images/s, {device.type})")
    print(f"benchmarks.reference : {t_ref:8.3f} s  ({n / t_ref:8.1f} images/s, numpy/scipy; the baseline)")
    print(f"speed ratio reference/metrics: {t_ref / t_ours:.1f}x   max |diff|: PSNR {diff_psnr:.2e} dB, "
          f"SSIM {diff_ssim:.2e}")
    return {"images": n, "seconds": t_ours, "reference_seconds": t_ref, "speedup": t_ref / t_ours,
            "max_abs_diff_psnr": diff_psnr, "max_abs_diff_ssim": diff_ssim}


# ---------------------------------------------------------------------------------------------------- CLI


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    parser.add_argument("--sections", default=None,
                        help=f"any of {','.join(SECTIONS)} (default: train,loader,metrics; compare with --compare)")
    parser.add_argument("--compare", action="store_true",
                        help="engine vs a minimal reference step per preset, batch and autocast (section compare)")
    parser.add_argument("--tiny", action="store_true", help="compare the presets' tiny variants (CPU)")
    parser.add_argument("--amp", default=None,
                        help="autocast settings to compare: off,bf16 (default: both on CUDA, off on the CPU)")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="compare: wall time, or this process's CPU time (CPU device with --threads 1 on a "
                             "shared machine: time spent descheduled is not counted against either side)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="compare: timed blocks per side, best taken (default: 3 on CPU, 2 on a GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per phase (default: 20 on a GPU, 2 on CPU)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (default: 3 on a GPU, 1 on CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 can be faster on a busy shared CPU)")
    parser.add_argument("--batch", default=None,
                        help="batch size(s), comma-separated, overriding the presets' (train and loader use the "
                             "first; compare runs each)")
    parser.add_argument("--workers", default="0,2", help="loader worker counts to time (default: 0,2)")
    parser.add_argument("--loader-batches", type=int, default=20, help="batches timed per loader setting")
    parser.add_argument("--data-root", type=Path, default=None, help="default: $ENHANCE_DATA or ../shared/data")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    names = _csv(args.presets)
    unknown = [n for n in names if n not in PRESETS]
    sections = _csv(args.sections) if args.sections else (["compare"] if args.compare else list(SECTIONS[:3]))
    if args.compare and "compare" not in sections:
        sections.append("compare")
    bad_sections = [s for s in sections if s not in SECTIONS]
    try:
        batch_list: list[int | None] = [int(b) for b in _csv(args.batch)] if args.batch else [None]
    except ValueError:
        parser.error(f"--batch expects integers, got {args.batch!r}")
    amps = _csv(args.amp) if args.amp else (["off", "bf16"] if args.device.startswith("cuda") else ["off"])
    if any(a not in ("off", "bf16", "auto") for a in amps):
        parser.error(f"--amp expects off, bf16 or auto, got {args.amp!r}")
    if args.clock == "process" and args.device.startswith("cuda"):
        parser.error("--clock process measures CPU work only: use the wall clock on CUDA")
    if unknown or bad_sections:
        parser.error(f"unknown preset(s) {unknown} or section(s) {bad_sections}; presets: {', '.join(PRESETS)}; "
                     f"sections: {', '.join(SECTIONS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    on_gpu = device.type == "cuda"
    steps = args.steps or (20 if on_gpu else 2)
    warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    root = data_root(args.data_root)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(describe_device(device))
    if "train" in sections and not vgg19_cache_path().exists():
        print(f"note: VGG19 ImageNet weights not found at {vgg19_cache_path()}: v3/ragan/esrgan run on untrained "
              f"VGG19 features (same cost, flagged)")
    results: dict[str, object] = {"device": describe_device(device)}
    train_rates: dict[str, dict] = {}
    if "train" in sections:
        train_rates = bench_train(names, device=device, steps=steps, warmup=warmup, batch=batch_list[0])
        results["train"] = train_rates
    if "loader" in sections:
        results["loader"] = bench_loader(names, root=root, workers=[int(w) for w in _csv(args.workers)],
                                         batches=args.loader_batches, train_rates=train_rates)
    if "metrics" in sections:
        results["metrics"] = bench_metrics(root=root, device=device)
    if "compare" in sections:
        results["compare"] = bench_compare(
            names, device=device, batches=batch_list, amps=amps, steps=steps, warmup=warmup,
            repeats=args.repeats or (2 if on_gpu else 3), tiny=args.tiny, root=root,
            workers=[int(w) for w in _csv(args.workers)], loader_batches=args.loader_batches, clock=args.clock)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
