"""What a sweep will run, decided before Ray starts: every trial's config, the shared pretrainings, the Tune
parameter spaces, the resources, and the compute it will cost (`describe`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from harness.run import validation
from harness.run.runs import RunSpec, cost_lines, resolve_config, step_times_folder
from harness.run.storage import data_root, resolve_train_dirs
from harness.sweeps import arms
from harness.sweeps.recovery import params_key
from results import schema
from results.legacy import RENAMED_PRETRAIN_SEEDS  # until results.legacy.CUTOFF
from srgan.config import ExperimentConfig, from_dict
from srgan.losses import WeightsUnavailable
from srgan.versions import PRESETS, SIZES, check_size, continued_stage, pretrain_key, two_stage

DEFAULT_GRID = {"loss.adv_weight": [1e-3, 5e-3]}
PRETRAIN_SEEDS = ("per-seed", "shared")
SELECTIONS = ("final", "best-val")


def check_pretrain_seed(value: str) -> str:
    """`value` if it is a pretraining-seed choice; else a ValueError naming the choices (and today's word)."""
    if value in PRETRAIN_SEEDS:
        return value
    if value in RENAMED_PRETRAIN_SEEDS:
        raise ValueError(f"--pretrain-seed {value!r} was renamed: use {RENAMED_PRETRAIN_SEEDS[value]!r} "
                         f"(choices: {', '.join(PRETRAIN_SEEDS)})")
    raise ValueError(f"unknown --pretrain-seed {value!r}; choices: {', '.join(PRETRAIN_SEEDS)}")


@dataclass(frozen=True)
class SweepRequest:
    """What a sweep (or a study, `kind="study"`) is asked to run: built once, from `harness.sweep`'s command line
    (`harness.sweeps.cli.request_from_args`) or by `harness.study`, then planned (`plan_sweep`). JSON-able: sweep.json
    keeps it (`asdict`) so that `--resume` rebuilds it as it was."""

    presets: tuple[str, ...] = tuple(PRESETS)
    size: str = "tiny"  # srgan.versions.SIZES
    scale: int = 4
    steps: int | None = None  # total steps per trial (pretraining + GAN); None: the size's own
    grid: dict[str, list[Any]] = field(default_factory=lambda: dict(DEFAULT_GRID))  # config key -> values
    loguniform: dict[str, tuple[float, float]] = field(default_factory=dict)
    uniform: dict[str, tuple[float, float]] = field(default_factory=dict)
    search: str = "grid"  # "grid" | "random" | "pareto" (harness.sweeps.pareto_search)
    objectives: str = ""  # a Pareto search's "psnr:max,niqe:min" (held-out validation metrics)
    confirm_seeds: int = 0  # a Pareto search: re-train each front member with this many more seeds
    num_samples: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, in every trial
    seeds: tuple[int, ...] = ()  # repeat every trial with these seeds (a grid over train.seed)
    seed: int = 0  # the seed of every trial without `seeds`, and of shared pretrainings
    # "per-seed": one pretraining per seed, each seed's GAN trials start from their own; "shared": pretrainings
    # use `seed`, the trials' seeds vary the GAN stage only (the intervals then leave pretraining variance out)
    pretrain_seed: str = "per-seed"
    # Single-stage trials (v1) train as many generator updates as the two-stage preset they are compared with
    # (pretraining + GAN: `budget_partners`), so that a comparison measures the recipe, not the budget.
    equal_g_updates: bool = True
    selection: str = "final"  # scored weights: "final" (EMA where the recipe has it) | "best-val" (on validation)
    allow_selection_on_test: bool = False  # explicit opt-in: validate on a scored set (results flagged)
    scheduler: str = "asha"  # "asha" | "none"
    metric: str = "val_psnr"
    mode: str = "max"
    grace: int = 1
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_concurrent: int = 0  # 0: as many as the resources allow
    datasets: tuple[str, ...] = ("set5", "set14")
    save_images: tuple[str, ...] = ("set5",)
    fetch: bool = False
    address: str | None = None
    data_root: str | None = None
    vgg_fallback: str | None = None
    kind: str = "sweep"  # "study": the sweep ends with the study tables (results.study)
    pretrain_cache: bool = True  # reuse finished pretrainings across runs, and keep new ones (harness.sweeps.cache)
    # A study's extra trials (harness.sweeps.arms): the equal-budget control of every GAN stage, and a ladder
    # {key: values} of one GAN-stage setting run on each of `ladder_presets`' recipes
    controls: bool = False
    ladder: dict[str, list[float]] = field(default_factory=dict)
    ladder_presets: tuple[str, ...] = ()
    ladder_seed_factor: int = 1  # each ladder's top arm and 0 arm train this many times `seeds` (harness.sweeps.arms)

    def __post_init__(self) -> None:
        check_size(self.size)
        check_pretrain_seed(self.pretrain_seed)
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown selection {self.selection!r}; selections: {', '.join(SELECTIONS)}")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SweepRequest:
        """Rebuild a request that sweep.json keeps (JSON turned tuples into lists; a record written before a
        field existed gets what that sweep ran with)."""
        fields_ = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - fields_)
        if unknown:
            raise ValueError(f"unknown sweep request key(s): {', '.join(unknown)}")
        values = dict(record)
        values["pretrain_seed"] = RENAMED_PRETRAIN_SEEDS.get(values.get("pretrain_seed"), values.get("pretrain_seed",
                                                                                                      "per-seed"))
        values.setdefault("equal_g_updates", False)  # before it existed, every preset kept its own steps
        for key in ("presets", "seeds", "datasets", "save_images", "ladder_presets"):
            if key in values:
                values[key] = tuple(values[key])
        for key in ("loguniform", "uniform"):
            if key in values:
                values[key] = {k: (float(lo), float(hi)) for k, (lo, hi) in values[key].items()}
        return cls(**values)


