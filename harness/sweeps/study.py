"""The study in one command: v1 -> v2 -> v3 -> RaGAN -> ESRGAN x seeds, with uncertainty; `python -m harness.study`.

A study is a kind of sweep (`harness.sweep`, `SweepRequest(kind="study")`): the five presets x N seeds, no early
stopping, pretrainings shared by the presets of one generator (one SRResNet for v2, v3 and RaGAN, one RRDB for
ESRGAN; one per seed or one for all seeds: `--pretrain-seed`), single-stage v1 trained for as many generator updates
as v2's pretraining + GAN stage, validation on images held out of the training folder (never a scored set), every
model's final weights scored on the benchmark sets, then the study tables (`results.study`: paired differences
with confidence intervals, mean +- std over seeds, GAN stability) and the report, whose "Study" section answers
the original study's comparison table with measured values.

What the adversarial term buys and costs, at equal budgets (`harness.sweeps.arms`): every GAN stage has a control, its
pretraining continued with the pixel loss only for the same generator updates, data order, lr schedule and seed
(`srresnet-continued` for v2, v3 and RaGAN, `rrdb-continued` for ESRGAN; no D step, so cheaper); and a ladder
(`--ladder KEY=V1,...`, default v2's `loss.adv_weight`, at size cpu 0, 1e-3, 0.1 and 10, its top arm and 0 arm
with three times the seeds: `LADDER`, `LADDER_SEED_FACTOR`; `--ladder none` turns it off; `--ladder-presets` picks the
recipes) runs the GAN stage once per value, every arm from the same pretraining per
seed with the same budget. The 0 arm of v2's ladder is its control and the 1e-3 arm is v2's own trial: no run is
trained twice.

Power, before the compute: `--dry-run --variance-from DIR` reads a previous study's variance components and prints,
per comparison, dataset and metric, the minimum difference the chosen `--seeds` could detect (80 % power, alpha
0.05) and, with `--target-diff`, how many seeds that difference needs (`results.study_power.plan`).

Sizes (srgan.versions.SIZES): `tiny` (tests and smoke runs, a few minutes), `cpu` (a 2-core CPU, about 10 minutes:
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
import math
import sys
from pathlib import Path

from harness.sweeps import cli, sweep
from harness.sweeps.arms import parse_ladder, parse_ladder_presets
from harness.sweeps.plan import SweepRequest
from srgan.versions import PRESETS

log = logging.getLogger(__name__)

# One pretraining per seed where a study can afford it (the intervals then include pretraining variance); the small
# sizes share one for all seeds, for their cost.
PRETRAIN_SEED = {"tiny": "shared", "cpu": "shared", "full": "per-seed", "paper": "per-seed"}
# The dose-response each size runs by default (`--ladder`, harness.sweeps.arms): v2's adversarial weight over three
# decades or more, 0 included (its 0 arm is srresnet-continued, its 1e-3 arm v2's own trial: neither trained twice).
# At cpu two arms of their own per seed, two decades apart from v2's 1e-3: 0.1 and 10, to fit the main job's time.
# Measured there on fresh clones (v2's recipe, 80 GAN steps of 12 48-px patches after 600 pretraining steps, Set5
# PSNR of the arm at 10 against the 0 arm): every seed of nine drops, 4.5 to 19.2 dB, but a runaway seed widens the
# interval: at 6 seeds -10.4 dB [-16.4, -4.4] (p 0.005, 0.12 after Holm), at 9 -10.3 [-14.5, -6.1] (p 2e-4, Holm
# 0.005; Set14 -8.4 [-11.9, -5.0], Holm 0.006). After 800 pretraining steps two of six seeds lost under 1.7 dB at 10
# and under 2.2 at 100 (Adam's steps barely depend on the loss's scale); before issue 25's longer pretraining (200
# steps of 12 64-px patches) every seed dropped 6.7 to 17.5 dB at 10 and runaway seeds kept the arm at 1 from
# separating at any affordable seed count. At full a 0.1 arm too, up to 1. None at tiny, where the test suite's real
# study stays small, nor at paper, where each arm is weeks of GPU time (opt in with --ladder).
LADDER = {"tiny": "none", "cpu": "loss.adv_weight=0,0.001,0.1,10", "full": "loss.adv_weight=0,0.001,0.01,0.1,1",
          "paper": "none"}
# Each ladder's top arm and 0 arm train this many times --seeds (their comparison is paired by seed; the other arms
# and versions keep --seeds): at cpu three times, the 9 seeds the measurement above needed, for 2 trials per extra seed.
LADDER_SEED_FACTOR = {"tiny": 1, "cpu": 3, "full": 1, "paper": 1}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_size_argument(p, default="cpu")
    p.add_argument("--seeds", type=int, default=3, help="seeds per version (default 3)")
    cli.add_pretrain_seed_argument(p, default=None)
    p.add_argument("--variance-from", default=None, metavar="DIR",
                   help="a previous study's folder: print the minimum detectable difference at --seeds and, with "
                        "--target-diff, the seeds it needs, per comparison, dataset and metric (with --dry-run: "
                        "before any compute)")
    p.add_argument("--target-diff", type=float, default=None, metavar="X",
                   help="with --variance-from: the difference to detect (in each metric's unit: dB, SSIM, ...)")
    cli.add_ladder_arguments(p, defaults=LADDER)
    cli.add_run_arguments(p, kind="study")
    p.epilog = (p.epilog or "") + ("--pretrain-seed defaults: " +
                                   ", ".join(f"{size} {seed}" for size, seed in PRETRAIN_SEED.items()))
    return p


def study_request(args: argparse.Namespace) -> SweepRequest:
    """The sweep this study is: every preset x seed, no early stopping, pretrainings shared by the presets of one
    generator (per seed or for all seeds), equal generator updates, final weights scored; with every GAN stage's
    equal-budget control and the ladder's arms (`harness.sweeps.arms`)."""
    ladder = parse_ladder(args.ladder or LADDER[args.size])
    if args.ladder_presets and not ladder:
        raise ValueError(f"--ladder-presets {args.ladder_presets}: no ladder at size {args.size} (--ladder KEY=V1,...)")
    return SweepRequest(
        **cli.run_request_fields(args), presets=tuple(PRESETS), size=args.size, grid={},
        seeds=tuple(range(args.seeds)), pretrain_seed=args.pretrain_seed or PRETRAIN_SEED[args.size],
        equal_g_updates=True, scheduler="none", save_images=("set5",), kind="study", controls=True,
        ladder=ladder, ladder_presets=parse_ladder_presets(args.ladder_presets or "v2"),
        ladder_seed_factor=LADDER_SEED_FACTOR[args.size] if ladder else 1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    if args.variance_from or args.target_diff is not None:
        try:
            print(power_table(args.variance_from, seeds=args.seeds, target_diff=args.target_diff), flush=True)
        except (ValueError, OSError) as err:  # results.io.ResultsError is a ValueError
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        request = study_request(args)
    except ValueError as err:  # e.g. --datasets naming no set: refused before anything runs
        print(f"error: {err}", file=sys.stderr)
        return 2
    launch = sweep.Launch(request, entry="harness.study", argv=argv, out=args.out, resume=args.resume,
                          dry_run=args.dry_run)
    return sweep.run_cli(launch, no_report=args.no_report)


def power_table(folder: str | None, *, seeds: int, target_diff: float | None) -> str:
    """The power of a study of `seeds` seeds, from the variance a previous study (`folder`) measured: one line per
    comparison, dataset and metric (`results.study_power.plan`)."""
    from results.stats import ALPHA, POWER
    from results.study_power import plan

    if folder is None:
        raise ValueError("--target-diff needs --variance-from DIR (the previous study whose variance it uses)")
    if target_diff is not None and not (math.isfinite(target_diff) and target_diff > 0):
        raise ValueError(f"--target-diff must be a finite difference > 0, got {target_diff}")
    rows = plan(Path(folder), n_seeds=seeds, target_diff=target_diff)
    if not rows:
        raise ValueError(f"{folder}: no comparison with scores on both sides: nothing to plan from")
    head = (f"power at {seeds} seed(s), from the variance measured in {folder} ({POWER:.0%} power, alpha {ALPHA:g}, "
            "per comparison; the study's Holm adjustment makes its verdicts more conservative):")
    columns = ["comparison", "dataset", "metric", "images", "sd seed", "sd image", "measured", f"mdd@{seeds}"]
    if target_diff is not None:
        columns.append(f"seeds for {target_diff:g}")
    lines = [[str(r["comparison"]), str(r["dataset"]), str(r["metric"]), str(r["n_images"]), _num(r["sd_seed"]),
              _num(r["sd_image"]), _num(r["measured_diff"]), _num(r["mdd"])]
             + ([str(r["seeds_needed"]) if r["seeds_needed"] is not None else "-"] if target_diff is not None else [])
             + ([f"({r['note']})"] if r.get("note") else []) for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(columns)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    body = [fmt.format(*line[:len(columns)]) + ("  " + line[len(columns)] if len(line) > len(columns) else "")
            for line in lines]
    return "\n".join([head, "  " + fmt.format(*columns), *("  " + b for b in body)])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


if __name__ == "__main__":
    sys.exit(main())
