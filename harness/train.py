"""Ray Train: DDP training of one SRGAN-family run, and `python -m harness.train`.

Three layers, as Ray Train V2 wants them:
- `train_loop(loop_config)` runs on every worker: builds the engine, wraps G and D in DDP, trains warmup then
  GAN phases on its shard of every global batch, reports metrics, and checkpoints from rank 0;
- `fit(...)` is the driver: it builds the `TorchTrainer` (gloo on CPU, NCCL on GPU) and resumes from Ray's
  latest checkpoint after a worker failure (`FailureConfig`);
- `main()` is the CLI. Everything that can be checked before Ray starts a worker is checked first
  (`prepare_run`): unknown preset or key, missing data, a resource request the cluster cannot hold.

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
import json
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.evaluate import git_commit, hardware
from harness.storage import data_root, default_storage, resolve_train_dirs
from srgan.checkpoint import resume, save_checkpoint, save_config
from srgan.config import (
    ConfigError,
    ExperimentConfig,
    add_override_argument,
    from_dict,
    override,
    parse_set_args,
    to_dict,
)
from srgan.engine import GanEngine, NonFiniteLoss, unwrap
from srgan.losses import WeightsUnavailable, ensure_vgg19_weights
from srgan.versions import preset

log = logging.getLogger(__name__)

HISTORY_JSONL = "history.jsonl"
FAILURE_MARKER = "injected_failure.done"


# ----------------------------------------------------------------------------------------- worker side


def _ddp_wrapper(device: torch.device, *, sync_bn: bool):
    from torch.nn.parallel import DistributedDataParallel as DDP

    def wrap(net: torch.nn.Module, role: str) -> torch.nn.Module:
        if sync_bn and device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        ids = [device.index] if device.type == "cuda" else None
        # D's BN running stats stay per rank (broadcasting them each forward buys nothing); G's are
        # broadcast from rank 0 before each forward, so validation and checkpoints use rank 0's.
        return DDP(net, device_ids=ids, broadcast_buffers=(role == "generator"))

    return wrap


def global_batch_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the global batch: an autograd-aware all-reduce of the local sum (equal shards)."""
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x.sum()) / (x.numel() * dist.get_world_size())


def _validate(engine: GanEngine, loop_config: dict) -> dict[str, float]:
    from benchmarks.evaluate import evaluate_model

    net = engine.inference_generator()
    was_training = net.training
    net.eval()
    try:
        df = evaluate_model(net, [engine.cfg.data.val_set], engine.cfg.scale, data_root=loop_config["data_root"],
                            metrics=("psnr", "ssim"), device=engine.device, progress=False)
    finally:
        net.train(was_training)
    return {"val_psnr": float(df["psnr"].mean()), "val_ssim": float(df["ssim"].mean())}


class History:
    """Rank 0's metrics history as JSON lines; after a restart, rows past the restored step are dropped."""

    def __init__(self, path: Path, *, resume_step: int) -> None:
        self.path = path
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r["step"] <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def _worker_logging(rank: int) -> None:
    """Our loggers at INFO with the rank in front; Ray's own loggers keep their levels."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s"))
    for name in ("harness", "srgan", "benchmarks"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _out_of_time(deadline: float | None, distributed: bool, device: torch.device) -> bool:
    """Rank 0's clock decides for everyone, so every rank stops (and reports) at the same step."""
    if deadline is None:
        return False
    flag = torch.tensor([float(time.perf_counter() > deadline)], device=device)  # NCCL needs it on the GPU
    if distributed:
        import torch.distributed as dist

        dist.broadcast(flag, src=0)
    return bool(flag.item())


