"""Fixtures for the harness tests: the data root and a local Ray for a test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.datasets import data_root as resolve_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = resolve_data_root()
    if not (root / "Set5").is_dir():
        pytest.skip(f"shared test data not found at {root} (set ENHANCE_DATA)")
    return root


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray the project's way (2 CPUs, services on loopback, no dashboard) shared by a test module."""
    import ray

    from harness.resources import init_local_ray, shutdown_ray

    init_local_ray(2, include_dashboard=False, log_to_driver=False)
    yield ray
    shutdown_ray()
