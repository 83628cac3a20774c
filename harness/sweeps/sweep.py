"""Ray Tune sweeps of versions x loss weights whose trials are training runs; `python -m harness.sweep`.

With no arguments: a small default sweep (tiny v1, v2, v3, RaGAN and ESRGAN x two adversarial weights) on the
local embedded Ray and the data under $ENHANCE_DATA (or ../shared/data). Then every trial's final weights (or, with
`--select best-val`, its best checkpoint on its held-out validation: `harness.run.validation`) are scored on Set5 and
Set14 with the papers' protocol, and an HTML report is built. The results folder: see
`results/schema.py`.

Two stages, as the papers train (SRGAN sec. 3.2, ESRGAN sec. 4.1): trials whose pixel-loss pretraining would be
identical (`srgan.versions.pretrain_key`) share one pretraining run, which runs first; the GAN trials then
start from it. v2, v3 and RaGAN share one SRResNet pretraining, ESRGAN has its own RRDB one, v1 keeps its
single-stage recipe. K trials cost W + K*G steps instead of K*(W + G). A finished pretraining is kept in the
pretraining cache (`harness.sweeps.cache`), and a later sweep with the same one starts from it.

Layers (Ray Train V2 + Tune): a Tune function trial (`run_trial`) trains a single-worker run in its own process
(`harness.run.train.train_in_trial`: no worker group to start), or builds and fits a `TorchTrainer` for several
workers (DDP), whose reports reach Tune through `TuneReportCallback`; ASHA stops weak GAN trials on validation
PSNR, and `harness.sweeps.stopper.DivergenceStopper` stops diverged GANs (non-finite loss, collapsed D) and records why.
The models are then scored in parallel (`harness.sweeps.collect.score_all`).

`--search pareto` searches the trade-off between two or three held-out validation metrics instead
(`harness.sweeps.pareto_search`: Optuna's multi-objective TPE through Ray's `OptunaSearch`, pareto.parquet, and with
`--confirm-seeds` the front re-trained with more seeds and scored).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from harness.cluster import local_ray, packing, resources
from harness.run import lock
from harness.run.lock import FolderLock
from harness.run.runs import RunSpec, prepare_run
from harness.run.storage import check_folder_path, data_root, default_storage, dry_run_cache, outside_data_root
from harness.sweeps import arms, cache, cli, overhead, pareto_search, plan, pretrainings, recovery
from results import io, schema
from srgan.config import ConfigError
from srgan.losses import WeightsUnavailable

log = logging.getLogger(__name__)


def run_trial(params: dict[str, Any], settings: dict[str, Any], folders: dict[str, str] | None = None) -> None:
    """Tune function trial: one training run, a shared pretraining (`params["run_name"]`) or a GAN trial, trained
    in this process (one worker) or by a TorchTrainer (several); not a pretraining copied from the cache.

    A GAN trial's folder is named by its Tune trial id, except in a stage run again on its trial folders after
    its Tune state was lost (`harness.sweeps.recovery`): there `folders` (parameters -> folder) names the folder an
    earlier trial of these parameters ran in, and the run resumes from its last checkpoint."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    s = plan.SweepSettings(**settings)
    if pretrainings.copied_from_cache(Path(s.out), params):  # after Tune planned it (a resume): not trained again
        return
    trial_id = tune.get_context().get_trial_id()
    name = (params.get("run_name") or recovery.folders_by_trial_id(Path(s.out)).get(trial_id)
            or (folders or {}).get(recovery.params_key(params)) or trial_id)
    run_dir = Path(s.out) / schema.TRIALS_DIR / name
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "starts.log").open("a") as fh:  # lets tests (and people) see restarts
        fh.write(f"{time.time():.0f}\n")
    (run_dir / "label.txt").write_text(plan.trial_label(params))
    recovery.record_trial(run_dir, params, trial_id)  # what a resume without Tune's state finds the trial by
    cfg = plan.run_config(s, params)  # raises WeightsUnavailable here (a failed trial) unless opted in
    if params.get("run_name"):  # what it trains on: the key the cache stores it under
        pretrainings.record_key(run_dir, cfg, s.data_root)
    spec = prepare_run(RunSpec(cfg=cfg, run_dir=run_dir, data_root=Path(s.data_root), workers=s.workers,
                               cpus_per_worker=s.cpus_per_worker, gpus_per_worker=s.gpus_per_worker))
    from harness.run.train import build_trainer, train_in_trial

    if spec.workers == 1:  # no worker group: the trial trains in its own process (harness.run.session)
        train_in_trial(spec)
    else:
        build_trainer(spec, callbacks=[TuneReportCallback()]).fit()