@dataclass(frozen=True)
class SweepSettings:
    """What every trial shares; travels to trials as a plain dict (`asdict`)."""

    out: str
    data_root: str
    scale: int = 4
    size: str = "tiny"  # srgan.versions.SIZES
    steps: int | None = None  # total steps per trial (pretraining + GAN); None: the size's own
    overrides: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    vgg_fallback: str | None = None
    seed: int = 0
    pretrain_seed: str = "per-seed"  # "shared": pretrainings use `seed`, the trials' seeds vary the GAN stage only
    # single-stage preset -> the two-stage preset whose total generator updates it trains (`budget_partners`)
    budget_partners: dict[str, str] = field(default_factory=dict)
    pretrainings: dict[str, dict] = field(default_factory=dict)  # run name -> pretraining config (as a dict)
    pretrain_names: dict[str, str] = field(default_factory=dict)  # pretrain_key -> run name
    arms: dict[str, dict] = field(default_factory=dict)  # a study's controls and ladder arms (harness.sweeps.arms)
    roles: dict[str, dict] = field(default_factory=dict)  # trial name -> its study version, control, ladder arm
    # a planned trial's parameters (recovery.params_key) -> its config, resolved once by plan_sweep (to_dict)
    configs: dict[str, dict] = field(default_factory=dict)


def _recipe(settings: SweepSettings, params: dict[str, Any], *, stage: str = "single",
            init_from: str | None = None) -> ExperimentConfig:
    """A trial's config (`harness.run.runs.resolve_config`): the preset at the sweep's size, steps and seed, the
    sweep's overrides, then the trial's own values; `stage` picks the whole recipe, its pretraining or its GAN
    stage. With a shared pretraining seed a pretraining ignores the trial's seed."""
    own = {k: v for k, v in params.items() if k not in ("preset", "run_name")}
    if stage == "pretrain" and settings.pretrain_seed == "shared":
        own.pop("train.seed", None)
    every = 4 if settings.steps and not any(k.startswith("train.") and k.endswith("_every")
                                            for k in settings.overrides) else 0
    cfg = resolve_config(params["preset"], size=settings.size, scale=settings.scale, data_root=settings.data_root,
                         steps=settings.steps, seed=settings.seed, overrides={**settings.overrides, **own},
                         stage=stage, init_from=init_from, reports_per_stage=every,
                         vgg_fallback=settings.vgg_fallback if stage != "pretrain" else None)
    partner = settings.budget_partners.get(params["preset"])
    if stage != "single" or partner is None or two_stage(cfg):
        return cfg
    other = _recipe(replace(_shapes(settings), budget_partners={}), {**params, "preset": partner})
    return equal_budget(cfg, other.train.total_steps, every=every)


