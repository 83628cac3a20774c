"""Cluster use: a sweep submitted with `ray job submit` to a real local head; a 2-node DDP training."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from harness_helpers import DumpWeights, tiny_config, with_hook

from harness.run.runs import RunSpec, prepare_run
from harness.run.train import fit

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head():
    """A real Ray head on 127.0.0.1 (dashboard included), started with `ray start --block` in its own process
    group so that stopping it stops exactly what this test started (never `ray stop`, which would stop every
    Ray on the machine)."""
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's socket paths have a length limit
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # loopback only; token auth is for real clusters
    ray_bin = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", f"--temp-dir={temp_dir}",
         "--include-dashboard=true"],
        env=env, start_new_session=True, stdout=(Path(temp_dir) / "head.log").open("w"), stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 90
    from ray.job_submission import JobSubmissionClient

    client = None
    while time.time() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray head exited: {(Path(temp_dir) / 'head.log').read_text()[-3000:]}")
        try:
            client = JobSubmissionClient(address)
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(1)
    assert client is not None, "Ray head did not come up in 90 s"
    yield client, env
    os.killpg(head.pid, signal.SIGTERM)
    try:  # `ray start --block` took the whole 30 s it was once given to stop: its group is killed after 5
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=10)


def test_sweep_as_a_ray_job(ray_head, data_root: Path, tmp_path: Path) -> None:
    from ray.job_submission import JobStatus

    client, _env = ray_head
    out = tmp_path / "job-results"
    entrypoint = (f"{sys.executable} -m harness.sweep --presets v1 --grid loss.adv_weight=0.001 --steps 4 "
                  f"--datasets set5 --address auto --out {out} --data-root {data_root}")
    job_id, deadline = None, time.time() + 90
    while job_id is None:  # the head's job agent registers a few seconds after its dashboard answers
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})
        except RuntimeError as err:
            if "No available agent" not in str(err) or time.time() > deadline:
                raise
            time.sleep(2)
    deadline = time.time() + 400
    status = None
    while time.time() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    trials = pl.read_parquet(out / "trials.parquet")
    assert set(trials["status"]) == {"baseline", "ok"}
    assert trials.filter(pl.col("status") == "ok")["preset"].to_list() == ["v1"]
    summary = pl.read_parquet(out / "summary.parquet")
    assert summary.height == 2 and summary["psnr"].is_not_null().all()
    assert (out / "report" / "index.html").exists()
    assert f"report: {out / 'report' / 'index.html'}" in logs


def test_ddp_workers_on_two_nodes(data_root: Path, tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    # (pinning node_ip_address to 127.0.0.1 here makes ray.init hang in Ray 2.60's test cluster)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        cfg = tiny_config(data_root, steps=(2, 2))
        spec = prepare_run(RunSpec(cfg=cfg, run_dir=tmp_path / "two-nodes", data_root=data_root, workers=2,
                                   placement_strategy="STRICT_SPREAD"))
        dump = tmp_path / "dump"
        dump.mkdir()
        result = fit(spec, loop=with_hook(DumpWeights(dump)))
        assert result.error is None
        nodes = {(dump / f"node_rank{r}.txt").read_text() for r in range(2)}
        assert len(nodes) == 2, "both workers ran on the same node"
        ranks = [(dump / f"generator_rank{r}.safetensors").read_bytes() for r in range(2)]
        assert ranks[0] == ranks[1]
    finally:
        ray.shutdown()
        cluster.shutdown()
