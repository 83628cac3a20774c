"""The study in one command: v1 -> v2 -> v3 -> RaGAN -> ESRGAN x seeds, with uncertainty; `python -m harness.study`.

A thin layer over `harness.sweep`: it runs the five presets x N seeds (shared pretraining: one SRResNet for
v2, v3 and RaGAN, one RRDB for ESRGAN; the seeds vary the GAN stage), scores every model on the benchmark
sets, computes the study tables (`results.study`: paired differences with bootstrap confidence intervals,
mean +- std over seeds, GAN stability) and builds the report, whose "Study" section answers the original
study's comparison table with measured values.

Sizes: `smoke` (tests, a few minutes), `tiny` (a 2-core CPU, about 15 minutes: CPU-sized networks trained long
enough to learn; see TINY), `full` (the papers' network sizes and the presets' own steps, for a GPU cluster),
`paper` (full size with the published schedules: weeks of GPU time; see `--dry-run`).

    python -m harness.study --size tiny --vgg-fallback untrained
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m harness.study --size full \\
        --address auto --gpus-per-worker 1 --out /shared/results/study-1 --data-root /shared/data
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from harness import sweep
from harness.storage import default_storage

log = logging.getLogger(__name__)

PRESETS = ("v1", "v2", "v3", "ragan", "esrgan")

# What each size passes to the sweep (steps are pretraining + GAN per trial, the presets' warmup share kept).
SMOKE = ["--size", "tiny", "--steps", "8"]
# The 2-core CPU study (README's main job). The tiny presets' networks made big enough to learn in minutes:
# SRResNet 8 x 32 (v1-v3, RaGAN), RRDBNet 2 x 16 (ESRGAN); 64-px patches, batches of 16 for the shared
# pretraining; the GAN stage then runs on the same patches. See `srgan.versions.small` for the sizes.
TINY = ["--size", "small", "--steps", "0"]
FULL = ["--size", "full", "--steps", "0"]
PAPER = ["--size", "full", "--schedule", "paper", "--steps", "0"]
SIZES = {"smoke": SMOKE, "tiny": TINY, "full": FULL, "paper": PAPER}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=tuple(SIZES), default="tiny", help="smoke | tiny (default) | full | paper")
    p.add_argument("--seeds", type=int, default=3, help="seeds per version (default 3)")
    sweep.add_run_arguments(p, kind="study")
    return p


def sweep_argv(args: argparse.Namespace) -> list[str]:
    """The sweep this study is: every preset x seed, no early stopping, one shared pretraining per generator."""
    if args.resume:
        return ["--resume", args.resume]
    argv = [*SIZES[args.size], "--presets", ",".join(PRESETS), "--grid", "none",
            "--seeds", ",".join(str(s) for s in range(args.seeds)), "--pretrain-seed", "shared",
            "--scheduler", "none", "--datasets", args.datasets, "--save-images", "set5",
            "--workers-per-trial", str(args.workers_per_trial), "--gpus-per-worker", str(args.gpus_per_worker),
            "--max-concurrent", str(args.max_concurrent), "--kind", "study"]
    out = args.out or str(default_storage("") / f"study-{time.strftime('%Y%m%d-%H%M%S')}")
    for flag, value in (("--out", out), ("--vgg-fallback", args.vgg_fallback), ("--address", args.address),
                        ("--data-root", args.data_root)):
        if value:
            argv += [flag, value]
    return argv + (["--dry-run"] if args.dry_run else []) + (["--fetch"] if args.fetch else [])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    forwarded = sweep_argv(args)
    try:
        out = sweep.run_sweep(sweep.build_parser().parse_args(forwarded), forwarded)
    except sweep.SweepError as err:
        print(f"error: {err}" if err.code == 2 else str(err), file=sys.stderr)
        return err.code
    if out is None:  # a dry run
        return 0
    from results.study import compute_study

    tables = compute_study(out)
    print(f"results: {out}\nstudy tables: {', '.join(str(Path(p).name) for p in tables.values())}")
    return 0 if args.no_report else sweep.build_report_of(out)


if __name__ == "__main__":
    sys.exit(main())
