"""Fixtures for the benchmark tests: the shared data root, an offline torch cache, tiny checkpoints."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from benchmarks.scoring import learned


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME in tmp_path and a downloader that fails like a machine without internet."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(learned, "_UNAVAILABLE", {})

    def no_network(url: str, dst: str, *args, **kwargs) -> None:
        raise urllib.error.URLError("Name or service not known (test: no network)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Benchmark tests time or train tiny models: one intra-op thread, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
