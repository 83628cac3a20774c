"""Fixtures for the harness tests: one sweep submitted with `ray job submit` to a real local Ray head (the data root
and the session's in-process Ray, `session_ray`/`local_ray`, are tests/conftest.py's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class RayJobSweep:
    out: Path  # the sweep's results folder
    status: object  # the job's final ray.job_submission.JobStatus
    logs: str  # the job's output (the driver's stdout and stderr)


@pytest.fixture(scope="session")
def ray_job_sweep(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> RayJobSweep:
    """A tiny v1 sweep submitted with `ray job submit` to a real Ray head on 127.0.0.1 (dashboard included), started
    with `ray start --head --block` in its own process group, so that stopping it stops exactly what this fixture
    started (never `ray stop`, which would stop every Ray on the machine); the head is stopped once the job ended.
    The sweep validates on Set5, which it scores, by the explicit opt-in (--allow-selection-on-test): the
    selection tests read its flags (test_harness_selection.py), the cluster test the job (test_harness_cluster.py)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = tmp_path_factory.mktemp("ray-job") / "job-results"
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's socket paths have a length limit
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # loopback only; token auth is for real clusters
    ray_bin = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", f"--temp-dir={temp_dir}",
         "--include-dashboard=true"],
        env=env, start_new_session=True, stdout=(Path(temp_dir) / "head.log").open("w"), stderr=subprocess.STDOUT)
    try:
        client, deadline = None, time.time() + 90
        while time.time() < deadline:
            if head.poll() is not None:
                pytest.fail(f"ray head exited: {(Path(temp_dir) / 'head.log').read_text()[-3000:]}")
            try:
                client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(1)
        assert client is not None, "Ray head did not come up in 90 s"
        entrypoint = (f"{sys.executable} -m harness.sweep --presets v1 --grid loss.adv_weight=0.001 --steps 4 "
                      f"--datasets set5 --set data.val_set=set5 --allow-selection-on-test --address auto "
                      f"--out {out} --data-root {data_root}")
        job_id, deadline = None, time.time() + 90
        while job_id is None:  # the head's job agent registers a few seconds after its dashboard answers
            try:
                job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})
            except RuntimeError as err:
                if "No available agent" not in str(err) or time.time() > deadline:
                    raise
                time.sleep(2)
        deadline, status = time.time() + 400, None
        while time.time() < deadline:
            status = client.get_job_status(job_id)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                break
            time.sleep(2)
        return RayJobSweep(out=out, status=status, logs=client.get_job_logs(job_id))
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:  # `ray start --block` took the whole 30 s it was once given to stop: its group is killed after 5
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