def equal_budget(cfg: ExperimentConfig, total: int, *, every: int) -> ExperimentConfig:
    """A single-stage config trained for `total` generator updates (its two-stage partner's pretraining + GAN),
    with as many validations and checkpoints as its own schedule made (the log cadence kept)."""
    t = cfg.train
    if cfg.train.total_steps == total:
        return cfg
    reports = every or max(math.ceil(cfg.train.total_steps / t.val_every), 1)
    cadence = max(math.ceil(total / reports), 1)
    return replace(cfg, train=replace(t, gan_steps=total - t.warmup_steps, val_every=cadence, ckpt_every=cadence))


def budget_partners(presets: tuple[str, ...], wholes: dict[str, ExperimentConfig]) -> dict[str, str]:
    """Each single-stage preset's two-stage partner: the next two-stage preset of the same generator family in
    the request's order (v1 -> v2), else the nearest one before it."""
    partners = {}
    for i, name in enumerate(presets):
        if name not in wholes or two_stage(wholes[name]):
            continue
        arch = wholes[name].generator.arch
        fits = [p for p in (*presets[i + 1:], *reversed(presets[:i]))
                if p in wholes and two_stage(wholes[p]) and wholes[p].generator.arch == arch]
        if fits:
            partners[name] = fits[0]
    return partners


def run_config(settings: SweepSettings, params: dict[str, Any]) -> ExperimentConfig:
    """The config one Tune trial trains: a shared pretraining (`run_name` names it) or a GAN trial, which
    starts from its pretraining when its preset has one (v1 has none: single stage). A planned trial's config was
    resolved once by `plan_sweep` and travels in `settings.configs`; a sampled one (random or Pareto search) is
    resolved here, in its trial."""
    if params.get("run_name"):
        if params["run_name"] not in settings.pretrainings:
            raise ValueError(f"pretraining {params['run_name']} is not in this sweep's plan")
        return from_dict(ExperimentConfig, settings.pretrainings[params["run_name"]])
    held = settings.configs.get(params_key(params))
    if held is not None:
        return from_dict(ExperimentConfig, held)
    recipe, control = arms.expand(settings.arms, params)  # a control or ladder arm: its recipe's parameters
    whole = _recipe(_shapes(settings), recipe)  # only its stages matter here
    if not two_stage(whole):
        return _recipe(settings, recipe)
    key = pretrain_key(_recipe(settings, recipe, stage="pretrain"))
    if key not in settings.pretrain_names:
        raise ValueError(f"{params}: its pretraining was not planned (a sampled value changes the pretraining; "
                         "sweep it with --grid instead)")
    return _gan_config(settings, recipe, control, key)


def _shapes(settings: SweepSettings) -> SweepSettings:
    """`settings` for reading a recipe's shape (its stages, steps, pretraining): the VGG19 weights are checked
    elsewhere (a trial without them fails in its trial, named, unless opted in), so untrained features stand in."""
    return replace(settings, vgg_fallback="untrained")


def _gan_config(settings: SweepSettings, recipe: dict[str, Any], control: bool, key: str) -> ExperimentConfig:
    """A two-stage trial's GAN stage, from the planned pretraining of `key` (its control: the pretraining continued
    with the pixel loss for as many updates, `srgan.versions.continued_stage`)."""
    source = Path(settings.out) / schema.TRIALS_DIR / settings.pretrain_names[key]
    cfg = _recipe(settings, recipe, stage="gan", init_from=str(source))
    return continued_stage(cfg) if control else cfg


