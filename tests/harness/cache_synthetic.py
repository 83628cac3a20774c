"""Small synthetic data for the pretraining cache's and the resume's tests (issue 27): a data root with the tiny
size's training folders, a finished pretraining's trial folder without training, an in-place rewrite of an image."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.run.runs import resolve_config
from harness.sweeps import cache
from srgan.holdout import holdout_split

TRAIN_DIRS = ("train/T91", "train/BSD200")  # the tiny size's training folders


def synthetic_root(root: Path, *, images: int = 6) -> Path:
    """A data root holding the tiny size's training folders: small random images (BMP in T91, as T91 is)."""
    rng = np.random.default_rng(0)
    for folder, suffix in zip(TRAIN_DIRS, (".bmp", ".png"), strict=True):
        (root / folder).mkdir(parents=True)
        for i in range(images):
            pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"img{i}{suffix}")
    return root


def pretraining(root: Path):
    return resolve_config("v2", size="tiny", data_root=root, steps=4, stage="pretrain")


def finished(cfg, run_dir: Path, root: Path) -> Path:
    """A trial folder as a finished pretraining leaves it (random weights), with the key recorded as it started."""
    from srgan.checkpoint import save_config, save_generator
    from srgan.generator import build_generator

    torch.manual_seed(0)
    net = build_generator(cfg.generator, scale=cfg.scale)
    run_dir.mkdir(parents=True)
    cache.record_key(run_dir, cfg, root)
    save_config(cfg, run_dir)
    steps = cfg.train.total_steps
    save_generator(net, cfg, run_dir / f"checkpoint_{steps:07d}", step=steps)
    (run_dir / "history.jsonl").write_text(json.dumps({"step": steps, "time": time.time()}) + "\n")
    (run_dir / "label.txt").write_text(cfg.name)
    return run_dir


def rewrite_in_place(path: Path) -> bytes:
    """Flip the last pixel byte of a BMP: same size, same name, same mtime; other pixels. Returns the old bytes."""
    old = path.read_bytes()
    st = path.stat()
    data = bytearray(old)
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    return old


def trained_file(root: Path) -> Path:
    """A T91 image that is not held out for validation (it trains)."""
    held = {h.path.name for h in holdout_split(root / TRAIN_DIRS[0], count=10).images}
    return next(p for p in sorted((root / TRAIN_DIRS[0]).iterdir()) if p.name not in held)