def tune_stage(out: Path, tune_dir: str, space: dict[str, Any], settings: plan.SweepSettings, *, concurrent: int,
               resuming: bool, scheduler=None, stopper=None, progress=None, search_alg=None) -> bool:
    """Run (or resume) one Tune experiment of the sweep; False when it was interrupted (Ctrl-C). Tune's own status
    tables are off (`verbose=0`): `progress` (`harness.cluster.progress.tune_progress`) prints one line per update.
    With a
    `search_alg` (a Pareto search's), a resume restores the searcher's state with Tune's, and samples up to the
    space's `_num_samples` (`harness.sweeps.pareto_search.raise_num_samples`)."""
    from ray import tune

    space = dict(space)
    num_samples = space.pop("_num_samples", 1)
    param = "run_name" if tune_dir == schema.PRETRAIN_TUNE_DIR else "preset"  # what each of the stage's trials has
    restorable = resuming and recovery.prepare_restore(out / tune_dir, param=param)  # damaged ones set aside, named
    folders = recovery.folders_by_params(out) if resuming and not restorable else None
    held = packing.trial_resources(settings.workers, settings.cpus_per_worker, settings.gpus_per_worker)
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=asdict(settings), folders=folders), held)
    if restorable and tune.Tuner.can_restore(str(out / tune_dir)):
        if search_alg is not None:
            pareto_search.raise_num_samples(out / tune_dir, num_samples)
        tuner = tune.Tuner.restore(str(out / tune_dir), trainable=trainable, resume_errored=False,
                                   restart_errored=False, resume_unfinished=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=_concurrency_of(search_alg, concurrent),
                                        scheduler=scheduler, reuse_actors=True,
                                        num_samples=num_samples, search_alg=search_alg),
            run_config=tune.RunConfig(name=tune_dir, storage_path=str(out), stop=stopper, verbose=0,
                                      callbacks=[progress] if progress is not None else None,
                                      failure_config=tune.FailureConfig(max_failures=trial_restarts(settings))),
        )
    # Tune's newer console output prints its experiment tables whatever `verbose` says; the older one is silent at
    # verbose=0 (RAY_AIR_NEW_OUTPUT=0, read when fit() starts): the progress callback's lines are the console's.
    # A search's objectives are in the reports that validate, not in every report (log steps): Tune's strict check
    # would stop the trial at its first log step; a multi-objective OptunaSearch reads the final report only
    quiet = {"RAY_AIR_NEW_OUTPUT": "0", **({"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1"} if search_alg else {})}
    with local_ray.scoped_environ(quiet):
        tuner.fit()
    return not unfinished_trials(out / tune_dir)


def _concurrency_of(search_alg, concurrent: int) -> int | None:
    """TuneConfig's limit, unless `search_alg` is a search generator that holds its own (the confirm stage's)."""
    from ray.tune.search import Searcher

    return concurrent if search_alg is None or isinstance(search_alg, Searcher) else None


def trial_restarts(settings: plan.SweepSettings) -> int:
    """How often Tune restarts a failed trial: a trial that trains in its own process (one worker) gets the restart
    Ray Train gives a worker group (`RunSpec.max_failures`, 1); a multi-worker trial's Ray Train does it itself."""
    return 1 if settings.workers == 1 else 0


