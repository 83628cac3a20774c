"""Speed benchmarks: GAN step throughput per preset, the data loader that must feed it, and metric speed.

    python -m benchmarks.speed.throughput [--presets v1,v2,v3,ragan,esrgan] [--steps N] [--device cpu|cuda]
                                    [--sections train,loader,metrics,compare] [--batch B[,B...]] [--workers 0,2]
    python -m benchmarks.speed.throughput --compare [--tiny] [--batch 16,64] [--amp off,bf16] [--compile off,default]
                                    [--json out.json]

Sections (each prints a small table; ratios are taken against a baseline measured in the same run):
- train:   images/s of the warmup (pixel-only), generator and discriminator steps of each full-size preset at
           its patch size and batch (`--batch` overrides, useful on a CPU), after `--warmup` untimed steps.
           Without ImageNet VGG19 weights in the torch hub cache the perceptual loss runs on untrained
           features (same cost) and the output says so.
- loader:  patches/s per worker of `srgan.data.PatchDataset` on T91 + BSD200 through `make_loader`, at each
           preset's patch size and degradation, next to the GAN step (G + D) rate it must feed.
- metrics: PSNR + SSIM (Y, crop 4) of bicubic x4 on Set5 + Set14 + BSD100 with `benchmarks.scoring.metrics` against
           the plain numpy/scipy `benchmarks.scoring.reference`: time of each, speed ratio, max abs difference.
- compare (`--compare`, `benchmarks.speed.compare`): per preset, batch (`--batch` list), autocast setting (`--amp`;
           both fp32 and bf16 on CUDA) and compile setting (`--compile`), in the same run: images/s of
           `GanEngine.train_step` (with one `pop_metrics` per timed block, as a loop that logs) and of
           `benchmarks.speed.reference_step.ReferenceStep`, a minimal step written plainly (same networks, losses and
           fused Adam, no bookkeeping), per phase (warmup = pixel only, gan = G + D); their ratio; conv/matmul
           FLOPs per image (FlopCounterMode) and MFU against a matmul ceiling measured in the run (bf16 on CUDA,
           fp32 on the CPU); on CUDA the share of the timed window the GPU was busy (profiler) and host
           synchronisations per engine step (CUDA sync debug mode); then the loader that ships raw uint8 patches
           (`srgan.batches`) and the device batch stage, in patches/s against the step's demand. `--tiny`
           compares the presets' tiny variants (CPU). `--json` keeps every number (`compare.rows`).
The measuring helpers (timer, FLOPs, ceiling, GPU busy, syncs) are in `benchmarks.speed.measure`;
`python -m benchmarks.speed.gpu_check` runs the GPU comparisons in one go.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.scoring import metrics, reference
from benchmarks.scoring.datasets import data_root, load_pairs
from benchmarks.speed.compare import bench_compare
from benchmarks.speed.measure import TRAIN_DIRS, bench_config, describe_device, sync, timed
from srgan.data import PatchDataset, make_loader
from srgan.engine import GanEngine
from srgan.losses import vgg19_cache_path
from srgan.resize import imresize
from srgan.versions import PRESETS

SECTIONS = ("train", "loader", "metrics", "compare")
METRIC_SETS = ("set5", "set14", "bsd100")
COMPILE_MODES = ("off", "default", "max-autotune")


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
        holder["sr"] = engine.generator_step(lq, gt)

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
    sync(device)
    start = time.perf_counter()
    ours = run_torch()
    sync(device)
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
    print(f"benchmarks.scoring.metrics   : {t_ours:8.3f} s  ({n / t_ours:8.1f} images/s, {device.type})")
    print(f"benchmarks.scoring.reference : {t_ref:8.3f} s  ({n / t_ref:8.1f} images/s, numpy/scipy; the baseline)")
    print(f"speed ratio reference/metrics: {t_ref / t_ours:.1f}x   max |diff|: PSNR {diff_psnr:.2e} dB, "
          f"SSIM {diff_ssim:.2e}")
    return {"images": n, "seconds": t_ours, "reference_seconds": t_ref, "speedup": t_ref / t_ours,
            "max_abs_diff_psnr": diff_psnr, "max_abs_diff_ssim": diff_ssim}


# ---------------------------------------------------------------------------------------------------- CLI


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    parser.add_argument("--sections", default=None,
                        help=f"any of {','.join(SECTIONS)} (default: train,loader,metrics; compare with --compare)")
    parser.add_argument("--compare", action="store_true",
                        help="engine vs a minimal reference step per preset, batch and autocast (section compare)")
    parser.add_argument("--tiny", action="store_true", help="compare the presets' tiny variants (CPU)")
    parser.add_argument("--amp", default=None,
                        help="autocast settings to compare: off,bf16 (default: both on CUDA, off on the CPU)")
    parser.add_argument("--compile", default="off",
                        help="compare: train.compile settings of both sides, comma-separated: off,default,max-autotune "
                             "(default: off)")
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
    compiles = _csv(args.compile)
    if not compiles or any(c not in COMPILE_MODES for c in compiles):
        parser.error(f"--compile expects {', '.join(COMPILE_MODES)}, got {args.compile!r}")
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
            workers=[int(w) for w in _csv(args.workers)], loader_batches=args.loader_batches, clock=args.clock,
            compiles=compiles)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
