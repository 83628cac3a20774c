"""Ray Train: DDP training of one SRGAN-family run, and `python -m harness.train`.

Four parts, the first three as Ray Train V2 wants them:
- `train_loop(loop_config)` runs on every worker: builds the engine, wraps G and D in DDP, trains warmup then
  GAN phases on its shard of every global batch, reports metrics, and checkpoints from rank 0;
- `fit(...)` is the driver: it builds the `TorchTrainer` (gloo on CPU, NCCL on GPU) and resumes from Ray's
  latest checkpoint after a worker failure (`FailureConfig`);
- `train_in_trial(spec)` runs the same loop in a Tune trial's own process, for single-worker sweep trials: no
  worker group to start (`harness.run.session`);
- `main()` is the CLI. Everything that can be checked before Ray starts a worker is checked first
  (`prepare_run`): unknown preset or key, missing data, a resource request the cluster cannot hold. It claims the
  run folder (`harness.run.lock`, as sweeps do) before writing to it: a folder another run holds is refused.

GAN-under-DDP decisions (recorded in every run's config.json under "ddp"):
- D is frozen in the G step by running its *unwrapped* module with requires_grad off (see srgan/engine.py):
  no D gradients, no all-reduce for D, no "reduction not finished" error from D's reducer.
- Two optimisers, two DDP wrappers; the perceptual VGG is frozen and never wrapped.
- BatchNorm: per-rank batch statistics. D is wrapped with `broadcast_buffers=False` (its running stats are
  never used to train anything); G keeps DDP's default, so rank 0's running stats overwrite the others at the
  start of every forward (the ranks differ only by the last forward's update; rank 0's are checkpointed).
  SyncBatchNorm is used only when asked for on CUDA (`--sync-bn`); gloo on CPU does not support it.
- Relativistic loss: the batch mean of D's logits is all-reduced across ranks (autograd-aware), so a W-worker
  run computes the loss of one process on the global batch (`loss.relativistic_mean="global"`, default).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.run import lock, runs, worker
from harness.run.options import add_shared_arguments
from harness.run.runs import FAILED_FILE, RunSpec, prepare_run, resolve_config, validate_run
from harness.run.session import KEEP_CHECKPOINTS, RayTrainSession, Session, TuneTrialSession
from harness.run.storage import (
    data_root,
    default_storage,
    dry_run_cache,
    outside_data_root,
    resolve_train_dirs,
    run_folder,
)
from srgan.checkpoint import resume
from srgan.config import ConfigError, ExperimentConfig, add_override_argument, from_dict, to_dict
from srgan.engine import GanEngine, NonFiniteLoss
from srgan.losses import WeightsUnavailable

log = logging.getLogger(__name__)

TRIAL_LOG = "train.log"  # a sweep trial's log lines (`train_in_trial`)

# A test hook: called on every rank after every step as `on_step(engine, rank, world)` (fault injection).
StepHook = Callable[[GanEngine, int, int], None]


# ----------------------------------------------------------------------------------------- worker side


def train_loop(loop_config: dict, *, on_step: StepHook | None = None, session: Session | None = None) -> None:
    """Ray Train worker function: build, step, collect at log steps, validate, checkpoint.

    `loop_config` (`loop_config_of`) holds the config as a dict (`asdict`), the run folder, the data root,
    `sync_bn` and the torch threads. `session` is where it runs (`harness.run.session`; default: a Ray Train worker)."""
    from srgan.batches import TrainingBatches
    from srgan.holdout import training_exclusions

    cfg = from_dict(ExperimentConfig, loop_config["experiment"])
    session = session if session is not None else RayTrainSession()
    rank, world, device = session.rank, session.world, session.device
    worker.worker_logging(rank)
    session.redirect_logs()
    torch.set_num_threads(loop_config.get("threads", 1))  # the CPUs Ray reserved, whatever OMP_NUM_THREADS says
    engine = build_engine(cfg, device, world=world, sync_bn=loop_config.get("sync_bn", False))
    with session.checkpoint() as latest:
        restore(engine, latest, run_dir=Path(loop_config["run_dir"]) if rank == 0 else None)
    history = worker.History(Path(loop_config["run_dir"]), resume_step=engine.step) if rank == 0 else None
    if engine.step >= engine.total_steps:  # restarted after its last step (Ctrl-C before Tune had its last report):
        done = [r for r in worker.read_history(loop_config["run_dir"]) if r["step"] == engine.step] if rank == 0 else []
        session.publish(done[-1] if done else {"step": engine.step}, None, None)  # Tune (ASHA, a search) gets it
        return
    clock = worker.Clock(cfg.train.time_limit_s, world=world, device=device)
    folders = resolve_train_dirs(cfg, loop_config["data_root"])
    for lq, gt in TrainingBatches(cfg, folders, device=device, start_step=engine.step,
                                  num_steps=engine.total_steps - engine.step, rank=rank, world=world,
                                  exclude=training_exclusions(cfg, folders, loop_config["data_root"])):
        engine.train_step(lq, gt)
        if on_step is not None:
            on_step(engine, rank, world)
        step, t = engine.step, cfg.train
        if not engine.collects_after(step):  # log, validation or checkpoint step, or the last one
            continue
        try:  # the only place the loop reads the device: losses, flags and grad norms of the interval
            metrics: dict[str, Any] = engine.pop_metrics(reduce=worker.all_reduce_max if world > 1 else None)
        except NonFiniteLoss as err:  # deterministic: a retry from a checkpoint would diverge again
            worker.report_divergence(err, step, history, session)
            return
        last = step == engine.total_steps or clock.out_of_time()
        metrics.update(step=step, phase=engine.phase_at(step - 1), time=time.time(), diverged=0.0,
                       images_per_s=clock.images_per_s(step, cfg.data.batch_size))
        if rank == 0 and (step % t.val_every == 0 or last):
            metrics.update(worker.validate(engine, loop_config["data_root"]))
        worker.report(engine, metrics, checkpoint=rank == 0 and (step % t.ckpt_every == 0 or last), history=history,
                      session=session)
        clock.lap(step)
        if last:
            break


def build_engine(cfg: ExperimentConfig, device: torch.device, *, world: int, sync_bn: bool) -> GanEngine:
    distributed = world > 1
    return GanEngine(
        cfg, device=device,
        wrap=worker.ddp_wrapper(device, sync_bn=sync_bn) if distributed else None,
        batch_mean=worker.global_batch_mean if distributed and cfg.loss.relativistic_mean == "global" else torch.mean,
    )


def restore(engine: GanEngine, checkpoint: Path | None, *, run_dir: Path | None) -> None:
    """The latest checkpoint after a restart; else, for a GAN stage, the pretrained generator (recorded in
    the run folder's init.json, with a digest of the weights, by rank 0)."""
    if checkpoint is not None:
        resume(engine, checkpoint)
        log.info("resumed from %s at step %d", checkpoint, engine.step)
    elif engine.cfg.train.init_from:
        from srgan.checkpoint import init_generator

        weights = init_generator(engine, engine.cfg.train.init_from)
        log.info("generator initialised from %s", weights)
        if run_dir is not None:
            worker.record_init(run_dir, engine, source=engine.cfg.train.init_from, weights=weights)


# ----------------------------------------------------------------------------------------- driver side


def build_trainer(spec: RunSpec, *, callbacks: list | None = None, loop: Callable[[dict], None] | None = None):
    """The Ray Train `TorchTrainer` of a run; `loop` replaces `train_loop` (tests wrap it with hooks)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.config import LoggingConfig

    use_gpu = spec.gpus_per_worker > 0
    resources = {"CPU": spec.cpus_per_worker, **({"GPU": spec.gpus_per_worker} if use_gpu else {})}
    return TorchTrainer(
        loop or train_loop,
        train_loop_config=loop_config_of(spec),
        scaling_config=ScalingConfig(num_workers=spec.workers, use_gpu=use_gpu, resources_per_worker=resources,
                                     placement_strategy=spec.placement_strategy),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=spec.run_dir.name,
            storage_path=str(spec.run_dir.parent),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level="WARNING"),  # our workers log their own progress
        ),
    )


def loop_config_of(spec: RunSpec) -> dict[str, Any]:
    """What `train_loop` is given: plain values (they cross Ray's boundary), torch threads = the CPUs reserved."""
    return {"experiment": to_dict(spec.cfg), "run_dir": str(spec.run_dir), "data_root": str(spec.data_root),
            "sync_bn": spec.sync_bn, "threads": max(1, int(spec.cpus_per_worker))}


def train_in_trial(spec: RunSpec, *, on_step: StepHook | None = None) -> None:
    """Train a single-worker run in this process, a Tune function trial (`harness.run.session.TuneTrialSession`: no
    Ray Train worker group; checkpoints in the run folder; Tune restarts and resumes the trial). The trial must
    hold the worker's CPUs and GPUs itself (`harness.cluster.packing.trial_resources`). Its log lines go to the run
    folder's train.log, its warnings to the console too."""
    if spec.workers != 1:
        raise ValueError(f"train_in_trial trains one worker, not {spec.workers}: use build_trainer (DDP)")
    session = TuneTrialSession(spec.run_dir, gpus=spec.gpus_per_worker, log_file=spec.run_dir / TRIAL_LOG)
    train_loop(loop_config_of(spec), on_step=on_step, session=session)


def fit(spec: RunSpec, **kwargs):
    """Run one training to completion (resuming from Ray's latest checkpoint after failures); raises Ray's
    `TrainingFailedError` when the workers fail more than `max_failures` times."""
    return build_trainer(spec, **kwargs).fit()


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from srgan.versions import PRESETS

    p = argparse.ArgumentParser(prog="python -m harness.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="v3",
                   help=f"{', '.join(PRESETS)} at a size: <name> (full: the papers' network sizes, the preset's own "
                        "steps), <name>-tiny (tests and smoke runs), <name>-cpu (learns in minutes on a 2-core CPU) "
                        "or <name>-paper (full size, the published schedule: steps, lr decay, batch, patch); "
                        "default v3")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--schedule", help=argparse.SUPPRESS)  # replaced by <name>-paper: named in the error
    p.add_argument("--stage", choices=("single", "pretrain", "gan"), default=None,
                   help="pretrain: the PSNR-oriented pixel-loss stage only; gan: the GAN stage (needs "
                        "--init-from); default: single, or gan when --init-from is given")
    p.add_argument("--init-from", default=None, metavar="RUN_DIR_OR_CHECKPOINT",
                   help="start the GAN stage from this pretrained generator (a run or trial folder, a "
                        "checkpoint folder, or a generator file)")
    add_override_argument(p)
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP ranks)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across ranks (CUDA only)")
    p.add_argument("--storage", default=None, help="results root (shared storage on a cluster); "
                                                      "default ./runs/train or $ENHANCE_RESULTS/train")
    p.add_argument("--name", default=None, help="run folder name (default: <preset>-x<scale>-<timestamp>); "
                                                   "an existing run of the same config is resumed")
    p.add_argument("--max-failures", type=int, default=1, help="worker failures to recover from")
    add_shared_arguments(p, packs="workers")
    return p


def make_spec(args: argparse.Namespace) -> RunSpec:
    """The run the command line asks for; its config is resolved by `harness.run.runs.resolve_config`."""
    from srgan.config import parse_set_args
    from srgan.versions import split_name

    if args.schedule is not None:
        raise ValueError(f"--schedule was replaced by the size ladder: --preset {args.preset.partition('-')[0]}-paper "
                         "gives the published schedule")
    version, size = split_name(args.preset)
    stage = args.stage or ("gan" if args.init_from else "single")
    if stage == "gan" and not args.init_from:
        raise ValueError("--stage gan needs --init-from (the pretrained generator to start from)")
    if stage != "gan" and args.init_from:
        raise ValueError(f"--init-from starts a GAN stage; --stage {stage} would ignore it")
    cfg = resolve_config(version, size=size, scale=args.scale, data_root=data_root(args.data_root),
                         overrides=parse_set_args(args.overrides), stage=stage,
                         init_from=Path(args.init_from).resolve() if stage == "gan" else None,
                         vgg_fallback=args.vgg_fallback)
    storage = Path(args.storage).expanduser() if args.storage else default_storage("train")
    name = args.name or f"{cfg.name}-x{cfg.scale}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = outside_data_root(run_folder(storage, name), data_root(args.data_root), what="the run folder")
    return RunSpec(cfg=cfg, run_dir=run_dir, data_root=data_root(args.data_root),
                   workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                   gpus_per_worker=args.gpus_per_worker, sync_bn=args.sync_bn, max_failures=args.max_failures)


def main(argv: list[str] | None = None) -> int:
    from harness.cluster import resources

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    claimed = None
    try:
        spec = make_spec(args)
        if not args.address:
            resources.check_run(spec, resources.local_resources())
        validate_run(spec)  # data, validation set, the init source (before Ray, before the plan), the run folder
        if args.dry_run:  # writes nothing, claims nothing: step times cached in a throwaway copy of the cache
            check_unclaimed(spec.run_dir)
            with dry_run_cache(spec.run_dir.parent) as cache:
                print(runs.run_plan(spec, cache_dir=cache), flush=True)
            return 0
        claimed = claim_run_folder(spec.run_dir, command=shlex.join(["python", "-m", "harness.train", *argv]))
        print(runs.run_plan(spec), flush=True)
        prepare_run(spec, inputs_checked=True)  # the inputs were checked above: the run folder again, now held
    except (ConfigError, ValueError, FileNotFoundError, WeightsUnavailable, lock.FolderLocked) as err:
        if claimed is not None:
            claimed.release()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if claimed is not None:
            claimed.release()
        print("interrupted before the run started; nothing was trained", file=sys.stderr)
        return 130
    with claimed:
        return _train(spec, args)


def check_unclaimed(run_dir: Path) -> None:
    """Raise `lock.FolderLocked` when a live run holds `run_dir` or a folder above it (a sweep's or study's)."""
    held = lock.live_claim(run_dir)
    if held is not None:
        path, holder = held
        who = holder.describe() if holder is not None else f"its lock file {path} cannot be read"
        where = "" if path.parent == run_dir else f" lies inside {path.parent}, which"
        raise lock.FolderLocked(f"{run_dir}{where} is in use by another run ({who}); choose another --name or "
                                "--storage", holder=holder)


def claim_run_folder(run_dir: Path, *, command: str) -> lock.FolderLock:
    """Claim the run folder (`harness.run.lock`, as sweeps and studies do) before anything reads or writes it: two
    trains
    on one --name, or a train into a live sweep's or study's folder, are refused naming the run that holds it. A
    stale lock (a train that was killed) is taken over: repeating the command is how a train resumes. A sweep's or
    study's results folder is not a run folder, live or not."""
    check_unclaimed(run_dir)
    if (run_dir / "sweep.json").is_file():
        raise ValueError(f"{run_dir} is the results folder of a sweep or study, not a run folder; choose another "
                         "--name")
    try:
        return lock.claim(run_dir, command=command, take_over_stale=True)
    except OSError as err:
        raise ValueError(f"{run_dir}: cannot claim the run folder ({err.strerror or err})") from None


def _train(spec: RunSpec, args: argparse.Namespace) -> int:
    """Start Ray (local, or the cluster at --address), train, say how it ended."""
    from harness.cluster import local_ray, resources

    try:
        local_ray.init_ray(args.address)
        if args.address:
            try:
                resources.check_run(spec, resources.cluster_resources())
            except ValueError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        return finish(spec, run_and_time(spec))
    except KeyboardInterrupt:
        print(f"interrupted; continue from its last checkpoint with the same command (--name {spec.run_dir.name})",
              file=sys.stderr)
        return 130


def run_and_time(spec: RunSpec) -> tuple[Any, float, str | None]:
    """(Ray's result or None, wall seconds, the failure if the workers failed for good)."""
    from ray.train import TrainingFailedError

    started = time.time()
    try:
        return fit_interruptibly(spec), time.time() - started, None
    except TrainingFailedError as err:
        return None, time.time() - started, str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)