def run_stages(sweep: plan.SweepPlan, out: Path, *, concurrent: int, resuming: bool,
               cached: dict[str, cache.Entry] | None = None, timeline: overhead.Timeline | None = None) -> bool:
    """The shared pretrainings (all in parallel as resources allow), then the GAN trials that start from them.
    False when interrupted. On --resume, finished pretrainings and trials are not run again.

    A pretraining in `cached` (`cached_pretrainings`) is copied from the cache into its trial folder instead of
    trained; a pretraining trained here is stored in the cache once it finished (unless --no-cache)."""
    from harness.cluster.progress import tune_progress
    from harness.sweeps.stopper import DivergenceStopper

    settings, request = sweep.settings, sweep.request
    timeline = timeline or overhead.Timeline()
    print(watch_line(out), flush=True)
    trained = pretrainings.pretrainings_to_train(sweep, out, cached or {})
    if trained:
        steps = {name: cfg.train.total_steps for name, cfg in sweep.pretrain_configs.items()}
        progress = tune_progress("pretraining", lambda p: steps[p["run_name"]], trials=len(trained),
                                 total_steps=sum(steps[n] for n in trained), label=plan.trial_label)
        space = {"run_name": _grid_search(sorted(trained))}
        with timeline.phase("pretraining"):
            if not tune_stage(out, schema.PRETRAIN_TUNE_DIR, space, settings, concurrent=concurrent,
                              resuming=resuming, progress=progress):
                return False
        if request.pretrain_cache:
            pretrainings.store_pretrainings(sweep, out, trained)
    scheduler = None
    if request.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_reports = max(plan.reports_per_trial(cfg) for cfg in sweep.runs)
        scheduler = ASHAScheduler(metric=request.metric, mode=request.mode, time_attr="training_iteration",
                                  max_t=max_reports + 1, grace_period=min(request.grace, max_reports))
    stopper = DivergenceStopper(out / schema.STOPS_FILE).tune_stopper
    search_alg = None
    if request.search == "pareto":
        search_alg = pareto_search.searcher(request)
    # a grid is run num_samples times; a random or Pareto search draws num_samples trials (`SweepPlan.gan_space`)
    n_trials = request.num_samples * (len(sweep.runs) if request.search == "grid" else 1)
    mean_steps = sum(c.train.total_steps for c in sweep.runs) / len(sweep.runs)
    progress = tune_progress("GAN trials", partial(_planned_steps, settings), trials=n_trials,
                             total_steps=round(mean_steps * n_trials),
                             label=plan.trial_label)
    with timeline.phase("GAN trials"):
        return tune_stage(out, schema.TUNE_DIR, sweep.gan_space(), settings, concurrent=concurrent,
                          resuming=resuming, scheduler=scheduler, stopper=stopper, progress=progress,
                          search_alg=search_alg)


def watch_line(out: Path) -> str:
    """Where to follow the run live (README "Watching a run")."""
    ray_info = local_ray.current()
    dashboard = f"; Ray dashboard: {ray_info.dashboard_url}" if ray_info and ray_info.dashboard_url else ""
    return f"watch: tensorboard --logdir {out} (Tune's event files, every trial's metrics){dashboard}"


def _planned_steps(settings: plan.SweepSettings, params: dict[str, Any]) -> int:
    return plan.run_config(settings, params).train.total_steps  # the plan's config (settings.configs), not resolved


def _grid_search(values: list[str]) -> dict:
    from ray import tune

    return tune.grid_search(values)


def score_sweep(sweep: plan.SweepPlan, out: Path, *, command: str, timeline: overhead.Timeline | None = None) -> Path:
    """Score the pretrainings (those from the cache too), the GAN trials and bicubic, in parallel as resources
    allow; a sweep whose every trial failed is an error. With the `timeline`, print and keep (run.json
    `overhead`) the share of the sweep's time spent neither in training steps nor in scoring."""
    from harness.run import validation
    from harness.sweeps.collect import Scoring, collect_results, tune_outcomes
    from harness.sweeps.plan_check import plan_problems

    outcomes = pretrainings.pretrain_outcomes(sweep, out) if sweep.settings.pretrainings else []
    outcomes += tune_outcomes(out / schema.TUNE_DIR, out, stage=schema.STAGE_GAN)
    confirm, confirm_problems = pareto_search.confirm_outcomes(sweep, out)  # a Pareto search's --confirm-seeds
    outcomes += confirm
    outcomes = [replace(o, role=arms.trial_role(sweep.settings.pretrainings, sweep.settings.roles, o.params))
                for o in outcomes]  # each row's study version, control and ladder arm, from the plan
    problems = plan_problems(sweep, outcomes, out, confirmed={o.run_dir.name for o in confirm}) + confirm_problems
    if problems:  # never a quiet success: the tables are left as they were
        raise SweepError(f"what the {sweep.request.kind} ran does not match its plan; nothing was scored or written:"
                         + "".join(f"\n  - {p}" for p in problems), code=1)
    r = sweep.request
    scoring = Scoring(datasets=list(r.datasets), scale=r.scale, data_root=Path(sweep.settings.data_root),
                      images_dir=out / schema.IMAGES_DIR, save_images=list(r.save_images), metric=r.metric,
                      mode=r.mode, selection=r.selection, cpus=r.cpus_per_worker, gpus=r.gpus_per_worker)
    started = io.read_json(out / schema.SWEEP_STATE)["started"]
    trials = collect_results(out, outcomes, scoring, started=started, command=command, kind=r.kind, extra={
        "stages": {name: {"presets": users, "config": sweep.settings.pretrainings[name]}
                   for name, users in sweep.pretrain_users.items()},
        "validation": validation.records(sweep.validated_runs(), sweep.settings.data_root),
        "selection": r.selection, "pretrain_seed": r.pretrain_seed,
        "pretrain_cache": pretrainings.cache_record(sweep, out)},
        timeline=timeline)
    if timeline is not None and timeline.record is not None:
        print(overhead.describe(timeline.record), flush=True)
    trained = [row["status"] for row in trials if row["status"] != schema.STATUS_BASELINE]
    if trained and all(status == schema.STATUS_FAILED for status in trained):
        raise SweepError(f"every trial of the sweep failed; see {out / schema.TRIALS_FILE} and the report", code=1)
    if r.search == "pareto":
        pareto_search.write_tables(out, r)
    return out


