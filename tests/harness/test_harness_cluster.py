"""Cluster use: a sweep submitted with `ray job submit` to a real local head; a 2-node DDP training."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from harness_helpers import DumpWeights, tiny_config, with_hook

from harness.run.runs import RunSpec, prepare_run
from harness.run.train import fit

pytestmark = pytest.mark.slow


def test_sweep_as_a_ray_job(ray_job_sweep) -> None:
    """The session's sweep submitted with `ray job submit` to a real local head (tests/harness/conftest.py)."""
    from ray.job_submission import JobStatus

    out, logs = ray_job_sweep.out, ray_job_sweep.logs
    assert ray_job_sweep.status == JobStatus.SUCCEEDED, logs[-3000:]
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