def pretrain_run_names(pretrainings: dict[str, ExperimentConfig]) -> dict[str, str]:
    """pretrain_key -> run name, named for what they are (`srgan.versions.pretrain_name`: "srresnet-pretrain").
    Only where two of one generator family differ is a suffix added: "-seed<N>" when they differ by seed alone,
    else the first 8 hex digits of their key."""
    by_name: dict[str, list[str]] = {}
    for key, cfg in pretrainings.items():
        by_name.setdefault(cfg.name, []).append(key)
    names = {}
    for name, keys in by_name.items():
        if len(keys) == 1:
            names[keys[0]] = name
            continue
        seeds = [pretrainings[k].train.seed for k in keys]
        unseeded = {pretrain_key(replace(pretrainings[k], train=replace(pretrainings[k].train, seed=0)))
                    for k in keys}
        by_seed = len(unseeded) == 1 and len(set(seeds)) == len(keys)
        for key, seed in zip(keys, seeds, strict=True):
            names[key] = f"{name}-seed{seed}" if by_seed else f"{name}-{key[:8]}"
    return names


def reports_per_trial(cfg: ExperimentConfig) -> int:
    """Reports a GAN trial makes (its stage's steps over its validation cadence)."""
    t = cfg.train
    return max(math.ceil(t.total_steps / max(t.val_every, 1)), 1)


def trial_label(params: dict[str, Any]) -> str:
    if params.get("run_name"):
        return params["run_name"]
    parts = [params["preset"]] + [f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                                  for k, v in sorted(params.items()) if k not in ("preset", "run_name")]
    return " ".join(parts)


def trial_grid(request: SweepRequest) -> dict[str, list[Any]]:
    """The request's grid, with its seeds as a grid over train.seed."""
    grid = dict(request.grid)
    if request.seeds:
        grid["train.seed"] = list(request.seeds)
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


