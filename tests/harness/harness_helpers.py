"""Helpers for the harness tests: tiny BN-free configs and a single-process reference run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from harness.storage import resolve_train_dirs
from srgan.config import ExperimentConfig, override
from srgan.data import PatchDataset, make_loader
from srgan.engine import GanEngine, unwrap
from srgan.versions import preset


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
    dataset = PatchDataset(resolve_train_dirs(cfg, data_root), scale=cfg.scale, patch_size=cfg.data.patch_size,
                           augment=cfg.data.augment, degradation=cfg.data.degradation, seed=cfg.train.seed)
    steps = engine.total_steps if steps is None else steps
    history = []
    for lq, gt in make_loader(dataset, global_batch=cfg.data.batch_size, start_step=0, num_steps=steps):
        history.append(engine.train_step(lq, gt))
    state = {k: v.detach().clone() for k, v in unwrap(engine.net_g).state_dict().items()}
    return state, history
