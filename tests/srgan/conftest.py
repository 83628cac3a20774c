"""Fixtures for the srgan tests: the shared data folder and small generated image folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from srgan_helpers import data_root, write_random_images


@pytest.fixture(scope="session")
def data() -> Path:
    root = data_root()
    if not (root / "Set5").is_dir():
        pytest.skip(f"shared test data not found at {root} (set ENHANCE_DATA)")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_random_images(tmp_path / "train")


@pytest.fixture
def run_training(image_folder: Path):
    """run_training(cfg, steps) -> every step's metrics of a fresh engine trained on a generated folder."""
    import torch
    from srgan_helpers import make_dataset, train_metrics

    from srgan.engine import GanEngine

    def run(cfg, steps: int) -> list[dict]:
        torch.manual_seed(12345)  # a different global RNG state must not matter: the engine seeds itself
        engine = GanEngine(cfg, device="cpu")
        return train_metrics(engine, make_dataset(cfg, image_folder), start_step=0, num_steps=steps)

    return run
