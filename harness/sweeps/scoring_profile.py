"""Where a study's scoring time goes, per model: `python -m harness.sweeps.scoring_profile [--models 6] [--ray]`.

Builds `--models` trial folders of the `cpu` size in a temporary folder, as a study leaves them (config.json,
history, a checkpoint; GAN trials start from their pretraining: init.json), with freshly initialised generators
(SRResNet and RRDB, the study's two families; the cost of scoring does not depend on what the weights learned),
then measures, in one run:

1. process start: a fresh Python importing what a scoring process imports (`harness.sweeps.collect._warm_up`);
2. the bicubic baseline, then every model scored in this process exactly as a scoring task scores it
   (`harness.sweeps.collect.score_job`, one torch thread), under cProfile: process-CPU seconds per phase (dataset
   loading,
   model loading, upscaling, PSNR/SSIM, NIQE, PNGs kept for the report, the rest), for the first model (cold:
   torch's first calls at each image size) and the mean of the others (warm), and each model's wall and CPU seconds;
3. the results written (`results.io.write_results`: parquet + JSON);
4. with `--ray`: the whole `harness.sweeps.collect.score_all` on a local Ray of `--cpus` CPUs (processes started, one
   task per model), its wall time against the in-process CPU seconds;
5. with `--layers`: where the upscaling goes inside each family's generator (the first model of each), process-CPU
   seconds per layer of its plain forward over the scored images (`layer_seconds`; a residual block's layers summed
   over the blocks), and the seconds of the inference forward that scoring runs (`srgan.inference`).

The shares are what to optimise first; the ratios (each phase over upscaling, measured in the same run) stay
comparable across runs on a busy shared machine, where absolute seconds do not.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (phase, functions whose cumulative time it is: "file:function" suffixes); the first match of a call wins
PHASES = (
    ("datasets", ("scoring/datasets.py:load_pairs", "scoring/prepared.py:benchmark_images")),
    ("model load", ("srgan/checkpoint.py:load_generator",)),
    ("upscaling", ("srgan/upscale.py:upscale",)),
    ("psnr/ssim", ("scoring/psnr_ssim.py:psnr_ssim", "scoring/psnr_ssim.py:psnr_ssim_against")),
    ("niqe", ("scoring/niqe.py:niqe",)),
    ("pngs", ("scoring/scorers.py:keep_images",)),
)
IMPORTS = "import harness.sweeps.collect as c; c._warm_up()"


def make_trials(root: Path, count: int, data_root: Path) -> list:
    """`count` trial folders under root/trials: a pretraining per family, then GAN trials (v2, v3, ragan, esrgan in
    turn) starting from them, as a `cpu` study writes them."""
    import torch

    from harness.sweeps.collect import Outcome
    from results import schema
    from srgan.checkpoint import save_config, save_generator
    from srgan.generator import build_generator
    from srgan.versions import gan_stage, preset, pretrain_stage, with_present_train_dirs

    def make(name: str, cfg, seed: int, steps: int, stage: str, init: Path | None = None) -> Outcome:
        run = root / "trials" / name
        torch.manual_seed(seed)
        save_config(cfg, run, workers=1)
        save_generator(build_generator(cfg.generator, scale=cfg.scale), cfg, run / f"checkpoint_{steps:06d}")
        history = [{"step": s, "phase": "gan" if stage == schema.STAGE_GAN else "warmup", "time": float(s)}
                   for s in range(10, steps + 1, 10)]
        (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        if init is not None:
            weights = next(init.glob("checkpoint_*")) / "generator.safetensors"
            (run / "init.json").write_text(json.dumps({"init_from": str(init), "weights": str(weights)}))
        return Outcome(trial_id=name, run_dir=run, stage=stage)

    families = {"srresnet": "v2", "rrdb": "esrgan"}
    pre = {}
    for arch, version in families.items():
        cfg = pretrain_stage(with_present_train_dirs(preset(f"{version}-cpu"), data_root))
        pre[arch] = make(f"{arch}-pretrain", cfg, 0, cfg.train.total_steps, schema.STAGE_PRETRAIN)
    outcomes = list(pre.values())[:count]
    versions = ("v2", "v3", "ragan", "esrgan")
    for i in range(count - len(outcomes)):
        version = versions[i % len(versions)]
        base = with_present_train_dirs(preset(f"{version}-cpu"), data_root)
        init = pre["rrdb" if version == "esrgan" else "srresnet"].run_dir
        cfg = gan_stage(base, init)
        outcomes.append(make(f"{version}-s{i // len(versions)}", cfg, i + 1, cfg.train.total_steps,
                             schema.STAGE_GAN, init))
    return outcomes


def process_start() -> float:
    """Seconds a fresh Python takes to import what a scoring process imports."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    return time.perf_counter() - started