def unfinished_trials(tune_dir: Path) -> list[str]:
    """Trials Tune's saved state holds as neither finished nor failed (after Ctrl-C, fit() returns early)."""
    from ray.tune import ExperimentAnalysis

    return [t.trial_id for t in ExperimentAnalysis(str(tune_dir)).trials if t.status not in ("TERMINATED", "ERROR")]


class SweepError(Exception):
    """A sweep that cannot start or did not end well; `code` is the exit status to return."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Launch:
    """How a sweep was started: its request, and the command line that gave it (sweep.json keeps both; the
    command line is the record, the request is what `--resume` rebuilds)."""

    request: plan.SweepRequest
    entry: str  # the module whose command line this is: "harness.sweep" | "harness.study"
    argv: list[str]
    out: str | None = None  # --out (None: a new timestamped folder under the results root)
    resume: str | None = None  # --resume DIR
    dry_run: bool = False

    @property
    def command(self) -> str:
        return f"python -m {self.entry} " + " ".join(self.argv)


def open_folder(launch: Launch) -> tuple[Path, Launch, bool, FolderLock | None]:
    """The sweep folder: a new (or empty) `--out`, or `--resume DIR` with the interrupted sweep's own request.

    A real run claims the folder first (`harness.run.lock`: an O_EXCL lock file), then looks inside: of two runs
    started on one folder, the second is refused at once, naming the first. A dry run claims nothing and writes
    nothing. Returns (folder, launch, resuming, the claim to release when the run ends)."""
    kind = launch.request.kind
    if launch.resume is None:
        if launch.out:
            out = Path(launch.out).expanduser().resolve()
            try:
                check_folder_path(out, what="--out")
            except ValueError as err:
                raise SweepError(str(err)) from None
            if out.exists() and not out.is_dir():
                raise SweepError(f"--out {out} is a file: give a new or empty folder for the {kind}'s results")
        else:
            try:
                out = default_storage("") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
            except ValueError as err:
                raise SweepError(str(err)) from None
        try:
            outside_data_root(out, data_root(launch.request.data_root), what="--out")
        except ValueError as err:
            raise SweepError(str(err)) from None
        claimed = None if launch.dry_run else _claim(out, launch, resuming=False)
        try:
            _check_empty(out, kind, claimed)
        except SweepError:
            if claimed is not None:
                claimed.release()
            raise
        return out, launch, False, claimed
    out = Path(launch.resume).expanduser().resolve()
    if not out.is_dir():
        raise SweepError(f"--resume {out}: {'not a folder' if out.exists() else 'no such folder'}; not a sweep folder "
                         "to resume")
    try:
        state = io.read_json(out / schema.SWEEP_STATE)
        resumed = Launch(plan.SweepRequest.from_record(state["request"]), entry=state.get("entry", "harness.sweep"),
                         argv=list(state["argv"]), out=str(out), resume=str(out), dry_run=launch.dry_run)
    except io.ResultsError as err:
        raise SweepError(f"{err}: not a sweep folder to resume") from None
    except KeyError as err:
        raise SweepError(f"{out / schema.SWEEP_STATE}: corrupt sweep state (no {err}; a folder written before "
                         "sweep.json kept its request cannot be resumed)") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise SweepError(f"{out / schema.SWEEP_STATE}: corrupt sweep state ({err})") from None
    try:  # a resume runs as sweep.json records the run: an option that would change it is an error naming it
        cli.check_resume_options(launch.argv, resumed.request, command=resumed.command, out=out)
    except ValueError as err:
        raise SweepError(str(err)) from None
    try:  # a Pareto search resumed with a larger --num-samples samples up to it
        resumed = replace(resumed, request=pareto_search.more_samples(resumed.request, launch.request.num_samples))
    except ValueError as err:
        raise SweepError(f"--resume {out}: {err}") from None
    if launch.dry_run:
        return out, resumed, True, None
    claimed = _claim(out, launch, resuming=True)  # the lock names the command that resumed it
    if resumed.request.num_samples != state["request"].get("num_samples"):
        io.write_json(out / schema.SWEEP_STATE, {**state, "request": asdict(resumed.request)})  # a later resume too
    return out, resumed, True, claimed


def _claim(out: Path, launch: Launch, *, resuming: bool) -> FolderLock:
    """Claim the folder for this run. `--resume` takes over a stale lock (its run is gone); a new run takes over
    a stale lock only in a folder that holds nothing else (a run that died before it wrote anything)."""
    hint = f"python -m {launch.entry} --resume {out}" if (out / schema.SWEEP_STATE).is_file() else ""
    try:
        return lock.claim(out, command=launch.command, take_over_stale=resuming, resume_hint=hint)
    except lock.FolderLocked as err:
        if err.stale and not resuming and not _holds_results(out):
            return lock.claim(out, command=launch.command, take_over_stale=True)
        raise SweepError(str(err)) from None
    except OSError as err:
        raise SweepError(f"{out}: cannot claim the folder ({err.strerror or err})") from None


def _holds_results(out: Path) -> bool:
    """Anything in `out` beyond its lock and a dry run's step-time cache (which a new run may reuse)."""
    return out.is_dir() and any(p.name not in (lock.LOCK_FILE, "step_times.json") for p in out.iterdir())


