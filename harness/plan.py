"""What a sweep will run, decided before Ray starts: every trial's config, the shared pretrainings, the Tune
parameter spaces, the resources, and the compute it will cost (`describe`)."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.runs import RunSpec, resolve_perceptual
from harness.storage import data_root, resolve_train_dirs
from results import schema
from srgan.config import ConfigError, ExperimentConfig, from_dict, override, parse_set_args
from srgan.losses import WeightsUnavailable
from srgan.versions import (
    PRESETS,
    gan_stage,
    preset,
    pretrain_key,
    pretrain_stage,
    two_stage,
    with_present_train_dirs,
)

DEFAULT_GRID = {"loss.adv_weight": [1e-3, 5e-3]}
PRETRAIN_PREFIX = "pretrain-"


@dataclass(frozen=True)
class SweepSettings:
    """What every trial shares; travels to trials as a plain dict."""

    out: str
    data_root: str
    scale: int = 4
    size: str = "tiny"  # "tiny" (CPU demo) or "full"
    schedule: str = "default"  # "paper": the published schedules (full size only)
    steps: int | None = 120  # total steps per trial (pretraining + GAN; None: the preset's own)
    overrides: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    vgg_fallback: str | None = None
    seed: int = 0
    pretrain_seed: str = "trial"  # "shared": pretrainings use `seed`, the trials' seeds vary the GAN stage only
    pretrainings: dict[str, dict] = field(default_factory=dict)  # run name -> pretraining config (as a dict)


def replace_steps(cfg: ExperimentConfig, total: int) -> ExperimentConfig:
    """Rescale a preset's phases to `total` steps, keeping its warmup share (v1 keeps none)."""
    t = cfg.train
    warmup = round(total * t.warmup_steps / max(t.warmup_steps + t.gan_steps, 1))
    return replace(cfg, train=replace(t, warmup_steps=warmup, gan_steps=total - warmup))


def single_config(settings, params: dict[str, Any]) -> ExperimentConfig:
    """A trial's whole recipe before it is split into stages: preset (+tiny, schedule), steps, seed, the
    sweep's overrides, then the trial's own values."""
    name = params["preset"] + ("" if settings.size == "full" else f"-{settings.size}")
    cfg = with_present_train_dirs(preset(name, scale=settings.scale, schedule=settings.schedule), settings.data_root)
    if settings.steps:
        cfg = replace_steps(cfg, settings.steps)
    cfg = replace(cfg, train=replace(cfg.train, seed=settings.seed))
    cfg = override(cfg, settings.overrides)
    return override(cfg, {k: v for k, v in params.items() if k not in ("preset", "run_name")})


def pretraining(cfg: ExperimentConfig, settings) -> tuple[str, ExperimentConfig]:
    """(run name, config) of the pretraining a two-stage recipe starts from; equal keys share one run."""
    if settings.pretrain_seed == "shared":
        cfg = replace(cfg, train=replace(cfg.train, seed=settings.seed))
    pre = pretrain_stage(cfg)
    return PRETRAIN_PREFIX + pretrain_key(pre)[:12], _cadence(pre, settings)


def run_config(settings, params: dict[str, Any]) -> ExperimentConfig:
    """The config one Tune trial trains: a shared pretraining (`run_name` names it) or a GAN trial, which
    starts from its pretraining when its preset has one (v1 has none: single stage)."""
    if params.get("run_name"):
        if params["run_name"] not in settings.pretrainings:
            raise ValueError(f"pretraining {params['run_name']} is not in this sweep's plan")
        cfg = from_dict(ExperimentConfig, settings.pretrainings[params["run_name"]])
    else:
        cfg = single_config(settings, params)
        if two_stage(cfg):
            source, _ = pretraining(cfg, settings)
            if source not in settings.pretrainings:
                raise ValueError(f"{params}: its pretraining {source} was not planned (a sampled value changes "
                                 "the pretraining; sweep it with --grid instead)")
            cfg = gan_stage(cfg, init_from=str(Path(settings.out) / schema.TRIALS_DIR / source))
    cfg = _cadence(cfg, settings)
    return resolve_perceptual(cfg, vgg_fallback=settings.vgg_fallback)