def train_loop(loop_config: dict) -> None:
    """Ray Train worker function. `loop_config` holds the config as a dict (`asdict`) plus run settings."""
    import ray.train
    import ray.train.torch

    from srgan.data import PatchDataset, make_loader

    cfg = from_dict(ExperimentConfig, loop_config["experiment"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    run_dir = Path(loop_config["run_dir"])
    _worker_logging(rank)

    distributed = world > 1
    engine = GanEngine(
        cfg,
        device=device,
        wrap=_ddp_wrapper(device, sync_bn=loop_config.get("sync_bn", False)) if distributed else None,
        batch_mean=global_batch_mean if distributed and cfg.loss.relativistic_mean == "global" else torch.mean,
    )
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume(engine, folder)
        log.info("resumed from %s at step %d", checkpoint.path, engine.step)
    history = History(run_dir / HISTORY_JSONL, resume_step=engine.step) if rank == 0 else None

    dataset = PatchDataset(resolve_train_dirs(cfg, loop_config["data_root"]), scale=cfg.scale,
                           patch_size=cfg.data.patch_size, augment=cfg.data.augment,
                           degradation=cfg.data.degradation, seed=cfg.train.seed)
    loader = make_loader(dataset, global_batch=cfg.data.batch_size, start_step=engine.step,
                         num_steps=engine.total_steps - engine.step, rank=rank, world=world,
                         num_workers=cfg.data.num_workers)
    t = cfg.train
    fail_at = loop_config.get("fail_at_step")
    dump_dir = loop_config.get("dump_weights_dir")
    tick, images = time.perf_counter(), 0
    deadline = time.perf_counter() + t.time_limit_s if t.time_limit_s > 0 else None
    for lq, gt in loader:
        try:
            metrics: dict[str, Any] = engine.train_step(lq, gt)
        except NonFiniteLoss as err:
            # Deterministic: retrying from a checkpoint would diverge again. Report and end the run.
            log.error("diverged: %s", err)
            ray.train.report({"step": engine.step, "diverged": 1.0, "diverged_reason": str(err)})
            return
        images += lq.shape[0] * world
        step = engine.step
        if fail_at is not None and step == fail_at and rank == world - 1:
            marker = run_dir / FAILURE_MARKER
            if not marker.exists():  # fail once, like a lost node; the restart must not fail again
                marker.write_text(f"killed rank {rank} at step {step}\n")
                log.warning("injected failure: killing rank %d at step %d", rank, step)
                os.kill(os.getpid(), signal.SIGKILL)
        last = step == engine.total_steps or _out_of_time(deadline, distributed, device)
        do_val = step % t.val_every == 0 or last
        do_ckpt = step % t.ckpt_every == 0 or last
        if not (step % t.log_every == 0 or do_val or do_ckpt):
            continue
        now = time.perf_counter()
        metrics.update(step=step, phase="warmup" if step <= t.warmup_steps else "gan",
                       images_per_s=images / max(now - tick, 1e-9), diverged=0.0)
        if rank == 0 and do_val:
            metrics.update(_validate(engine, loop_config))
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0 and do_ckpt:
                save_checkpoint(engine, tmp)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            if history is not None:
                history.append(metrics)
                log.info("step %d/%d [%s] %s", step, engine.total_steps, metrics["phase"],
                         " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                  if k.startswith(("loss_g", "loss_pixel", "loss_d", "val_")) and v is not None))
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"checkpoint_{step:07d}" if ckpt else None)
        tick, images = time.perf_counter(), 0
        if last:
            break
    if dump_dir:  # tests: every rank writes its final generator and node, to check the ranks agree
        import ray
        from safetensors.torch import save_file

        net = unwrap(engine.net_g)
        tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(tensors, str(Path(dump_dir) / f"generator_rank{rank}.safetensors"))
        (Path(dump_dir) / f"node_rank{rank}.txt").write_text(ray.get_runtime_context().get_node_id())


# ----------------------------------------------------------------------------------------- driver side


@dataclass(frozen=True)
class RunSpec:
    """Everything a driver needs to start one training run, validated before Ray starts any worker."""

    cfg: ExperimentConfig
    run_dir: Path
    data_root: Path
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    sync_bn: bool = False
    max_failures: int = 1
    placement_strategy: str = "PACK"  # "SPREAD"/"STRICT_SPREAD" put workers on different nodes


def resolve_perceptual(cfg: ExperimentConfig, *, vgg_fallback: str | None) -> ExperimentConfig:
    """Check the VGG19 weights a config needs before training starts.

    Missing weights are an error unless the caller opted in explicitly (`vgg_fallback="untrained"`), in
    which case the config says so and every result carries the `untrained-perceptual-vgg19` flag."""
    if cfg.loss.perceptual_weight == 0 or cfg.loss.perceptual_weights == "untrained":
        return cfg
    try:
        ensure_vgg19_weights()
    except WeightsUnavailable:
        if vgg_fallback != "untrained":
            raise
        log.warning("VGG19 ImageNet weights unavailable: %s uses UNTRAINED perceptual features "
                    "(explicit --vgg-fallback untrained; flagged in its results)", cfg.name)
        return override(cfg, {"loss.perceptual_weights": "untrained"})
    return cfg


def check_resources(spec: RunSpec, available: dict[str, float]) -> None:
    """Fail fast: a request the cluster cannot hold would otherwise stay PENDING forever."""
    need_cpu = spec.workers * spec.cpus_per_worker
    need_gpu = spec.workers * spec.gpus_per_worker
    have_cpu, have_gpu = available.get("CPU", 0), available.get("GPU", 0)
    if need_cpu > have_cpu or need_gpu > have_gpu:
        raise ValueError(
            f"impossible resource request: {spec.workers} worker(s) x ({spec.cpus_per_worker} CPU, "
            f"{spec.gpus_per_worker} GPU) needs {need_cpu:g} CPU / {need_gpu:g} GPU, the cluster has "
            f"{have_cpu:g} CPU / {have_gpu:g} GPU"
        )
    if spec.cfg.data.batch_size % spec.workers:
        raise ValueError(f"data.batch_size {spec.cfg.data.batch_size} is not divisible by {spec.workers} workers")


def local_resources() -> dict[str, float]:
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def prepare_run(spec: RunSpec) -> RunSpec:
    """Validate data folders and write the resolved config into the run folder."""
    resolve_train_dirs(spec.cfg, spec.data_root)  # raises FileNotFoundError naming the folder
    from benchmarks.datasets import load_pairs

    load_pairs(spec.cfg.data.val_set, spec.cfg.scale, spec.data_root)  # raises naming the folder or file
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(spec.cfg, spec.run_dir, ddp=ddp_notes(spec), hardware=hardware(spec_device(spec)),
                git_commit=git_commit(), workers=spec.workers)
    return spec


def spec_device(spec: RunSpec) -> torch.device:
    return torch.device("cuda" if spec.gpus_per_worker > 0 else "cpu")


def ddp_notes(spec: RunSpec) -> dict[str, str]:
    return {
        "batchnorm": "SyncBatchNorm" if spec.sync_bn and spec.gpus_per_worker > 0 else "per-rank batch statistics",
        "relativistic_mean": spec.cfg.loss.relativistic_mean,
        "backend": "nccl" if spec.gpus_per_worker > 0 else "gloo",
    }


def build_trainer(spec: RunSpec, *, callbacks: list | None = None, fail_at_step: int | None = None,
                  dump_weights_dir: str | None = None):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.config import LoggingConfig

    use_gpu = spec.gpus_per_worker > 0
    resources = {"CPU": spec.cpus_per_worker, **({"GPU": spec.gpus_per_worker} if use_gpu else {})}
    return TorchTrainer(
        train_loop,
        train_loop_config={
            "experiment": to_dict(spec.cfg),
            "run_dir": str(spec.run_dir),
            "data_root": str(spec.data_root),
            "sync_bn": spec.sync_bn,
            "fail_at_step": fail_at_step,
            "dump_weights_dir": dump_weights_dir,
        },
        scaling_config=ScalingConfig(num_workers=spec.workers, use_gpu=use_gpu, resources_per_worker=resources,
                                     placement_strategy=spec.placement_strategy),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=spec.run_dir.name,
            storage_path=str(spec.run_dir.parent),
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level="WARNING"),  # our workers log their own progress
        ),
    )