def _check_empty(out: Path, kind: str, claimed: FolderLock | None) -> None:
    if claimed is None and (out / lock.LOCK_FILE).exists():  # a dry run: say who uses the folder, take nothing
        holder = lock.read_holder(out / lock.LOCK_FILE)
        if holder is None or not lock.is_stale(holder):  # a stale one is the real run's to take over
            raise SweepError(f"{out} is in use by another run ({holder.describe() if holder else 'unreadable lock'})")
    if not _holds_results(out):
        return
    if (out / schema.SWEEP_STATE).is_file():
        raise SweepError(f"{out} already holds a {kind} ({schema.SWEEP_STATE}; it would be overwritten): give a new "
                         f"--out folder, or continue that {kind} with --resume {out}")
    raise SweepError(f"{out} is not empty and holds no {kind} to resume: give a new or empty --out folder")


def main(argv: list[str] | None = None) -> int:
    """Run a sweep; the CLI builds the report of its results folder."""
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = cli.sweep_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    try:
        launch = Launch(cli.request_from_args(args), entry="harness.sweep", argv=argv, out=args.out,
                        resume=args.resume, dry_run=args.dry_run)
    except (SweepError, ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run_cli(launch, no_report=args.no_report)


def run_cli(launch: Launch, *, no_report: bool) -> int:
    """Run a sweep or a study from its command line: exit codes, the results folder, then the report."""
    try:
        out = run_sweep(launch)
    except SweepError as err:
        print(f"error: {err}" if err.code == 2 else str(err), file=sys.stderr)
        return err.code
    except io.ResultsError as err:  # e.g. a full disk while writing the tables: the trials' runs are kept
        print(f"error: {err}\nthe trials' runs are kept; once fixed, score them again with --resume", file=sys.stderr)
        return 1
    if out is None:
        return 0
    print(f"results: {out}")
    return 0 if no_report else build_report_of(out)


def run_sweep(launch: Launch) -> Path | None:
    """The sweep's steps: open (and claim) the folder, plan (checked before Ray starts), print the cost, pretrain,
    run the GAN trials, check what ran against the plan, score (and, for a study, the study tables). Returns the
    results folder (None after a dry run). The folder's claim is released however the run ends."""
    out, launch, resuming, claimed = open_folder(launch)
    with claimed or contextlib.nullcontext():
        try:
            return _run_in(out, launch, resuming)
        except KeyboardInterrupt:  # outside Tune's own handling (it saves its state and returns): planning, scoring
            then = (f"continue it with: python -m {launch.entry} --resume {out}"
                    if (out / schema.SWEEP_STATE).is_file() and not launch.dry_run else "nothing was started")
            raise SweepError(f"{launch.request.kind} interrupted; {then}", code=130) from None


def _run_in(out: Path, launch: Launch, resuming: bool) -> Path | None:
    request = launch.request
    try:
        sweep = plan.plan_sweep(request, out)
        search_lines = pareto_search.check_plan(sweep) if request.search == "pareto" else []
    except (ConfigError, ValueError, FileNotFoundError, WeightsUnavailable) as err:
        raise SweepError(str(err)) from None
    if search_lines:
        print("\n".join(search_lines), flush=True)
    try:  # the data it starts on, for sweep.json; a resume on other data than the run's is refused
        data = recovery.run_data(out, sweep, resuming=resuming, dry_run=launch.dry_run)
    except (ValueError, OSError) as err:
        raise SweepError(str(err)) from None
    cached = pretrainings.cached_pretrainings(sweep, out, resuming=resuming, dry_run=launch.dry_run)
    if not request.address:
        concurrent, account = packing.plan_concurrency(resources.local_resources(), sweep.trial_cpus,
                                                         sweep.trial_gpus, request.max_concurrent)
        with dry_run_cache(out) if launch.dry_run else contextlib.nullcontext() as times:  # a dry run writes nothing
            print(f"{sweep.describe(concurrency=concurrent, cache_dir=times, cached=cached)}\n  resources: {account}",
                  flush=True)
    if launch.dry_run:
        return None
    start_folder(out, launch, resuming, data=data)
    timeline = overhead.Timeline()  # this invocation, from Ray's start (harness.sweeps.overhead)
    with timeline.phase("Ray start-up"):
        local_ray.init_ray(request.address)
    if request.address:
        try:
            resources.check_run(sweep.probe, resources.cluster_resources())
        except ValueError as err:
            raise SweepError(str(err)) from None
        concurrent, account = packing.plan_concurrency(resources.cluster_resources(), sweep.trial_cpus,
                                                         sweep.trial_gpus, request.max_concurrent)
        print(f"{sweep.describe(concurrency=concurrent, cached=cached)}\n  resources: {account}", flush=True)
    timeline.slots = concurrent
    if not run_stages(sweep, out, concurrent=concurrent, resuming=resuming, cached=cached, timeline=timeline):
        # Ctrl-C: Tune saved its state and returned early; score nothing half-done
        raise SweepError(f"{request.kind} interrupted; continue it with: python -m {launch.entry} --resume {out}",
                         code=130)
    if request.search == "pareto" and request.confirm_seeds and not pareto_search.confirm_front(
            sweep, out, tune_stage, concurrent=concurrent, resuming=resuming, timeline=timeline):
        raise SweepError(f"{request.kind} interrupted; continue it with: python -m {launch.entry} --resume {out}",
                         code=130)
    try:
        score_sweep(sweep, out, command=launch.command, timeline=timeline)
    except recovery.DamagedState as err:  # e.g. a disk that filled up as Tune wrote its state
        raise SweepError(f"{err}\nnothing was scored or written; once fixed (space freed), continue with: "
                         f"python -m {launch.entry} --resume {out}", code=1) from None
    if request.kind == "study":
        from results.study import compute_study

        tables = compute_study(out)
        print(f"study tables: {', '.join(str(Path(p).name) for p in tables.values())}")
    return out


def start_folder(out: Path, launch: Launch, resuming: bool, *, data: dict[str, Any] | None = None) -> None:
    """The folder and a new run's sweep.json: command line, request, the data it starts on (`recovery.run_data`)."""
    out.mkdir(parents=True, exist_ok=True)
    if not resuming:
        io.write_json(out / schema.SWEEP_STATE, {"entry": launch.entry, "argv": launch.argv,
                                                 "request": asdict(launch.request), "started": time.time(),
                                                 **(data or {})})
    print(f"{launch.request.kind} folder: {out}", flush=True)


def build_report_of(out: Path) -> int:
    """The HTML report, built by `python -m reports.build` in its own process (harness never imports reports), at
    its default place in the results folder (`results.schema.REPORT_INDEX`)."""
    import subprocess

    done = subprocess.run([sys.executable, "-m", "reports.build", str(out)], capture_output=True, text=True)
    index = out / schema.REPORT_INDEX
    if done.returncode != 0 or not index.is_file():
        print(f"error: the report of {out} could not be built:\n{done.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
