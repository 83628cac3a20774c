"""Fixtures for the benchmark tests: the shared data root, an offline torch cache, tiny checkpoints."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from benchmarks import datasets, metrics
from srgan.checkpoint import save_generator
from srgan.generator import build_generator
from srgan.versions import preset


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = datasets.data_root()
    if not (root / "Set5" / "GTmod12").is_dir():
        pytest.skip(f"benchmark data not found at {root} (set ENHANCE_DATA)")
    return root


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME in tmp_path and a downloader that fails like a machine without internet."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(metrics, "_UNAVAILABLE", {})

    def no_network(url: str, dst: str, *args, **kwargs) -> None:
        raise urllib.error.URLError("Name or service not known (test: no network)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """Write a tiny v3 checkpoint (random weights) for `scale` and return its folder."""

    def make(scale: int = 2, name: str = "ckpt") -> Path:
        cfg = preset("v3-tiny", scale=scale)
        torch.manual_seed(0)
        net = build_generator(cfg.generator, scale=scale).eval()
        return save_generator(net, cfg, tmp_path / name)

    return make