def fit_interruptibly(spec: RunSpec):
    """`fit` in a daemon thread that the main thread waits on, so that Ctrl-C is a KeyboardInterrupt here (exit code
    130, `main`). In the main thread Ray Train installs its own SIGINT handler, which ends the process with
    `sys.exit` from inside Ray (exit code 0 or 1, no word on how to continue); off the main thread it installs none.
    Checkpoints already written are kept, and the same command resumes from the newest."""
    import threading

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fit(spec)
        except BaseException as err:  # handed to the main thread as it is: TrainingFailedError and the rest
            outcome["error"] = err

    thread = threading.Thread(target=target, name="harness-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def finish(spec: RunSpec, outcome: tuple[Any, float, str | None]) -> int:
    """Say how the run ended; 0 only for a run that trained to its end (or its time limit)."""
    result, wall, failure = outcome
    history = worker.read_history(spec.run_dir)
    print(f"run folder: {spec.run_dir}")
    diverged = next((r for r in history if r.get("diverged_reason")), None)
    if failure or diverged:
        reason = f"diverged: {diverged['diverged_reason']}" if diverged else f"training failed: {failure}"
        (spec.run_dir / FAILED_FILE).write_text(reason + "\n")
        if history:
            print(f"error: {reason} (recorded in {spec.run_dir / worker.HISTORY_JSONL})", file=sys.stderr)
        else:
            print(f"error: {reason} (before its first step; --name {spec.run_dir.name} may be used again, for "
                  "this run or another)", file=sys.stderr)
        return 1
    print(f"checkpoint: {result.checkpoint.path if result.checkpoint else 'none'}")
    last = next((r for r in reversed(history) if "val_psnr" in r), {})
    if last:
        print(f"final validation ({spec.cfg.data.val_set} x{spec.cfg.scale}): PSNR {last['val_psnr']:.2f} dB, "
              f"SSIM {last['val_ssim']:.4f} after {last['step']} steps, {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