def _cadence(cfg: ExperimentConfig, settings) -> ExperimentConfig:
    """Every report carries a validation (ASHA compares on it) and a checkpoint: four per stage."""
    if not settings.steps or any(k.startswith("train.") and k.endswith("_every") for k in settings.overrides):
        return cfg
    t = cfg.train
    every = max((t.warmup_steps + t.gan_steps) // 4, 1)
    return replace(cfg, train=replace(t, log_every=every, val_every=every, ckpt_every=every))


def reports_per_trial(cfg: ExperimentConfig) -> int:
    """Reports a GAN trial makes (its stage's steps over its validation cadence)."""
    t = cfg.train
    return max(math.ceil((t.warmup_steps + t.gan_steps) / max(t.val_every, 1)), 1)


def trial_label(params: dict[str, Any]) -> str:
    if params.get("run_name"):
        return f"pretraining {params['run_name']}"
    parts = [params["preset"]] + [f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                                  for k, v in sorted(params.items()) if k not in ("preset", "run_name")]
    return " ".join(parts)


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


def parse_ranges(pairs: list[str] | None) -> dict[str, tuple[float, float]]:
    out = {}
    for key, raw in parse_set_args(pairs).items():
        lo, sep, hi = raw.partition(":")
        if not sep:
            raise ConfigError(f"--loguniform expects key=low:high, got {key}={raw}")
        out[key] = (float(lo), float(hi))
    return out


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


@dataclass
class SweepPlan:
    """Everything a sweep runs, checked before Ray starts."""

    args: argparse.Namespace
    settings: SweepSettings  # with its `pretrainings` filled in
    presets: list[str]
    grid: dict[str, list[Any]]
    loguniform: dict[str, tuple[float, float]]
    trials: list[tuple[dict[str, Any], ExperimentConfig]]  # (params, whole recipe) of every planned GAN trial
    runs: list[ExperimentConfig]  # what those trials train (the GAN stage when they have a pretraining)
    pretrain_users: dict[str, list[str]]  # pretraining run name -> presets that start from it
    probe: RunSpec

    @property
    def trial_cpus(self) -> float:
        return self.settings.workers * self.settings.cpus_per_worker

    @property
    def trial_gpus(self) -> float:
        return self.settings.workers * self.settings.gpus_per_worker

    def pretrain_space(self) -> dict[str, Any]:
        from ray import tune

        return {"run_name": tune.grid_search(sorted(self.settings.pretrainings))}

    def gan_space(self) -> dict[str, Any]:
        from ray import tune

        pick = tune.grid_search if self.args.search == "grid" else (lambda values: tune.choice(list(values)))
        space: dict[str, Any] = {"preset": pick(self.presets), **{k: pick(list(v)) for k, v in self.grid.items()}}
        space.update({k: tune.loguniform(lo, hi) for k, (lo, hi) in self.loguniform.items()})
        space["_num_samples"] = self.args.num_samples
        return space

    @property
    def pretrain_configs(self) -> dict[str, ExperimentConfig]:
        return {name: from_dict(ExperimentConfig, c) for name, c in self.settings.pretrainings.items()}

    def step_counts(self) -> tuple[int, int]:
        """(steps with shared pretraining, steps if every trial pretrained itself): W + K*G against K*(W + G)."""
        repeats = self.args.num_samples
        alone = sum(_steps(cfg) for _, cfg in self.trials) * repeats
        gan_only = sum(cfg.train.gan_steps if two_stage(cfg) else _steps(cfg) for _, cfg in self.trials)
        return gan_only * repeats + sum(_steps(c) for c in self.pretrain_configs.values()), alone

    def describe(self, *, concurrency: int) -> str:
        shared, alone = self.step_counts()
        lines = [f"plan: {len(self.settings.pretrainings)} shared pretraining(s), "
                 f"{len(self.trials) * self.args.num_samples} GAN trial(s) ({', '.join(self.presets)})"]
        pretrain = self.pretrain_configs
        for name, users in sorted(self.pretrain_users.items()):
            lines.append(f"  {name}: {_steps(pretrain[name])} pixel-loss steps, shared by "
                         f"{', '.join(sorted(set(users)))}")
        lines.append(f"  steps: {shared} with shared pretraining (W + K*G) instead of {alone} (K*(W + G))")
        stages = {"pretrain": list(pretrain.values()), "gan": self.runs * self.args.num_samples}
        lines.append(cost_lines({k: v for k, v in stages.items() if v}, concurrency=concurrency,
                                gpus=self.settings.gpus_per_worker, workers=self.settings.workers,
                                cache_dir=Path(self.settings.out), cpus=self.settings.cpus_per_worker))
        return "\n".join(lines)


def cost_lines(stages: dict[str, list[ExperimentConfig]], *, concurrency: int, gpus: float, workers: int,
               cache_dir: Path, cpus: float = 1.0) -> str:
    """The cost estimate printed before a launch (steps, measured step time, device-hours, wall time). On a CPU
    the steps are timed on as many threads as a worker gets (`cpus`), as the workers will run them."""
    import torch

    from benchmarks.cost import estimate

    device = "cuda" if gpus > 0 else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        steps = sum(_steps(c) for runs in stages.values() for c in runs)
        return f"cost estimate: {steps:,} steps; step time not measured (the workers' GPUs are not visible here)"
    cache_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(max(1, int(cpus)))
    try:  # one timed step per network on a CPU: a full-size GAN step there takes tens of seconds
        return estimate(stages, concurrency=concurrency, device=device, cache_dir=cache_dir,
                        devices_per_run=workers, steps=1 if device == "cpu" else 3).format()
    finally:
        torch.set_num_threads(threads)


def run_plan(spec: RunSpec) -> str:
    """What `harness.train` is about to run, and its cost."""
    t = spec.cfg.train
    head = (f"plan: {spec.cfg.name} x{spec.cfg.scale}, stage {t.stage}"
            + (f" from {t.init_from}" if t.init_from else "")
            + f": {t.warmup_steps} pixel-loss + {t.gan_steps} GAN steps, batch {spec.cfg.data.batch_size}, "
              f"{spec.workers} worker(s)")
    return head + "\n" + cost_lines({t.stage: [spec.cfg]}, concurrency=1, gpus=spec.gpus_per_worker,
                                    cpus=spec.cpus_per_worker, workers=spec.workers, cache_dir=spec.run_dir.parent)


def _steps(cfg: ExperimentConfig) -> int:
    return cfg.train.warmup_steps + cfg.train.gan_steps


def settings_from(args: argparse.Namespace, out: Path) -> SweepSettings:
    return SweepSettings(out=str(out), data_root=str(data_root(args.data_root)), scale=args.scale, size=args.size,
                         schedule=args.schedule, steps=args.steps or None, overrides=parse_set_args(args.overrides),
                         workers=args.workers_per_trial, cpus_per_worker=args.cpus_per_worker,
                         gpus_per_worker=args.gpus_per_worker, vgg_fallback=args.vgg_fallback, seed=args.seed,
                         pretrain_seed=args.pretrain_seed)


def plan_sweep(args: argparse.Namespace, out: Path):
    """Build every trial config once (unknown presets, keys and values fail here, before any worker starts),
    find the shared pretrainings, and check data, datasets and resources."""
    from benchmarks.datasets import load_pairs
    from harness import resources
    from srgan.config import to_dict

    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for name in presets:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)} "
                             f"(--size tiny picks their CPU-sized variants)")
    grid = {} if args.grid == ["none"] else parse_grid(args.grid) if args.grid else dict(DEFAULT_GRID)
    if args.seeds:
        grid["train.seed"] = [int(x) for x in args.seeds.split(",") if x.strip()]
    loguniform = parse_ranges(args.loguniform)
    settings = settings_from(args, out)
    trials, pretrainings, users = [], {}, {}
    for name in presets:
        for values in grid_points(grid):
            params = {"preset": name, **values, **{k: lo for k, (lo, _hi) in loguniform.items()}}
            cfg = single_config(settings, params)
            if two_stage(cfg):
                source, pre = pretraining(cfg, settings)
                pretrainings.setdefault(source, to_dict(pre))
                users.setdefault(source, []).append(name)
            trials.append((params, cfg))
    settings = replace(settings, pretrainings=pretrainings)
    probe = RunSpec(cfg=trials[0][1], run_dir=out, data_root=Path(settings.data_root), workers=settings.workers,
                    cpus_per_worker=settings.cpus_per_worker, gpus_per_worker=settings.gpus_per_worker)
    runs = []
    for params, _ in trials:
        try:
            cfg = run_config(settings, params)
        except WeightsUnavailable:  # fails in its trial, named there, unless the user opted in
            cfg = run_config(replace(settings, vgg_fallback="untrained"), params)
        resolve_train_dirs(cfg, settings.data_root)
        runs.append(cfg)
        if not args.address:
            resources.check_run(replace(probe, cfg=cfg), resources.local_resources())
    datasets = [name.strip() for name in args.datasets.split(",") if name.strip()]
    if args.fetch:
        from benchmarks.evaluate import fetch_missing

        fetch_missing(datasets, settings.data_root)
    for name in datasets:
        load_pairs(name, args.scale, settings.data_root)  # raises naming the folder or file (and --fetch)
    return SweepPlan(args, settings, presets, grid, loguniform, trials, runs, users, probe)