@dataclass
class SweepPlan:
    """Everything a sweep runs, checked before Ray starts."""

    request: SweepRequest
    settings: SweepSettings  # with its `pretrainings` filled in
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

    def gan_space(self) -> dict[str, Any]:
        from ray import tune

        r = self.request
        pick = tune.grid_search if r.search == "grid" else (lambda values: tune.choice(list(values)))
        space: dict[str, Any] = {"preset": pick([*r.presets, *self.settings.arms]),
                                 **{k: pick(list(v)) for k, v in self.grid.items()}}
        space.update({k: tune.loguniform(lo, hi) for k, (lo, hi) in r.loguniform.items()})
        space.update({k: tune.uniform(lo, hi) for k, (lo, hi) in r.uniform.items()})
        space["_num_samples"] = r.num_samples
        return space

    @property
    def grid(self) -> dict[str, list[Any]]:
        return trial_grid(self.request)

    @property
    def pretrain_configs(self) -> dict[str, ExperimentConfig]:
        return {name: from_dict(ExperimentConfig, c) for name, c in self.settings.pretrainings.items()}

    def validated_runs(self) -> dict[str, ExperimentConfig]:
        """One run per distinct validation the sweep trains with (pretrainings by name, trials by their config's
        name, and their label where one name validates two ways): what selection may read."""
        runs, seen = dict(self.pretrain_configs), set()
        for (params, _), cfg in zip(self.trials, self.runs, strict=True):
            d = cfg.data
            key = (cfg.name, cfg.scale, d.train_dirs[0], d.val_set, d.val_dirs, d.val_count, d.val_crop)
            if key in seen:
                continue
            seen.add(key)
            runs[cfg.name if cfg.name not in runs else f"{cfg.name} ({trial_label(params)})"] = cfg
        return runs

    def budget_lines(self) -> list[str]:
        """What each preset's scored weights cost in generator updates (pretraining included), and whether
        single-stage presets were given their partner's budget."""
        totals: dict[str, set[int]] = {}
        for params, whole in self.trials:
            totals.setdefault(params["preset"], set()).add(whole.train.total_steps)
        shown = ", ".join(f"{name} {'/'.join(str(t) for t in sorted(ts))}" for name, ts in totals.items())
        lines = [f"  budget (generator updates behind the scored weights, pretraining included): {shown}"]
        for single, partner in sorted(self.settings.budget_partners.items()):
            lines.append(f"    {single} trains in one stage as many generator updates as {partner}'s pretraining + "
                         "GAN stage (equal budgets)")
        if len({t for ts in totals.values() for t in ts}) > 1:
            lines.append("    unequal budgets are flagged unequal-budget in the study's comparisons")
        return lines

    def protocol_lines(self) -> list[str]:
        """Validation, selection and pretraining seeds, as the sweep will run them."""
        r, root = self.request, self.settings.data_root
        seen = {}
        for label, cfg in self.validated_runs().items():
            seen.setdefault(validation.describe(cfg, root), []).append(label)
        lines = []
        for text, labels in seen.items():
            who = "every run" if len(seen) == 1 else ", ".join(labels)
            lines.append(f"  validation ({who}): {text}; scored: {', '.join(r.datasets)}")
        if r.allow_selection_on_test:
            lines.append(f"    {validation.OPT_IN}: runs validating on a scored set are flagged "
                         f"{validation.SELECTED_ON_TEST}")
        chosen = ("final weights (EMA where the recipe has it)" if r.selection == "final"
                  else f"the kept checkpoint with the best validation {r.metric}")
        lines.append(f"  selection: {chosen} ({r.selection})")
        if self.settings.pretrainings and len(r.seeds) > 1:
            lines.append("  pretraining: " + ("one per seed (per-seed: pretraining variance included)"
                                              if r.pretrain_seed == "per-seed" else
                                              f"one for all seeds, seed {r.seed} (shared: the seeds vary the GAN "
                                              "stage only; pretraining variance is not in the intervals)"))
        return lines

    def step_counts(self) -> tuple[int, int]:
        """(steps with shared pretraining, steps if every trial pretrained itself): W + K*G against K*(W + G)."""
        repeats = self.request.num_samples
        alone = sum(cfg.train.total_steps for _, cfg in self.trials) * repeats
        gan_only = sum(cfg.train.gan_steps if two_stage(cfg) else cfg.train.total_steps for _, cfg in self.trials)
        return gan_only * repeats + sum(c.train.total_steps for c in self.pretrain_configs.values()), alone

    def describe(self, *, concurrency: int, cache_dir: Path | None = None, cached: Collection[str] = ()) -> str:
        """The plan and its cost; step times are cached in `cache_dir` (default: $ENHANCE_STEP_TIMES, else the
        sweep folder). The pretrainings named in `cached` come from the pretraining cache (harness.sweeps.cache): said,
        and not costed."""
        shared, alone = self.step_counts()
        names = ", ".join([*self.request.presets, *self.settings.arms])  # a study's controls and ladder arms too
        lines = [f"plan: {len(self.settings.pretrainings)} shared pretraining(s), "
                 f"{len(self.trials) * self.request.num_samples} GAN trial(s) ({names})"]
        pretrain = self.pretrain_configs
        for name, users in sorted(self.pretrain_users.items()):
            lines.append(f"  {name}: {pretrain[name].train.total_steps} pixel-loss steps, shared by "
                         f"{', '.join(sorted(set(users)))}" + (": from cache, not trained" if name in cached else ""))
        lines.append(f"  steps: {shared} with shared pretraining (W + K*G) instead of {alone} (K*(W + G))")
        lines += self.budget_lines() + self.protocol_lines()
        stages = {"pretrain": [c for n, c in pretrain.items() if n not in cached],
                  "gan": self.runs * self.request.num_samples}
        lines.append(cost_lines({k: v for k, v in stages.items() if v}, concurrency=concurrency,
                                gpus=self.settings.gpus_per_worker, workers=self.settings.workers,
                                cache_dir=Path(cache_dir or step_times_folder(self.settings.out)),
                                cpus=self.settings.cpus_per_worker))
        return "\n".join(lines)


