"""Where a training loop learns its rank and device, finds the checkpoint to resume from, and reports to.

`train_loop` (harness/run/train.py) runs in one of two places:
- a Ray Train worker of a `TorchTrainer` (`RayTrainSession`): `harness.train`, and sweep trials of several
  workers (DDP). Ray Train stores the checkpoints and restarts failed workers (`FailureConfig`).
- the Tune trial's own process (`TuneTrialSession`): single-worker sweep trials, without a worker group. Ray
  Train's start-up (a controller actor, a placement group, a worker actor that imports torch again: about 20 s
  of a tiny trial here) is then gone. The trial keeps checkpoints in its run folder itself, in the layout Ray
  Train writes (`checkpoint_<step>`, the newest two kept), and reports to Tune. Tune restarts a failed trial
  (`FailureConfig(max_failures)`) and resumes an interrupted one (`Tuner.restore`); both start the function
  again, which resumes from the newest checkpoint in its folder.

Why not Ray Train's own local mode (`ScalingConfig(num_workers=0)`, Ray 2.60): inside a Tune trial it cannot
run our loop. `ray.train.get_context`, `report` and `get_checkpoint` raise "deprecated when running in a function
passed to Ray Tune" there (ray/train/v2/_internal/util.py `requires_train_worker`). Even outside Tune its
`report` only keeps the last metrics and checkpoint object in memory: run callbacks (`TuneReportCallback`) are not
called, checkpoints are not persisted (ours live in a temporary folder), `get_checkpoint` is None in a new process
and `FailureConfig` restarts nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint_"
LOOP_LOGGERS = ("harness", "srgan", "benchmarks")  # those `worker.worker_logging` sets up
KEEP_CHECKPOINTS = 2  # checkpoints a run keeps: here and in harness.run.train's Ray Train CheckpointConfig


class Session(Protocol):
    """What `train_loop` needs from where it runs."""

    rank: int
    world: int
    device: torch.device
    scratch: Path | None  # where a checkpoint is written before `publish` (None: the system's temp folder)

    def checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        """The folder of the checkpoint to resume from (None: a fresh start)."""

    def publish(self, metrics: dict[str, Any], folder: Path | None, name: str | None) -> None:
        """Report `metrics`, and the checkpoint written to `folder` (named `name`) when there is one."""

    def redirect_logs(self) -> None:
        """Send the loop's log lines where this session wants them (after `worker.worker_logging`)."""


class RayTrainSession:
    """Inside a Ray Train worker: Ray Train's context, checkpoint and report."""

    scratch = None

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world, self.device = ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device()

    @contextlib.contextmanager
    def checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        latest = ray.train.get_checkpoint()
        if latest is None:
            yield None
            return
        with latest.as_directory() as folder:
            yield Path(folder)

    def publish(self, metrics: dict[str, Any], folder: Path | None, name: str | None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(str(folder)) if folder is not None else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name if ckpt else None)

    def redirect_logs(self) -> None:  # the workers' lines stay on their stdout (Ray shows them on the driver's)
        return


class TuneTrialSession:
    """Inside a Tune function trial that trains itself (one process, rank 0 of 1): checkpoints in `run_dir`,
    metrics to Tune (with `checkpoint_path`, as Ray Train's `TuneReportCallback` adds it)."""

    rank, world = 0, 1

    def __init__(self, run_dir: Path, *, gpus: float, keep: int = KEEP_CHECKPOINTS, log_file: Path | None = None
                 ) -> None:
        self.run_dir, self.keep, self.log_file = Path(run_dir), keep, log_file
        self.scratch = self.run_dir  # the same file system: publishing a checkpoint is a rename
        # Ray hands a trial that holds GPUs its own CUDA_VISIBLE_DEVICES: its first visible device is its GPU
        self.device = torch.device("cuda", 0) if gpus > 0 and torch.cuda.is_available() else torch.device("cpu")

    @contextlib.contextmanager
    def checkpoint(self) -> Iterator[Path | None]:
        yield latest_checkpoint(self.run_dir)

    def publish(self, metrics: dict[str, Any], folder: Path | None, name: str | None) -> None:
        from ray import tune

        metrics = dict(metrics)
        if folder is not None:
            final = self.run_dir / (name or f"{CHECKPOINT_PREFIX}{metrics['step']:07d}")
            if final.exists():  # a restarted trial reached this step again: the new one replaces it
                shutil.rmtree(final)
            os.replace(folder, final)  # atomic: a checkpoint folder is complete or absent
            prune_checkpoints(self.run_dir, keep=self.keep)
            metrics["checkpoint_path"] = str(final)
        tune.report(metrics)

    def redirect_logs(self) -> None:
        """With a `log_file`, the loop's lines (one per report) go there, and only its warnings and errors to the
        console: a sweep's console shows one progress line per update, not every trial's every report."""
        if self.log_file is None:
            return
        to_file = logging.FileHandler(self.log_file)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        to_console = logging.StreamHandler(sys.stderr)
        to_console.setLevel(logging.WARNING)
        to_console.setFormatter(logging.Formatter(f"[{self.run_dir.name}] %(message)s"))
        for name in LOOP_LOGGERS:
            logger = logging.getLogger(name)
            for old in logger.handlers:  # Tune reuses a trial's process for the next trial: close the last file
                if isinstance(old, logging.FileHandler):
                    old.close()
            logger.handlers[:] = [to_file, to_console]


def checkpoints(run_dir: Path) -> list[Path]:
    """The run folder's checkpoints, oldest first (by the step in their name)."""
    found = [d for d in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*") if d.is_dir() and d.name[len(CHECKPOINT_PREFIX):]
             .isdigit()]
    return sorted(found, key=lambda d: int(d.name[len(CHECKPOINT_PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def prune_checkpoints(run_dir: Path, *, keep: int) -> None:
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
