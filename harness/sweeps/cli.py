"""The command lines of `harness.sweep` and `harness.study`: their options, and the typed `SweepRequest` a sweep's
command line asks for (every string parsed here, once; a study adds its own fields to `run_request_fields`)."""

from __future__ import annotations

import argparse
import re
from typing import Any

from benchmarks.scoring.datasets import parse_datasets
from harness.run.options import add_shared_arguments
from harness.sweeps import plan
from srgan.config import ConfigError, add_override_argument, parse_set_args
from srgan.versions import CPU_GAN_STEPS, CPU_PRETRAIN_STEPS, PRESETS, SIZES, check_size


def sweep_parser(description: str = "Ray Tune sweeps of versions x loss weights; python -m harness.sweep"
                 ) -> argparse.ArgumentParser:
    """`harness.sweep`'s command line (`description`: its --help header)."""
    p = argparse.ArgumentParser(prog="python -m harness.sweep", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets to compare")
    add_size_argument(p, default="tiny")
    p.add_argument("--schedule", help=argparse.SUPPRESS)  # replaced by --size paper: named in the error
    p.add_argument("--steps", type=int, default=None,
                   help="total steps per trial (pretraining + GAN), the preset's warmup share kept; default (or 0): "
                        f"the size's own (srgan.versions; cpu: {CPU_PRETRAIN_STEPS} + {CPU_GAN_STEPS} for a "
                        "two-stage preset)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="values of a config field to sweep (repeatable); default loss.adv_weight=0.001,0.005 (none "
                        "with --search pareto); `--grid none`: each preset's own values; with --search random or "
                        "pareto, a choice among the values")
    p.add_argument("--loguniform", action="append", metavar="KEY=LOW:HIGH",
                   help="sample a field log-uniformly (random or pareto search)")
    p.add_argument("--uniform", action="append", metavar="KEY=LOW:HIGH",
                   help="sample a field uniformly (random or pareto search)")
    p.add_argument("--search", choices=("grid", "random", "pareto"), default="grid",
                   help="grid; random; pareto: a multi-objective search (Optuna's multi-objective TPE) for the "
                        "trade-off front of --objectives, written to pareto.parquet (harness.sweeps.pareto_search)")
    p.add_argument("--objectives", default=None, metavar="METRIC:MODE,...",
                   help="--search pareto: two or three held-out validation metrics with max or min (psnr, ssim, "
                        "niqe; default psnr:max,niqe:min)")
    p.add_argument("--confirm-seeds", type=int, default=0, metavar="K",
                   help="--search pareto: re-train every front member with K more seeds, score them all on the test "
                        "sets and report the front with seed intervals (default 0)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="samples (random, pareto) or repeats (grid); default 1; with --resume, a larger number "
                        "continues a pareto search to it")
    add_override_argument(p)  # in every trial
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--seed", type=int, default=0, help="the seed of every trial (and of shared pretrainings)")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="repeat every trial with these seeds (a grid over train.seed)")
    add_pretrain_seed_argument(p, default=None,  # resolved in request_from_args
                               default_note="default per-seed; shared with --search pareto, whose confirm seeds vary "
                                            "the GAN stage")
    p.add_argument("--preset-budgets", action="store_true",
                   help="keep every preset's own steps: single-stage v1 then makes fewer generator updates than the "
                        "two-stage versions' pretraining + GAN (the study flags such comparisons unequal-budget); "
                        "default: v1 trains as many as its two-stage partner")
    p.add_argument("--scheduler", choices=("asha", "none"), default=None,
                   help="default asha (none with --search pareto: ASHA stops trials on one metric)")
    p.add_argument("--metric", default="val_psnr", help="metric for ASHA (default val_psnr)")
    p.add_argument("--mode", choices=("max", "min"), default="max")
    p.add_argument("--grace", type=int, default=1, help="ASHA grace period in reports (default 1)")
    p.add_argument("--save-images", default="set5",
                   help="datasets (or dataset/image names) whose SR images are kept for the report's crops")
    add_run_arguments(p, kind="sweep")
    return p


def add_size_argument(p: argparse.ArgumentParser, *, default: str) -> None:
    """--size on the one ladder (srgan.versions.SIZES); an old name is an error naming today's."""
    def size(value: str) -> str:
        try:
            return check_size(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    p.add_argument("--size", type=size, default=default, metavar="|".join(SIZES),
                   help="tiny: tests and smoke runs; cpu: networks that learn in minutes on a 2-core CPU; full: the "
                        f"papers' network sizes, the presets' own steps; paper: full size, published schedules "
                        f"(default {default})")


def add_pretrain_seed_argument(p: argparse.ArgumentParser, *, default: str | None, default_note: str = "") -> None:
    """--pretrain-seed per-seed|shared; the old word `trial` is an error naming `per-seed`. `default_note`: how the
    default is chosen where it depends on other options (with `default=None`)."""
    def choice(value: str) -> str:
        try:
            return plan.check_pretrain_seed(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    p.add_argument("--pretrain-seed", type=choice, default=default, metavar="|".join(plan.PRETRAIN_SEEDS),
                   help="per-seed: one pretraining per seed, each seed's GAN trials start from their own (the "
                        "intervals include pretraining variance); shared: one pretraining (--seed) for all seeds, "
                        "which then vary the GAN stage only"
                        + (f" (default {default})" if default else f" ({default_note})" if default_note else ""))


def add_run_arguments(p: argparse.ArgumentParser, *, kind: str) -> None:
    """The options a sweep and a study share: resources, data, folders, weights, selection, dry run, report (read
    back by `run_request_fields`)."""
    p.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train workers (DDP ranks) per trial")
    add_shared_arguments(p, packs="trials")
    p.add_argument("--max-concurrent", type=int, default=0, help="default: as many as the resources allow")
    p.add_argument("--datasets", default="set5,set14", help="benchmark sets to score on (default set5,set14)")
    p.add_argument("--fetch", action="store_true",
                   help="download a missing benchmark set from its public address (checksum verified)")
    p.add_argument("--out", default=None, help=f"results folder, new or empty (default ./runs/{kind}-<timestamp>)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help=f"continue an interrupted {kind} in DIR as it was started (other options are an error, "
                        "except --dry-run and --no-report; data that changed since it started is refused)")
    p.add_argument("--select", choices=plan.SELECTIONS, default="final",
                   help="which weights of each trial are scored: final (its last checkpoint, EMA where the recipe "
                        "has it, as the papers report; default) or best-val (the kept checkpoint with the best "
                        "validation metric); recorded in trials.parquet `selection`")
    p.add_argument("--allow-selection-on-test", action="store_true",
                   help="explicit opt-in: let a run validate on a set that is also scored (refused otherwise); "
                        "every result of such a run is flagged selected-on-test")
    p.add_argument("--no-cache", action="store_true",
                   help="train every shared pretraining here, and keep none: no use of the pretraining cache "
                        "($ENHANCE_CACHE, default cache/ under the results root)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")


def request_from_args(args: argparse.Namespace) -> plan.SweepRequest:
    """The typed request of `harness.sweep`'s command line (strings parsed here, once)."""
    if args.schedule is not None:
        raise ValueError("--schedule was replaced by the size ladder: use --size paper for the published schedules")
    presets = tuple(p.strip() for p in args.presets.split(",") if p.strip())
    pareto = args.search == "pareto"
    grid = ({} if args.grid == ["none"] else parse_grid(args.grid) if args.grid
            else {} if pareto else dict(plan.DEFAULT_GRID))
    seeds = tuple(int(x) for x in args.seeds.split(",") if x.strip()) if args.seeds else ()
    request = plan.SweepRequest(
        **run_request_fields(args), presets=presets, size=args.size, scale=args.scale, steps=args.steps or None,
        grid=grid, loguniform=parse_ranges(args.loguniform), uniform=parse_ranges(args.uniform, option="--uniform"),
        search=args.search, num_samples=args.num_samples or 1,
        objectives=(args.objectives or "psnr:max,niqe:min") if pareto else "", confirm_seeds=args.confirm_seeds,
        overrides=parse_set_args(args.overrides), seeds=seeds, seed=args.seed,
        pretrain_seed=args.pretrain_seed or ("shared" if pareto else "per-seed"),
        equal_g_updates=not args.preset_budgets, scheduler=args.scheduler or ("none" if pareto else "asha"),
        metric=args.metric, mode=args.mode, grace=args.grace,
        save_images=tuple(x for x in args.save_images.split(",") if x))
    if not pareto:
        if args.objectives or args.confirm_seeds:
            raise ValueError("--objectives and --confirm-seeds belong to --search pareto")
        return request
    from harness.sweeps import pareto_search

    pareto_search.check_request(request)  # a ValueError naming the option, before Ray starts
    return pareto_search.with_validation_crop(request)


def run_request_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The `SweepRequest` fields of the options a sweep and a study share (`add_run_arguments`), read once for both."""
    return dict(selection=args.select, allow_selection_on_test=args.allow_selection_on_test,
                workers_per_trial=args.workers_per_trial, cpus_per_worker=args.cpus_per_worker,
                gpus_per_worker=args.gpus_per_worker, max_concurrent=args.max_concurrent,
                datasets=tuple(parse_datasets(args.datasets)), fetch=args.fetch, address=args.address,
                data_root=args.data_root, vgg_fallback=args.vgg_fallback, pretrain_cache=not args.no_cache)


def parse_grid(pairs: list[str] | None) -> dict[str, list[Any]]:
    """["loss.adv_weight=1e-3,5e-3"] -> {"loss.adv_weight": [0.001, 0.005]} (numbers parsed when they are)."""
    out: dict[str, list[Any]] = {}
    for key, raw in parse_set_args(pairs).items():
        values: list[Any] = []
        for item in raw.split(","):
            try:
                values.append(int(item) if re.fullmatch(r"-?\d+", item) else float(item))
            except ValueError:
                values.append(item)
        out[key] = values
    return out


def parse_ranges(pairs: list[str] | None, *, option: str = "--loguniform") -> dict[str, tuple[float, float]]:
    out = {}
    for key, raw in parse_set_args(pairs).items():
        lo, sep, hi = raw.partition(":")
        try:
            if not sep:
                raise ValueError
            out[key] = (float(lo), float(hi))
        except ValueError:
            raise ConfigError(f"{option} expects key=low:high (two numbers), got {key}={raw}") from None
    return out


def add_ladder_arguments(p: argparse.ArgumentParser, *, defaults: dict[str, str]) -> None:
    """A study's --ladder and --ladder-presets (`harness.sweeps.arms`); `defaults`: the ladder of each size."""
    shown = "; ".join(f"{size}: {ladder}" for size, ladder in defaults.items())
    p.add_argument("--ladder", default=None, metavar="KEY=V1,V2,...",
                   help="a dose-response: the GAN stage of each --ladder-presets recipe trained once per value of one "
                        "config key, every arm from the same pretraining per seed with the same budget; the 0 arm "
                        "of a pixel-only recipe is its equal-budget control (trained once). `none`: no ladder. "
                        f"Default by --size ({shown})")
    p.add_argument("--ladder-presets", default=None, metavar="P1,P2",
                   help="the two-stage presets whose recipes the ladder varies (default v2: L1 + adversarial, no VGG "
                        "features; e.g. v2,esrgan)")


# What `--resume DIR` may be given: it continues the run as its sweep.json records it, so an option that would
# change what the run computes (seeds, data, datasets, the cache, ...) is an error naming it, never dropped silently
# (issue 27.1). A Pareto search's larger --num-samples continues the search to it (harness.sweeps.pareto_search).
RESUME_OPTIONS = ("--resume", "--dry-run", "--no-report")
RESUME_OPTIONS_PARETO = ("--num-samples",)


def resume_conflicts(argv: list[str], *, search: str) -> list[str]:
    """The options of a `--resume` command line that a resume cannot apply, as the user wrote them (given at their
    default value too). `argv` is one its command's parser accepted: every `--name` in it is one of the command's
    options (an abbreviation an unambiguous one); `search`, the resumed run's, says whether --num-samples
    continues it (pareto)."""
    allowed = RESUME_OPTIONS + (RESUME_OPTIONS_PARETO if search == "pareto" else ())
    written = {token.split("=", 1)[0] for token in argv if token.startswith("--") and token != "--"}
    return sorted(w for w in written if not any(option.startswith(w) for option in allowed))


def check_resume_options(argv: list[str], request: plan.SweepRequest, *, command: str, out) -> None:
    """A ValueError naming every option of the `--resume` command line `argv` that would change the run `request`
    (as sweep.json records it, started by `command`)."""
    conflicts = resume_conflicts(argv, search=request.search)
    if conflicts:
        more = " (and --num-samples, to continue its Pareto search)" if request.search == "pareto" else ""
        raise ValueError(f"--resume {out} continues the {request.kind} as sweep.json records it ({command}); "
                         f"{', '.join(conflicts)} would change it and cannot be applied. Give --resume alone (with "
                         f"--dry-run or --no-report){more}, or start a new {request.kind} with --out")