def phase_seconds(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds per phase of one profiled model (a call inside a phase's function counts once)."""
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    out = dict.fromkeys([name for name, _ in PHASES], 0.0)
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
        key = f"{Path(file).parent.name}/{Path(file).name}:{name}"
        for phase, functions in PHASES:
            if key in functions:
                out[phase] += ct
    return out


def score_profiled(outcomes: list, scoring) -> tuple[list[dict], list]:
    """Score every outcome as a scoring task does, one profile each: [{phase: s, total, cpu}], the parts."""
    from harness.sweeps.collect import score_job

    rows, parts = [], []
    for outcome in outcomes:
        profile = cProfile.Profile(time.process_time)  # CPU seconds: a busy shared machine inflates wall time
        cpu = time.process_time()
        profile.enable()
        part, seconds = score_job(outcome, scoring, {}, threads=1)
        profile.disable()
        row = phase_seconds(profile)
        row.update(wall=seconds, cpu=time.process_time() - cpu)
        row["rest"] = row["cpu"] - sum(row[name] for name, _ in PHASES)
        rows.append(row)
        parts.append(part)
        status = part.trials[-1]["status"]
        if status != "ok":
            raise RuntimeError(f"{outcome.trial_id}: scored {status}: {part.trials[-1].get('error')}")
    return rows, parts


def layer_seconds(net, images) -> dict[str, float]:
    """Process-CPU seconds of each leaf module of `net` over one forward pass per (1, 3, h, w) image in `images`
    (inference mode, this process's threads), keyed by the module's path with block indices as `*` and its kind
    ("body.*.conv1 Conv2d 32->32 3x3"): where the upscaling's time goes, layer by layer. Hooks time each call
    between its pre- and post-hook, so a leaf's seconds are its own."""
    import re

    import torch
    from torch import nn

    seconds: dict[str, float] = {}
    started: dict[str, float] = {}
    hooks = []
    for path, module in net.named_modules():
        if next(module.children(), None) is not None:
            continue
        kind = type(module).__name__
        if isinstance(module, nn.Conv2d):
            kind += f" {module.in_channels}->{module.out_channels} {module.kernel_size[0]}x{module.kernel_size[1]}"
        where = re.sub(r"(^|\.)\d+(?=\.|$)", r"\1*", path)  # body.3.conv1 -> body.*.conv1
        key = f"{where} {kind}"
        seconds.setdefault(key, 0.0)

        def pre(_m, _i, key=key):
            started[key] = time.process_time()

        def post(_m, _i, _o, key=key):
            seconds[key] += time.process_time() - started[key]

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.inference_mode():
            for lq in images:
                net(lq)
    finally:
        for hook in hooks:
            hook.remove()
    return seconds


def describe_layers(name: str, seconds: dict[str, float], total: float, *, top: int = 8) -> str:
    lines = [f"{name}: {total:.3f} s of upscaling (1 thread, process CPU), by layer:"]
    for key, value in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {key:44s} {value:8.3f} s {value / total:6.1%}")
    return "\n".join(lines)


def describe(rows: list[dict]) -> str:
    names = [name for name, _ in PHASES] + ["rest"]
    warm = rows[1:] or rows

    def mean(rs: list[dict], key: str) -> float:
        return sum(r[key] for r in rs) / len(rs)

    up = mean(warm, "upscaling")
    lines = [f"{'phase (cpu)':12s} {'cold s':>8s} {'warm s':>8s} {'share':>6s} {'/upscale':>9s}"]
    for name in names:
        w = mean(warm, name)
        lines.append(f"{name:12s} {rows[0][name]:8.3f} {w:8.3f} {w / mean(warm, 'cpu'):6.1%} {w / up:9.3f}")
    cpu = mean(warm, "cpu")
    lines.append(f"{'total cpu':12s} {rows[0]['cpu']:8.3f} {cpu:8.3f} {'':6s} {cpu / up:9.3f}")
    lines.append(f"{'total wall':12s} {rows[0]['wall']:8.3f} {mean(warm, 'wall'):8.3f}")
    return "\n".join(lines)


def profile_layers(outcomes: list, scoring) -> str:
    """`layer_seconds` of the first model of each generator family among `outcomes`, on the scored images: the
    plain forward's layers (the modules' own calls), then the seconds of the inference forward scoring runs
    (`srgan.inference`, whose fused convs no module hook sees)."""
    import torch

    from benchmarks.scoring.prepared import benchmark_images
    from srgan.checkpoint import load_generator
    from srgan.inference import inference_forward

    images = [image.lq for image in benchmark_images(scoring.datasets, scoring.scale, scoring.data_root,
                                                     device=torch.device("cpu"), crop=scoring.scale,
                                                     color="ycbcr_bt601", reference=False)]
    parts, seen = [], set()
    for outcome in outcomes:
        ckpt = next(outcome.run_dir.glob("checkpoint_*"))
        net, cfg = load_generator(ckpt, expect_scale=scoring.scale)
        if cfg.generator.arch in seen:
            continue
        seen.add(cfg.generator.arch)
        net.eval()
        layer_seconds(net, images)  # torch's first calls at each image size
        started = time.process_time()
        seconds = layer_seconds(net, images)
        parts.append(describe_layers(f"{outcome.trial_id} ({cfg.generator.arch}), plain forward", seconds,
                                     time.process_time() - started))
        with torch.inference_mode():
            forward = inference_forward(net)
            for lq in images:  # torch's first calls at each image size, as above
                forward(lq)
            started = time.process_time()
            for lq in images:
                forward(lq)
        parts.append(f"  inference forward (srgan.inference, what scoring runs): {time.process_time() - started:.3f} s")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.sweeps.scoring_profile", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=6, help="trained models to score (default 6; at least 2)")
    p.add_argument("--datasets", default="set5,set14")
    p.add_argument("--data-root", type=Path, default=None, help="benchmark data root (default $ENHANCE_DATA)")
    p.add_argument("--ray", action="store_true", help="also time harness.sweeps.collect.score_all on a local Ray")
    p.add_argument("--cpus", type=int, default=2, help="with --ray: the local Ray's CPUs (default 2)")
    p.add_argument("--keep", type=Path, default=None, help="write the results folder here (default: a temp folder)")
    p.add_argument("--layers", action="store_true", help="also time the upscaling of each generator family by layer")
    args = p.parse_args(argv)
    if args.models < 2:
        p.error("--models must be at least 2 (one cold, one warm)")
    import torch

    from benchmarks.scoring.datasets import data_root, parse_datasets
    from harness.sweeps.collect import Collected, Scoring, score_all, score_job
    from results import io, rows

    torch.set_num_threads(1)
    root = data_root(args.data_root)
    with tempfile.TemporaryDirectory(prefix="scoring-profile-") as tmp:
        work = Path(tmp)
        outcomes = make_trials(work, args.models, root)
        scoring = Scoring(datasets=parse_datasets(args.datasets), scale=4, data_root=root,
                          images_dir=work / "images", save_images=("set5",))
        start = process_start()
        print(f"process start (imports of a scoring process): {start:.2f} s", flush=True)
        base, base_s = score_job(None, scoring, {})
        print(f"bicubic baseline: {base_s:.2f} s", flush=True)
        measured, parts = score_profiled(outcomes, scoring)
        print(f"\n{len(outcomes)} models ({', '.join(o.trial_id for o in outcomes)}) on {args.datasets}, "
              f"1 torch thread; cold = first model of the process, warm = mean of the others:")
        print(describe(measured))
        collected = Collected()
        for part in [base, *parts]:
            collected.merge(part)
        out = args.keep or work / "results"
        started = time.perf_counter()
        import polars as pl

        io.write_results(out, trials=rows.trials_frame(collected.trials), run={"kind": "scoring-profile"},
                         scores=pl.concat(collected.scores, how="diagonal_relaxed"),
                         summary=pl.concat(collected.summaries, how="diagonal_relaxed"))
        print(f"\nresults written (parquet, JSON): {time.perf_counter() - started:.3f} s")
        if args.layers:
            print()
            print(profile_layers(outcomes, scoring))
        if args.ray:
            from harness.cluster.local_ray import init_local_ray, shutdown_ray

            init_local_ray(args.cpus, include_dashboard=False)
            try:
                started = time.perf_counter()
                _parts, at_once = score_all([None, *outcomes], scoring, {})
                wall = time.perf_counter() - started
            finally:
                shutdown_ray()
            cpu = sum(r["cpu"] for r in measured)
            print(f"score_all on Ray ({args.cpus} CPUs, {at_once} at once): {wall:.2f} s wall for {len(outcomes)} "
                  f"models + bicubic; {wall / len(outcomes):.2f} s per model; in-process CPU {cpu:.2f} s, "
                  f"ideal {cpu / at_once:.2f} s at {at_once} at once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