def fit(spec: RunSpec, **kwargs):
    """Run one training to completion (resuming from Ray's latest checkpoint after failures)."""
    return build_trainer(spec, **kwargs).fit()


def init_ray(address: str | None, *, num_cpus: int | None = None) -> None:
    """Start (or join) Ray; a local Ray advertises 127.0.0.1 and its dashboard listens there only."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
    else:
        # The dashboard (on 127.0.0.1) serves the state API that Ray Train's placement-group cleaner uses to
        # free the resources of a trial Tune stops early; without it those CPUs stay reserved.
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1", configure_logging=False)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY_JSONL
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="v3", help="v1, v2, v3, ragan, esrgan, or <name>-tiny (default v3)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    add_override_argument(p)
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP ranks)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across ranks (CUDA only)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: local Ray")
    p.add_argument("--storage", default=None, help="results root (shared storage on a cluster); "
                                                      "default ./runs/train or $ENHANCE_RESULTS")
    p.add_argument("--name", default=None, help="run folder name (default: <preset>-<timestamp>)")
    p.add_argument("--data-root", default=None, help="data folder (default: $ENHANCE_DATA or ../shared/data)")
    p.add_argument("--vgg-fallback", choices=("untrained",), default=None,
                   help="explicit opt-in: if the VGG19 ImageNet weights are missing, train with untrained "
                        "perceptual features (flagged in every result) instead of stopping")
    p.add_argument("--max-failures", type=int, default=1, help="worker failures to recover from")
    return p


def make_spec(args: argparse.Namespace) -> RunSpec:
    cfg = preset(args.preset, scale=args.scale)
    cfg = override(cfg, parse_set_args(args.overrides))
    cfg = resolve_perceptual(cfg, vgg_fallback=args.vgg_fallback)
    storage = Path(args.storage) if args.storage else default_storage("train")
    name = args.name or f"{cfg.name}-x{cfg.scale}-{time.strftime('%Y%m%d-%H%M%S')}"
    return RunSpec(cfg=cfg, run_dir=(storage / name).resolve(), data_root=data_root(args.data_root),
                   workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                   gpus_per_worker=args.gpus_per_worker, sync_bn=args.sync_bn, max_failures=args.max_failures)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = make_spec(args)
        if not args.address:
            check_resources(spec, local_resources())
        prepare_run(spec)
    except (ConfigError, ValueError, FileNotFoundError, WeightsUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    init_ray(args.address)
    if args.address:
        import ray

        try:
            check_resources(spec, ray.cluster_resources())
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    started = time.time()
    result = fit(spec)
    wall = time.time() - started
    if result.error:
        print(f"training failed: {result.error}", file=sys.stderr)
        return 1
    history = read_history(spec.run_dir)
    last = next((r for r in reversed(history) if "val_psnr" in r), {})
    print(f"run folder: {spec.run_dir}")
    print(f"checkpoint: {result.checkpoint.path if result.checkpoint else 'none'}")
    if last:
        print(f"final validation ({spec.cfg.data.val_set} x{spec.cfg.scale}): PSNR {last['val_psnr']:.2f} dB, "
              f"SSIM {last['val_ssim']:.4f} after {last['step']} steps, {wall:.0f} s")
    return 0


def replace_steps(cfg: ExperimentConfig, total: int) -> ExperimentConfig:
    """Rescale a preset's phases to `total` steps, keeping its warmup share (v1 keeps none)."""
    t = cfg.train
    share = t.warmup_steps / max(t.warmup_steps + t.gan_steps, 1)
    warmup = round(total * share)
    every = max(total // 10, 1)
    return replace(cfg, train=replace(t, warmup_steps=warmup, gan_steps=total - warmup, log_every=every,
                                      val_every=max(total // 4, 1), ckpt_every=max(total // 4, 1)))


if __name__ == "__main__":
    sys.exit(main())
