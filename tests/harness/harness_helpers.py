"""Helpers for the harness tests: tiny BN-free configs, a single-process reference run, and step hooks that the
tests hand to `train_loop` through `with_hook` (fault injection, weight dumps): test switches never travel in the
worker's config."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import ray.cloudpickle
import torch

from harness.run.storage import resolve_train_dirs
from harness.run.train import train_loop
from srgan.config import ExperimentConfig, override
from srgan.data import PatchDataset, make_loader
from srgan.engine import GanEngine, unwrap
from srgan.holdout import training_exclusions
from srgan.versions import preset


def with_hook(on_step) -> partial:
    """`harness.run.train.train_loop` with a step hook, for `build_trainer(loop=...)` / `fit(loop=...)`."""
    return partial(train_loop, on_step=on_step)


def tiny_config(data_root: Path, *, name: str = "v2-tiny", steps: tuple[int, int] = (3, 3),
                **updates) -> ExperimentConfig:
    """A BN-free tiny config training on Set5's HR images, checkpointing and validating at the end only."""
    cfg = preset(name, scale=4)
    warmup, gan = steps
    cfg = replace(cfg, train=replace(cfg.train, warmup_steps=warmup, gan_steps=gan, log_every=1,
                                     val_every=warmup + gan, ckpt_every=warmup + gan))
    base = {
        "generator.norm": "none",
        "discriminator.norm": "none",
        "loss.perceptual_weight": 0.0,
        "data.train_dirs": [str(data_root / "Set5" / "GTmod12")],
        "data.batch_size": 4,
    }
    return override(cfg, {**base, **updates})


def reference_run(cfg: ExperimentConfig, data_root: Path, *, steps: int | None = None
                  ) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The same training in this process, without Ray or DDP: final G state and every step's metrics."""
    engine = GanEngine(cfg, device="cpu")
    folders = resolve_train_dirs(cfg, data_root)
    dataset = PatchDataset(folders, scale=cfg.scale, patch_size=cfg.data.patch_size, augment=cfg.data.augment,
                           degradation=cfg.data.degradation, seed=cfg.train.seed,
                           exclude=training_exclusions(cfg, folders, data_root))  # as harness.train: no val image
    steps = engine.total_steps if steps is None else steps
    history = []
    for lq, gt in make_loader(dataset, global_batch=cfg.data.batch_size, start_step=0, num_steps=steps):
        engine.train_step(lq, gt, grad_norms=True)
        history.append(engine.pop_metrics())  # every step: these configs log every step
    state = {k: v.detach().clone() for k, v in unwrap(engine.net_g).state_dict().items()}
    return state, history


class KillAt:
    """Kill the last rank's process once at `step`, like a lost node (the marker keeps the restart alive)."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step, self.marker = step, Path(marker)

    def __call__(self, engine: GanEngine, rank: int, world: int) -> None:
        if engine.step == self.step and rank == world - 1 and not self.marker.exists():
            self.marker.write_text(f"killed rank {rank} at step {engine.step}\n")
            os.kill(os.getpid(), signal.SIGKILL)


class DumpWeights:
    """At the last step, every rank writes its generator and its node id into `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __call__(self, engine: GanEngine, rank: int, world: int) -> None:
        if engine.step != engine.total_steps:
            return
        import ray
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in unwrap(engine.net_g).state_dict().items()}
        save_file(tensors, str(self.folder / f"generator_rank{rank}.safetensors"))
        (self.folder / f"node_rank{rank}.txt").write_text(ray.get_runtime_context().get_node_id())


class PoisonRank:
    """From `step` on, the given rank's generator weights are NaN: its losses turn non-finite there."""

    def __init__(self, step: int, rank: int) -> None:
        self.step, self.rank = step, rank

    def __call__(self, engine: GanEngine, rank: int, world: int) -> None:
        if rank == self.rank and engine.step == self.step:
            with torch.no_grad():
                for p in unwrap(engine.net_g).parameters():
                    p.fill_(float("nan"))


# Ray workers cannot import this test module by name: ship its hooks by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