def settings_from(request: SweepRequest, out: Path) -> SweepSettings:
    return SweepSettings(out=str(out), data_root=str(data_root(request.data_root)), scale=request.scale,
                         size=request.size, steps=request.steps or None, overrides=dict(request.overrides),
                         workers=request.workers_per_trial, cpus_per_worker=request.cpus_per_worker,
                         gpus_per_worker=request.gpus_per_worker, vgg_fallback=request.vgg_fallback,
                         seed=request.seed, pretrain_seed=request.pretrain_seed)


def plan_sweep(request: SweepRequest, out: Path) -> SweepPlan:
    """Resolve every trial's config once (unknown presets, keys and values fail here, before any worker starts;
    the trials and the progress line read them from `settings.configs`), find the shared pretrainings, and check
    data, datasets and resources."""
    from benchmarks.scoring.datasets import load_pairs
    from harness.cluster import resources
    from srgan.config import to_dict

    for name in request.presets:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)} "
                             f"(--size picks their size: {', '.join(SIZES)})")
    settings = settings_from(request, out)
    grid = trial_grid(request)
    points = grid_points(grid)
    if request.equal_g_updates:
        wholes = {name: _recipe(_shapes(settings), {"preset": name, **points[0]}) for name in request.presets}
        settings = replace(settings, budget_partners=budget_partners(request.presets, wholes))
    settings = replace(settings, **arms.study_arms(request, points[0], partial(_recipe, _shapes(settings))))
    trials, pretrainings, users, stages = [], {}, {}, []
    for name in (*request.presets, *settings.arms):
        for values in points:
            params = {"preset": name, **values,
                      **{k: lo for k, (lo, _hi) in (request.loguniform | request.uniform).items()}}
            recipe, control = arms.expand(settings.arms, params)
            whole = _recipe(_shapes(settings), recipe)
            key = None
            if two_stage(whole):
                pre = _recipe(settings, recipe, stage="pretrain")
                key = pretrain_key(pre)
                pretrainings.setdefault(key, pre)
                users.setdefault(key, []).append(name)
            trials.append((params, whole))
            stages.append((recipe, control, key))
    names = pretrain_run_names(pretrainings)
    settings = replace(settings, pretrainings={names[k]: to_dict(c) for k, c in pretrainings.items()},
                       pretrain_names=names)
    probe = RunSpec(cfg=trials[0][1], run_dir=out, data_root=Path(settings.data_root), workers=settings.workers,
                    cpus_per_worker=settings.cpus_per_worker, gpus_per_worker=settings.gpus_per_worker)
    local = None if request.address else resources.local_resources()
    runs, configs = [], {}
    for (params, _), (recipe, control, key) in zip(trials, stages, strict=True):
        try:  # each trial's config, resolved once here and carried to its trial (settings.configs)
            cfg = _recipe(settings, recipe) if key is None else _gan_config(settings, recipe, control, key)
            configs[params_key(params)] = to_dict(cfg)
        except WeightsUnavailable:  # resolved again in its trial, which fails there, named, unless opted in
            shapes = _shapes(settings)
            cfg = _recipe(shapes, recipe) if key is None else _gan_config(shapes, recipe, control, key)
        resolve_train_dirs(cfg, settings.data_root)
        runs.append(cfg)
        if local is not None:
            resources.check_run(replace(probe, cfg=cfg), local)
    settings = replace(settings, configs=configs)
    if request.fetch:
        from benchmarks.scoring.datasets import fetch_missing

        fetch_missing(list(request.datasets), settings.data_root)
    for name in request.datasets:
        load_pairs(name, request.scale, settings.data_root)  # raises naming the folder or file (and --fetch)
    sweep = SweepPlan(request, settings, trials, runs, {names[k]: v for k, v in users.items()}, probe)
    # selection never reads a scored set: refused here, before Ray starts, unless explicitly opted in
    validation.check_selection(sweep.validated_runs(), request.datasets, settings.data_root,
                               allow=request.allow_selection_on_test)
    return sweep
