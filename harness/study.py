"""The study in one command: v1 -> v2 -> v3 -> RaGAN -> ESRGAN x seeds, with uncertainty; `python -m harness.study`.

A study is a kind of sweep (`harness.sweep`, `SweepRequest(kind="study")`): the five presets x N seeds, no early
stopping, shared pretrainings (one SRResNet for v2, v3 and RaGAN, one RRDB for ESRGAN), every model scored on the
benchmark sets, then the study tables (`results.study`: paired differences with confidence intervals, mean +- std
over seeds, GAN stability) and the report, whose "Study" section answers the original study's comparison table
with measured values.

Sizes (srgan.versions.SIZES): `tiny` (tests and smoke runs, a few minutes), `cpu` (a 2-core CPU, about 15 minutes:
CPU-sized networks trained long enough to learn; see srgan.versions.cpu), `full` (the papers' network sizes and
the presets' own steps, for a GPU cluster), `paper` (full size with the published schedules: weeks of GPU time;
see `--dry-run`).

    python -m harness.study --size cpu --vgg-fallback untrained
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m harness.study --size full \\
        --address auto --gpus-per-worker 1 --out /shared/results/study-1 --data-root /shared/data
"""

from __future__ import annotations

import argparse
import logging
import sys

from harness import sweep
from harness.plan import SweepRequest
from srgan.versions import PRESETS

log = logging.getLogger(__name__)

# Steps per trial at each size (pretraining + GAN, the presets' warmup share kept); None: the size's own.
STEPS = {"tiny": 8, "cpu": None, "full": None, "paper": None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_size_argument(p, default="cpu")
    p.add_argument("--seeds", type=int, default=3, help="seeds per version (default 3)")
    sweep.add_run_arguments(p, kind="study")
    return p


def study_request(args: argparse.Namespace) -> SweepRequest:
    """The sweep this study is: every preset x seed, no early stopping, one shared pretraining per generator."""
    return SweepRequest(
        presets=tuple(PRESETS), size=args.size, steps=STEPS[args.size], grid={},
        seeds=tuple(range(args.seeds)), pretrain_seed="shared", scheduler="none",
        datasets=tuple(d.strip() for d in args.datasets.split(",") if d.strip()), save_images=("set5",),
        workers_per_trial=args.workers_per_trial, gpus_per_worker=args.gpus_per_worker,
        max_concurrent=args.max_concurrent, fetch=args.fetch, address=args.address, data_root=args.data_root,
        vgg_fallback=args.vgg_fallback, kind="study")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    launch = sweep.Launch(study_request(args), entry="harness.study", argv=argv, out=args.out, resume=args.resume,
                          dry_run=args.dry_run)
    return sweep.run_cli(launch, no_report=args.no_report)


if __name__ == "__main__":
    sys.exit(main())
