"""What a Ray Train worker needs around its loop: DDP wrapping, the global batch mean, validation, the metrics
history, logging. `harness/run/train.py`'s `train_loop` is the policy that uses them."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from srgan.checkpoint import save_checkpoint
from srgan.engine import GanEngine

if TYPE_CHECKING:
    from harness.run.session import Session

log = logging.getLogger(__name__)

HISTORY_JSONL = "history.jsonl"


def ddp_wrapper(device: torch.device, *, sync_bn: bool):
    """G and D wrapped in DDP. D's BN running stats stay per rank (broadcasting them each forward buys nothing);
    G's are broadcast from rank 0 before each forward, so validation and checkpoints use rank 0's."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    def wrap(net: torch.nn.Module, role: str) -> torch.nn.Module:
        if sync_bn and device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        ids = [device.index] if device.type == "cuda" else None
        return DDP(net, device_ids=ids, broadcast_buffers=(role == "generator"))

    return wrap


def global_batch_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the global batch: an autograd-aware all-reduce of the local sum (equal shards)."""
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x.sum()) / (x.numel() * dist.get_world_size())


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """Element-wise max over ranks (in place, returned): every rank sees the same divergence flag."""
    import torch.distributed as dist

    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision, for every rank (the time limit: rank 0's clock decides, so all stop together)."""
    import torch.distributed as dist

    value = torch.tensor([float(flag)], device=device)  # NCCL needs it on the GPU
    dist.broadcast(value, src=0)
    return bool(value.item())


def validate(engine: GanEngine, data_root: str | Path) -> dict[str, float]:
    """PSNR/SSIM (and NIQE where the crops hold its blocks) of the inference generator (EMA when on) on the run's
    validation images (`harness.run.validation`: the held-out split of its training folder by default, never a scored
    set unless opted in)."""
    from harness.run import validation

    pairs = validation.validation_pairs(engine.cfg, data_root)  # built once per process
    net = engine.inference_generator()
    was_training = net.training
    net.eval()
    try:
        return validation.score(net, pairs, scale=engine.cfg.scale, device=engine.device,
                                niqe_params=validation.niqe_params_of(str(data_root)))
    finally:
        net.train(was_training)


class History:
    """Rank 0's metrics history as JSON lines; after a restart, rows past the restored step are dropped."""

    def __init__(self, run_dir: Path, *, resume_step: int) -> None:
        self.path = Path(run_dir) / HISTORY_JSONL
        if self.path.exists():
            kept = [r for r in read_history(run_dir) if r["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY_JSONL
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's keys, dtypes, shapes and values: equal digests, equal weights."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def record_init(run_dir: Path, engine: GanEngine, *, source: str, weights: Path) -> None:
    """init.json: where a GAN stage's generator came from, and a digest of the weights it started with."""
    from srgan.engine import unwrap

    payload = {"init_from": source, "weights": str(weights), "step": engine.step,
               "generator_digest": state_digest(unwrap(engine.net_g).state_dict())}
    (Path(run_dir) / "init.json").write_text(json.dumps(payload, indent=2))


def worker_logging(rank: int) -> None:
    """Our loggers at INFO with the rank in front; Ray's own loggers keep their levels."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(message)s"))
    for name in ("harness", "srgan", "benchmarks"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def log_line(metrics: dict[str, Any], total: int) -> str:
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                     if k.startswith(("loss_g", "loss_pixel", "loss_d", "val_")) and v is not None)
    return f"step {metrics['step']}/{total} [{metrics['phase']}] {shown}"


class Clock:
    """Images/s between collections, and the time limit (rank 0's clock decides for every rank)."""

    def __init__(self, limit_s: float, *, world: int, device: torch.device) -> None:
        self.world, self.device = world, device
        self.deadline = time.perf_counter() + limit_s if limit_s > 0 else None
        self.tick, self.tick_step = time.perf_counter(), None

    def images_per_s(self, step: int, batch: int) -> float:
        """Images/s of the training steps since the last `lap` (validation and checkpoints excluded)."""
        steps = step - self.tick_step if self.tick_step is not None else step
        return steps * batch / max(time.perf_counter() - self.tick, 1e-9)

    def lap(self, step: int) -> None:
        self.tick, self.tick_step = time.perf_counter(), step

    def out_of_time(self) -> bool:
        if self.deadline is None:
            return False
        late = time.perf_counter() > self.deadline
        return broadcast_flag(late, self.device) if self.world > 1 else late


def report_divergence(err: Exception, step: int, history: History | None, session: Session) -> None:
    log.error("diverged: %s", err)
    row = {"step": step, "phase": "diverged", "time": time.time(), "diverged": 1.0, "diverged_reason": str(err)}
    if history is not None:
        history.append(row)
    session.publish(row, None, None)


def report(engine: GanEngine, metrics: dict[str, Any], *, checkpoint: bool, history: History | None,
           session: Session) -> None:
    """Every rank reports (Ray Train wants it); rank 0 writes the history and the checkpoint, which the session
    publishes (`harness.run.session`: Ray Train's storage, or the trial's own run folder)."""
    with tempfile.TemporaryDirectory(dir=session.scratch, prefix=".checkpoint-") as tmp:
        folder = None
        if checkpoint:
            folder = save_checkpoint(engine, Path(tmp) / "checkpoint")
        if history is not None:
            history.append(metrics)
            log.info(log_line(metrics, engine.total_steps))
        session.publish(metrics, folder, f"checkpoint_{metrics['step']:07d}" if folder else None)
