"""Helpers shared by the srgan tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from srgan.config import ExperimentConfig, override
from srgan.data import PatchDataset, make_loader
from srgan.engine import GanEngine
from srgan.versions import preset

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny(name: str, *, scale: int = 4, **updates) -> ExperimentConfig:
    """`<name>-tiny` with an untrained VGG (ImageNet weights cannot be downloaded here).

    `updates` are dotted overrides with "." written as "__" (e.g. optim__ema_decay=0.0)."""
    dotted = {k.replace("__", "."): v for k, v in updates.items()}
    return override(preset(f"{name}-tiny", scale=scale), {"loss.perceptual_weights": "untrained", **dotted})


def micro(name: str, *, scale: int = 4, **updates) -> ExperimentConfig:
    """`tiny()` made cheaper still for step-by-step tests: 24-px HR patches, batches of 2."""
    return tiny(name, scale=scale, **{"data__patch_size": 24, "data__batch_size": 2, **updates})


def write_random_images(folder: Path, *, count: int = 3, size: tuple[int, int] = (64, 80), seed: int = 0) -> Path:
    """Smooth random RGB PNGs of (H, W) = size, so bicubic LR patches are not pure noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size[1], size[0]), Image.BICUBIC).save(folder / f"img{i:02d}.png")
    return folder


def make_dataset(cfg: ExperimentConfig, folder: Path) -> PatchDataset:
    return PatchDataset([folder], scale=cfg.scale, patch_size=cfg.data.patch_size, augment=cfg.data.augment,
                        degradation=cfg.data.degradation, seed=cfg.train.seed)


def train_metrics(engine: GanEngine, dataset: PatchDataset, *, start_step: int, num_steps: int) -> list[dict]:
    """Run `num_steps` engine steps on the dataset's global sample stream from `start_step`; return every
    step's metrics (losses, lrs, grad norms, D outputs)."""
    loader = make_loader(dataset, global_batch=engine.cfg.data.batch_size, start_step=start_step,
                         num_steps=num_steps)
    history = []
    for lq, gt in loader:
        engine.train_step(lq, gt, grad_norms=True)
        history.append(engine.pop_metrics())
    return history
