"""The Pareto search: `python -m harness.sweep --search pareto --objectives psnr:max,niqe:min --loguniform ...`.

A multi-objective Ray Tune search over loss weights (or any config key the grid accepts) whose answer is not one
"best" trial but the trade-off curve: the settings no other setting beats on every objective. The objectives are
the trials' **held-out validation** metrics (`harness.run.validation`: the held-out split of the training folder;
never a scored set, and `--allow-selection-on-test` is refused here), taken from each trial's final report, which
always validates (`harness.train`). The test sets are scored afterwards with the papers' protocol, as in every
sweep; they never steer the search.

The searcher is Ray's `OptunaSearch(metric=[...], mode=[...])` (set on the searcher, not on `TuneConfig`; Ray
2.60 scores each trial by its last result) with Optuna's **multi-objective TPE** sampler (`TPESampler`: MOTPE,
Ozaki et al. 2020/2022), not NSGA-II. NSGA-II evolves populations (Optuna's default is 50 per generation), so at
the budgets a GAN trial allows here (10 to 50 trials) it never leaves its random first generation; MOTPE models the
front from a few random start-up trials on (`startup_trials`) and was designed for expensive evaluations.
`constant_liar` keeps trials that run side by side from being sampled at the same point.

ASHA is off in a Pareto search (it would stop trials on one metric); the divergence stopper stays. Shared
pretrainings work as in every sweep (cached, trained once); with `--confirm-seeds` the seeds vary the GAN stage
only (`--pretrain-seed shared`). `--resume` restores Tune's state with the searcher's (Optuna's study, pickled by
Tune), keeps finished trials and, with a larger `--num-samples`, samples the difference (`raise_num_samples`).

The search's table is pareto.parquet (`write_pareto`): every GAN trial's parameters and objectives, its
non-dominated rank and `front` flag (`results.pareto`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from results import io, schema
from results.pareto import Objective, ObjectiveError, parse_objectives, with_front

log = logging.getLogger(__name__)

PARETO_FILE = "pareto.parquet"
# metric -> the key of a trial's validation report (`harness.run.validation.score`)
VALIDATION_METRICS = {"psnr": "val_psnr", "ssim": "val_ssim", "niqe": "val_niqe"}
UNAVAILABLE = {"lpips": "validation does not compute LPIPS (its AlexNet weights are not on these machines, and "
                        "scoring it at every validation would cost more than the GAN steps at the cpu size); search "
                        "on niqe:min, the perceptual index's no-reference half"}
NIQE_BLOCKS = 2  # benchmarks.scoring.niqe.NIQE_MIN_BLOCKS: the model fits a covariance over the blocks


def objectives(text: str) -> tuple[Objective, ...]:
    """`--objectives` parsed (two or three metrics the validation computes); an `ObjectiveError` otherwise."""
    wanted = {part.partition(":")[0].strip().lower() for part in (text or "").split(",")}
    for metric in sorted(wanted & set(UNAVAILABLE)):
        raise ObjectiveError(f"--objectives: {metric}: {UNAVAILABLE[metric]}")
    return parse_objectives(text, known=set(VALIDATION_METRICS))


def report_keys(objs: tuple[Objective, ...]) -> list[str]:
    """The trial-report keys the searcher is told to read."""
    return [VALIDATION_METRICS[o.metric] for o in objs]


def niqe_val_crop(scale: int) -> int:
    """The smallest validation crop (px, a multiple of `scale`) holding NIQE's two 96-px blocks after the border
    crop: 2 x 96 + 2 x scale."""
    from math import ceil

    return ceil((2 * 96 + 2 * scale) / scale) * scale


def check_request(request) -> None:
    """Everything a Pareto search's command line can get wrong, as a ValueError naming the option, before Ray
    starts: the objectives, a space to search, and what the search cannot combine with."""
    objs = objectives(request.objectives)
    sampled = dict(request.loguniform) | dict(request.uniform)
    chosen = {k: v for k, v in request.grid.items() if len(v) > 1}
    if not sampled and not chosen and len(request.presets) < 2:
        raise ValueError("--search pareto needs a space to search: --loguniform KEY=LOW:HIGH, --uniform KEY=LOW:HIGH "
                         "or a choice --grid KEY=V1,V2 (e.g. --loguniform loss.adv_weight=1e-4:1e-1)")
    both = sorted((set(request.loguniform) & set(request.uniform)) | (set(sampled) & set(request.grid)))
    if both:
        raise ValueError(f"--search pareto: {', '.join(both)} is given two ways (--loguniform/--uniform/--grid); "
                         "name each key once")
    for key, (lo, hi) in request.loguniform.items():
        if not 0 < lo < hi:
            raise ValueError(f"--loguniform {key}={lo}:{hi}: needs 0 < LOW < HIGH")
    for key, (lo, hi) in request.uniform.items():
        if not lo < hi:
            raise ValueError(f"--uniform {key}={lo}:{hi}: needs LOW < HIGH")
    if request.num_samples < 2:
        raise ValueError(f"--search pareto --num-samples {request.num_samples}: a front needs at least 2 trials")
    if request.seeds:
        raise ValueError("--search pareto takes no --seeds: the search samples settings with --seed, and "
                         "--confirm-seeds K re-trains the front with K more seeds")
    if request.allow_selection_on_test:
        raise ValueError("--search pareto never reads a scored set: its objectives are held-out validation metrics "
                         "(drop --allow-selection-on-test)")
    if request.scheduler != "none":
        raise ValueError("--search pareto runs without ASHA (it stops trials on one metric): use --scheduler none")
    if request.confirm_seeds < 0:
        raise ValueError(f"--confirm-seeds {request.confirm_seeds}: give 0 or more seeds")
    if request.confirm_seeds and request.pretrain_seed != "shared":
        raise ValueError("--confirm-seeds re-trains the GAN stage from the search's pretraining: use "
                         "--pretrain-seed shared")
    log.debug("pareto search on %s", ", ".join(o.text for o in objs))


def with_validation_crop(request):
    """The request with validation crops that hold NIQE's blocks where NIQE is an objective and `data.val_crop` is
    not set (the plan prints the crop); else the request unchanged."""
    if "niqe" not in {o.metric for o in objectives(request.objectives)} or "data.val_crop" in request.overrides:
        return request
    return replace(request, overrides={**request.overrides, "data.val_crop": niqe_val_crop(request.scale)})


def check_plan(sweep) -> list[str]:
    """The plan's side of the search, before Ray starts: every validation can compute every objective (NIQE: its
    parameters exist, and some held-out crops hold its blocks). Returns the plan's lines about the search."""
    from harness.run import validation
    from harness.sweeps.plan import run_config

    r = sweep.request
    for params, _ in sweep.trials:  # the plan built every trial at the low ends: the high ends must be valid too
        run_config(sweep.settings, {**params, **{k: hi for k, (_lo, hi) in (r.loguniform | r.uniform).items()}})
    objs = objectives(sweep.request.objectives)
    lines = [f"  pareto search: {', '.join(o.text for o in objs)} on held-out validation, sampler: Optuna's "
             f"multi-objective TPE ({startup_trials(sweep.request.num_samples)} random start-up trials), "
             f"{sweep.request.num_samples} trials"]
    if r.confirm_seeds:
        seeds = ", ".join(map(str, confirm_seeds(r)))
        lines.append(f"    then every front member re-trained with seed(s) {seeds} from the same pretraining (the "
                     "front's size is known after the search: up to "
                     f"{r.num_samples * r.confirm_seeds} more trials), all scored on {', '.join(r.datasets)}")
    if "niqe" not in {o.metric for o in objs}:
        return lines
    root = sweep.settings.data_root
    if validation.niqe_params_of(str(root)) is None:
        from benchmarks.scoring.metrics import MetricUnavailable, load_niqe_params

        try:
            load_niqe_params(data_root=root)
        except MetricUnavailable as err:
            raise ValueError(f"--objectives niqe: {err}") from None
    for label, cfg in sweep.validated_runs().items():
        if cfg.train.stage == "pretrain":  # pretrainings validate on PSNR; the objectives are the GAN trials'
            continue
        pairs = validation.validation_pairs(cfg, root)
        held = validation.niqe_pairs(pairs, cfg.scale)
        if not held:
            raise ValueError(f"--objectives niqe: none of the {len(pairs)} validation image(s) of {label} holds "
                             f"{NIQE_BLOCKS} NIQE blocks of 96 px in its {cfg.data.val_crop}-px crop; raise "
                             f"data.val_crop (--set data.val_crop={niqe_val_crop(cfg.scale)}) or validate on "
                             "larger images (data.val_set=dirs)")
        lines.append(f"    NIQE on {len(held)} of {len(pairs)} validation crop(s) of {label} "
                     f"(crops of at most {cfg.data.val_crop} px; the others are smaller than NIQE's blocks)")
    return lines


def startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the front: a third of the budget, between 3 and 10 (Optuna's default)."""
    return max(3, min(10, num_samples // 3))


def searcher(request):
    """Ray's `OptunaSearch` told every objective with its mode, on a seeded multi-objective TPE sampler."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    objs = objectives(request.objectives)
    sampler = optuna.samplers.TPESampler(n_startup_trials=startup_trials(request.num_samples), multivariate=True,
                                         constant_liar=True, seed=request.seed)
    return OptunaSearch(metric=report_keys(objs), mode=[o.mode for o in objs], sampler=sampler)


def raise_num_samples(tune_dir: Path, num_samples: int) -> int | None:
    """On `--resume` with a larger `--num-samples`: raise the total Tune's saved search state will sample (the
    searcher's own state, Optuna's study, is kept as it is). Returns the previous total (None: no saved state)."""
    import ray.cloudpickle as cloudpickle

    files = sorted(Path(tune_dir).glob("search_gen_state-*.json"))  # the newest by name, as Tune restores it
    if not files:
        return None
    path = files[-1]
    with path.open("rb") as fh:
        state = cloudpickle.load(fh)
    before = int(state["total_samples"])
    if num_samples < before:
        raise ValueError(f"--num-samples {num_samples}: the search already sampled up to {before}; give "
                         f"{before} or more")
    if num_samples > before:
        state["total_samples"] = num_samples
        state["finished"] = False
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as fh:
            cloudpickle.dump(state, fh)
        tmp.replace(path)
    return before


def trial_rows(tune_dir: Path, out: Path, request) -> list[dict[str, Any]]:
    """One row per trial of a Tune experiment of the search: its folder name, label, status, parameters and the
    objectives of its final report (null where the trial ended without one, e.g. a diverged GAN)."""
    from ray.tune import ExperimentAnalysis

    from harness.sweeps.plan import trial_label
    from harness.sweeps.recovery import check_readable, folders_by_trial_id

    check_readable(tune_dir)
    keys = report_keys(objectives(request.objectives))
    folders = folders_by_trial_id(out)
    rows = []
    for trial in ExperimentAnalysis(str(tune_dir)).trials:
        params, last = dict(trial.config), trial.last_result or {}
        rows.append({"trial_id": folders.get(trial.trial_id, trial.trial_id), "label": trial_label(params),
                     "status": trial.status, "params": params, **{k: _number(last.get(k)) for k in keys}})
    return rows


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def pareto_table(rows: list[dict[str, Any]], request):
    """pareto.parquet's frame: trial_id, label, status, seed, one column per searched key, one per objective,
    `rank` and `front` (`results.pareto.with_front`)."""
    import polars as pl

    objs = objectives(request.objectives)
    keys = report_keys(objs)
    searched = ["preset", *sorted(set(request.grid) | set(request.loguniform) | set(request.uniform))]
    columns: dict[str, list] = {"trial_id": [], "label": [], "status": [], "seed": []}
    for k in searched + keys:
        columns[k] = []
    for row in rows:
        columns["trial_id"].append(row["trial_id"])
        columns["label"].append(row["label"])
        columns["status"].append(row["status"])
        columns["seed"].append(int(row["params"].get("train.seed", request.seed)))
        for k in searched:
            columns[k].append(row["params"].get(k))
        for k in keys:
            columns[k].append(row[k])
    frame = pl.DataFrame(columns, strict=False)
    frame = frame.with_columns([pl.col(k).cast(pl.Float64) for k in keys])
    return with_front(frame, keys, [o.mode for o in objs]).sort("trial_id")


def write_pareto(out: Path, request) -> Path:
    """pareto.parquet of a finished search (atomically, `results.io`)."""
    table = pareto_table(trial_rows(out / schema.TUNE_DIR, out, request), request)
    path = out / PARETO_FILE
    io.write_table(path, table)
    front = table.filter(table["front"])
    print(f"pareto front: {front.height} of {table.height} trial(s): "
          + "; ".join(front["label"].to_list()), flush=True)
    return path


# ------------------------------------------------------------------------------------------ confirm seeds

CONFIRM_TUNE_DIR = "tune_confirm"  # Tune's experiment state of the confirm-seed trials
CONFIRM_FILE = "pareto_confirm.parquet"  # results.pareto.confirm_summary: the front over seeds, on the test sets


def confirm_seeds(request) -> list[int]:
    """The K seeds a front is confirmed with: the K after the search's own (`--seed`)."""
    return [request.seed + 1 + i for i in range(request.confirm_seeds)]


def _searched(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "train.seed"}


def confirm_points(out: Path, request, *, write: bool = True) -> list[dict[str, Any]]:
    """The confirm trials' parameters: every front member of the search (pareto.parquet, written here unless
    `write` is False) with each confirm seed, in the front's trial order."""
    rows = trial_rows(out / schema.TUNE_DIR, out, request)
    table = pareto_table(rows, request)
    if write:
        io.write_table(out / PARETO_FILE, table)
    on_front = set(table.filter(table["front"])["trial_id"].to_list())
    members = sorted((r for r in rows if r["trial_id"] in on_front), key=lambda r: r["trial_id"])
    return [{**_searched(r["params"]), "train.seed": seed} for r in members for seed in confirm_seeds(request)]


def confirm_space(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The confirm stage's Tune space: each key a choice among the points' values, which Tune's points to
    evaluate (`BasicVariantGenerator(points_to_evaluate=points)`) then set, one trial per point."""
    from ray import tune

    keys = sorted({k for p in points for k in p})
    space: dict[str, Any] = {k: tune.choice(sorted({p[k] for p in points}, key=repr)) for k in keys}
    space["_num_samples"] = len(points)
    return space


def confirm_outcomes(sweep, out: Path) -> tuple[list, list[str]]:
    """The confirm trials (`harness.sweeps.collect.Outcome`s) of a Pareto search with `--confirm-seeds`, and what they
    lack
    or hold beyond its plan (each front member once per confirm seed), one line each; ([], []) for other sweeps."""
    from harness.sweeps.collect import tune_outcomes
    from harness.sweeps.recovery import params_key

    r = sweep.request
    if r.search != "pareto" or not r.confirm_seeds:
        return [], []
    tune_dir = out / CONFIRM_TUNE_DIR
    outcomes = tune_outcomes(tune_dir, out, stage=schema.STAGE_GAN) if tune_dir.is_dir() else []
    expected = {params_key(p): p for p in confirm_points(out, r, write=False)}
    problems, seen = [], set()
    for o in outcomes:
        key = params_key(o.params or {})
        if key not in expected or key in seen:
            problems.append(f"confirm trial {o.trial_id} ({o.params}) is not in the plan (each front member once "
                            f"per seed {confirm_seeds(r)})")
        seen.add(key)
    problems += [f"planned confirm trial {params} is missing from {tune_dir}'s Tune state"
                 for key, params in expected.items() if key not in seen]
    return outcomes, problems


def write_tables(out: Path, request) -> list[Path]:
    """pareto.parquet, and with confirm seeds pareto_confirm.parquet (`results.pareto.confirm_summary`, read from
    summary.parquet: the test sets, scored with the papers' protocol)."""
    import polars as pl

    from results.pareto import confirm_summary

    written = [write_pareto(out, request)]
    if not request.confirm_seeds:
        return written
    from harness.sweeps.recovery import params_key

    table = io.read_table(out / PARETO_FILE)
    front = table.filter(table["front"]).sort("trial_id")
    by_params = {params_key(_searched(r["params"])): r["trial_id"]
                 for r in trial_rows(out / schema.TUNE_DIR, out, request) if r["trial_id"] in set(front["trial_id"])}
    members = [{"point": tid, "trial_id": tid, "seed": request.seed} for tid in front["trial_id"].to_list()]
    for r in trial_rows(out / CONFIRM_TUNE_DIR, out, request):
        point = by_params.get(params_key(_searched(r["params"])))
        if point is not None:
            members.append({"point": point, "trial_id": r["trial_id"], "seed": int(r["params"]["train.seed"])})
    objs = objectives(request.objectives)
    ordered = along_front_ids(front, objs)
    frame = pl.DataFrame(members).with_columns(pl.col("point").cast(pl.Enum(ordered))).sort("point", "seed")
    frame = frame.with_columns(pl.col("point").cast(pl.String))
    summary = io.read_table(out / schema.SUMMARY_FILE)
    confirmed = confirm_summary(frame, summary, [(o.metric, o.mode) for o in objs])
    labels = dict(zip(front["trial_id"].to_list(), front["label"].to_list(), strict=True))
    confirmed = confirmed.with_columns(pl.col("point").replace_strict(labels, default=None).alias("label"))
    io.write_table(out / CONFIRM_FILE, confirmed)
    written.append(out / CONFIRM_FILE)
    return written


def along_front_ids(front, objs: tuple[Objective, ...]) -> list[str]:
    """The front's trial ids in order along the trade-off (`results.pareto.along_front`)."""
    from results.pareto import along_front

    return along_front(front, report_keys(objs), [o.mode for o in objs])["trial_id"].to_list()


def more_samples(request, asked: int):
    """The request of a Pareto search resumed with `--num-samples asked` (1: not given): a larger number samples up
    to it, the same or none keeps it, a smaller one is a ValueError. Other sweeps' requests are kept as they are."""
    had = request.num_samples
    if request.search != "pareto" or asked <= 1 or asked == had:
        return request
    if asked < had:
        raise ValueError(f"--num-samples {asked}: the search samples {had} already; give more to continue it further")
    return replace(request, num_samples=asked)


def confirm_front(sweep, out: Path, tune_stage, *, concurrent: int, resuming: bool, timeline) -> bool:
    """`--confirm-seeds K`: every member of the search's front (pareto.parquet, written here) trained again with K
    more seeds, same weights, from the same pretraining, as one Tune stage (`tune_stage`: `harness.sweep`'s);
    False when interrupted."""
    from ray.tune.search import BasicVariantGenerator

    from harness.cluster.progress import tune_progress
    from harness.sweeps.plan import run_config, trial_label
    from harness.sweeps.stopper import DivergenceStopper

    points = confirm_points(out, sweep.request)

    def steps(params: dict[str, Any]) -> int:
        return run_config(sweep.settings, params).train.total_steps

    progress = tune_progress("confirm seeds", steps, trials=len(points),
                             total_steps=sum(map(steps, points)), label=trial_label)
    with timeline.phase("confirm seeds"):
        return tune_stage(out, CONFIRM_TUNE_DIR, confirm_space(points), sweep.settings, concurrent=concurrent,
                          resuming=resuming, progress=progress,
                          stopper=DivergenceStopper(out / schema.STOPS_FILE).tune_stopper,
                          search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=concurrent))
