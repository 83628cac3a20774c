"""Fixtures for the srgan tests: the shared data folder and small generated image folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from srgan_helpers import write_random_images


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests run tiny models: one intra-op thread is as fast on an idle machine and many times faster on
    a busy shared one (OpenMP threads spin-waiting for a core). Restored afterwards for other test folders."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data(data_root: Path) -> Path:
    return data_root


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
