"""Single-worker sweep trials train in the Tune trial's own process (`harness.run.train.train_in_trial`, no Ray Train
worker group): they use the CPUs the trial reserved, keep their checkpoints in the run folder, and a trial killed
mid-training is restarted by Tune from its last checkpoint and ends exactly as an uninterrupted run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from harness_helpers import KillAt, reference_run, tiny_config
from safetensors.torch import load_file

from harness.cluster.packing import trial_resources
from harness.run.runs import RunSpec, prepare_run
from harness.run.session import TuneTrialSession, checkpoints, latest_checkpoint, prune_checkpoints
from harness.run.worker import read_history


class Record:
    """At every step: the process, its torch threads and whether Tune's session is there (a Ray Train worker
    has none); appended to a file the test reads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __call__(self, engine, rank: int, world: int) -> None:
        from ray import tune

        row = {"step": engine.step, "pid": os.getpid(), "threads": torch.get_num_threads(), "world": world,
               "trial": tune.get_context().get_trial_id()}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


class Both:
    def __init__(self, *hooks) -> None:
        self.hooks = hooks

    def __call__(self, engine, rank: int, world: int) -> None:
        for hook in self.hooks:
            hook(engine, rank, world)


def _local_trial(config: dict) -> None:
    from harness.run.train import train_in_trial

    spec = config["spec"]
    with open(config["pids"], "a") as fh:
        fh.write(f"{os.getpid()}\n")
    train_in_trial(spec, on_step=Both(Record(config["record"]), KillAt(5, spec.run_dir / "injected_failure.done")))


@pytest.mark.slow
def test_a_killed_single_worker_trial_restarts_from_its_checkpoint(local_ray, data_root: Path, tmp_path: Path
                                                                   ) -> None:
    from ray import cloudpickle, tune

    cfg = tiny_config(data_root, steps=(3, 5))
    cfg = cfg.__class__(**{**cfg.__dict__, "train": cfg.train.__class__(
        **{**cfg.train.__dict__, "ckpt_every": 4, "val_every": 8})})
    spec = prepare_run(RunSpec(cfg=cfg, run_dir=tmp_path / "trial", data_root=data_root, workers=1,
                               cpus_per_worker=2.0))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test file
    try:
        tuner = tune.Tuner(
            tune.with_resources(_local_trial, trial_resources(1, 2.0, 0.0)),
            param_space={"spec": spec, "record": str(tmp_path / "record.jsonl"), "pids": str(tmp_path / "pids")},
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="tune", verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=1)))
        results = tuner.fit()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert results[0].error is None
    assert (spec.run_dir / "injected_failure.done").exists(), "the failure was not injected"
    pids = [int(x) for x in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2 and pids[0] != pids[1]  # started twice: Tune restarted the killed trial
    rows = [json.loads(line) for line in (tmp_path / "record.jsonl").read_text().splitlines()]
    # every step ran in the trial's own process (no worker group), on the 2 CPUs the trial reserved
    assert {r["pid"] for r in rows} == set(pids) and {r["world"] for r in rows} == {1}
    assert {r["threads"] for r in rows} == {2}
    # steps 1-5, then after the restart from the step-4 checkpoint steps 5-8
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 5, 6, 7, 8]
    history = read_history(spec.run_dir)
    assert [row["step"] for row in history] == list(range(1, 9))  # no step lost or repeated in the history
    _, reference = reference_run(cfg, data_root)
    for key in ("loss_pixel", "loss_g", "loss_d_real", "loss_d_fake", "d_real", "d_fake"):
        assert history[-1][key] == pytest.approx(reference[-1][key], rel=1e-6, abs=1e-9), key
    # the checkpoints live in the run folder, in Ray Train's layout, the newest two kept
    assert [p.name for p in checkpoints(spec.run_dir)] == ["checkpoint_0000004", "checkpoint_0000008"]
    assert results[0].metrics["checkpoint_path"] == str(spec.run_dir / "checkpoint_0000008")
    final = load_file(str(spec.run_dir / "checkpoint_0000008" / "generator.safetensors"))
    ref_state, _ = reference_run(cfg, data_root)
    assert max(float((final[k] - ref_state[k]).abs().max()) for k in final) < 1e-6
    assert not list(spec.run_dir.glob(".checkpoint-*"))  # no half-written checkpoint left behind
    log = (spec.run_dir / "train.log").read_text()  # the trial's report lines, not the sweep's console
    assert "step 3/8 [warmup]" in log and "step 8/8 [gan]" in log and "resumed from" in log


def test_checkpoints_are_found_and_pruned_by_step(tmp_path: Path) -> None:
    for step in (12, 4, 100, 8):
        (tmp_path / f"checkpoint_{step:07d}").mkdir()
    (tmp_path / "checkpoint_notes").mkdir()  # not a checkpoint
    assert latest_checkpoint(tmp_path).name == "checkpoint_0000100"
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint_0000012", "checkpoint_0000100"]
    assert TuneTrialSession(tmp_path, gpus=0.0).device == torch.device("cpu")
