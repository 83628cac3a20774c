"""Fixtures for the harness tests: a local Ray for a test module (the data root is tests/conftest.py's)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray the project's way (2 CPUs, services on loopback, no dashboard) shared by a test module."""
    import ray

    from harness.local_ray import init_local_ray, shutdown_ray

    init_local_ray(2, include_dashboard=False, log_to_driver=False)
    yield ray
    shutdown_ray()
