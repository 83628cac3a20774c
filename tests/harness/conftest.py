"""Fixtures for the harness tests: the session's one in-process Ray (the data root is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


class SessionRay:
    """The session's in-process Ray, started the product's way (`harness.cluster.local_ray.init_local_ray`: 2 CPUs,
    services on loopback, the dashboard on, as Ray Train V2 needs it), once, on first use. A module that needs a
    Ray of another shape (fake GPUs) shuts it down first; the next test that asks for it starts it again.
    tests/conftest.py runs the tests that use it one after another, after the tests that need no Ray in this
    process (an in-process CLI call must not find a Ray already up)."""

    def __init__(self) -> None:
        self.info = None
        self.starts = 0

    def get(self):
        """The running session Ray's `LocalRay` (what it started: session folder, owner token, ports)."""
        import ray

        from harness.cluster.local_ray import current, init_local_ray

        if not ray.is_initialized() or current() is not self.info:
            if ray.is_initialized():
                from harness.cluster.local_ray import shutdown_ray

                shutdown_ray()
            self.info = init_local_ray(2, log_to_driver=False)
            self.starts += 1
        return self.info

    def close(self) -> None:
        import ray

        from harness.cluster.local_ray import shutdown_ray

        if ray.is_initialized():
            shutdown_ray()
        self.info = None


@pytest.fixture(scope="session")
def session_ray() -> Iterator[SessionRay]:
    ray = SessionRay()
    try:
        yield ray
    finally:
        ray.close()


@pytest.fixture
def local_ray(session_ray: SessionRay):
    """The session's Ray (`SessionRay`), up; returns the `ray` module. Never shut it down in a test."""
    import ray

    session_ray.get()
    return ray
