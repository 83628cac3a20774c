"""Third hostile pass (issue 27), the harness's share: `harness.train` claims its run folder (27.4), a local Ray is
always its own whatever `ray start` left on the machine (27.5), and the lock's low items (27.9): a lock whose write
fails leaves no file, and a resumed run's lock names the command that resumed it."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster import local_ray
from harness.run import lock, train
from harness.sweeps import sweep
from harness.sweeps.plan import SweepRequest


class _RayStarted(Exception):
    """Raised by a stand-in for `ray.init` / `init_ray`: the code under test got as far as starting Ray."""


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# ------------------------------------------------------------------------------------------ 27.4 train lock


def _no_ray(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise _RayStarted("harness.train went on to start Ray")

    monkeypatch.setattr(local_ray, "init_ray", refuse)


def test_a_train_on_a_folder_another_run_holds_is_refused(monkeypatch, capsys, data_root: Path,
                                                          tmp_path: Path) -> None:
    """27.4: two trains into one --name both ran (one died with a raw FileNotFoundError, the other wrote 42 history
    rows for 30 steps). A train now claims its run folder: one held by a live run (this test's process) is refused,
    naming the holder's PID and command, before Ray starts and before anything is written in the folder."""
    _no_ray(monkeypatch)
    storage = tmp_path / "runs"
    held = lock.claim(storage / "same", command="python -m harness.train --name same (the first)")
    try:
        code = train.main(["--preset", "v1-tiny", "--storage", str(storage), "--name", "same",
                           "--data-root", str(data_root)])
        err = capsys.readouterr().err
        assert code == 2
        assert "in use by another run" in err and f"pid {os.getpid()}" in err and "(the first)" in err
        assert sorted(p.name for p in (storage / "same").iterdir()) == [lock.LOCK_FILE]  # no config.json written
        # a train into a folder inside a live study's folder is that study's
        study = tmp_path / "study"
        with lock.claim(study, command="python -m harness.study --out study"):
            code = train.main(["--preset", "v1-tiny", "--storage", str(study), "--name", "t0",
                               "--data-root", str(data_root)])
            err = capsys.readouterr().err
            assert code == 2 and f"inside {study}" in err and "harness.study" in err
            assert not (study / "t0").exists()
            # a dry run claims nothing, and says the same
            assert train.main(["--preset", "v1-tiny", "--storage", str(study), "--name", "t0",
                               "--data-root", str(data_root), "--dry-run"]) == 2
            assert "in use by another run" in capsys.readouterr().err
    finally:
        held.release()
    # once the folder is free, the train claims it (as its own command) and goes on to Ray
    with pytest.raises(_RayStarted):
        train.main(["--preset", "v1-tiny", "--storage", str(storage), "--name", "same", "--data-root", str(data_root)])
    assert not (storage / "same" / lock.LOCK_FILE).exists()  # released when main ended
    assert (storage / "same" / "config.json").is_file()


def test_a_killed_trains_stale_lock_is_taken_over_by_the_same_command(monkeypatch, data_root: Path,
                                                                     tmp_path: Path) -> None:
    """Repeating a train's command is how it resumes, so a lock its killed process left is taken over; the lock
    then names this process and the resuming command."""
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / lock.LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(),
                                                      "started": time.time() - 60, "command": "the killed one"}))
    seen = {}

    def record(*_args, **_kwargs):
        seen["holder"] = lock.read_holder(run_dir / lock.LOCK_FILE)
        raise _RayStarted

    monkeypatch.setattr(local_ray, "init_ray", record)
    argv = ["--preset", "v1-tiny", "--storage", str(run_dir.parent), "--name", "r", "--data-root", str(data_root)]
    with pytest.raises(_RayStarted):
        train.main(argv)
    assert seen["holder"].pid == os.getpid() and "harness.train" in seen["holder"].command
    assert "--name r" in seen["holder"].command


def test_a_train_into_a_sweep_folder_is_refused(capsys, data_root: Path, tmp_path: Path) -> None:
    """A sweep's or study's results folder (its sweep.json) is not a run folder, even when no run holds it."""
    out = tmp_path / "runs" / "s1"
    out.mkdir(parents=True)
    (out / "sweep.json").write_text("{}")
    assert train.main(["--preset", "v1-tiny", "--storage", str(out.parent), "--name", "s1",
                       "--data-root", str(data_root)]) == 2
    assert "results folder of a sweep or study" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json"]


# -------------------------------------------------------------------------------------- 27.5 local Ray


def test_a_local_ray_never_joins_a_ray_start_cluster(monkeypatch, tmp_path: Path) -> None:
    """27.5: `ray.init()` without an address joins the cluster a `ray start` recorded in <tmp>/ray/ray_current_cluster
    (every local train, sweep and study then died with a raw ValueError about _system_config). With such a record
    present, Ray's own address resolution of what `init_local_ray` passes must say "start a new local Ray".

    No Ray process is started: `ray.init` is replaced by a spy that resolves the address with Ray's own function
    (while the record is there) and stops."""
    import ray
    from ray._private import services

    assert not ray.is_initialized()
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{local_ray.free_loopback_port()}")
    assert services.canonicalize_bootstrap_address(None) is not None  # the record is seen: a bare init would join
    seen = {}

    def spy(*args, **kwargs):
        seen["kwargs"] = kwargs
        seen["bootstrap"] = services.canonicalize_bootstrap_address(kwargs.get("address"))
        raise _RayStarted

    monkeypatch.setattr(ray, "init", spy)
    with pytest.raises(_RayStarted):
        local_ray.init_local_ray(1, include_dashboard=False, watch=False)
    assert seen["kwargs"]["address"] == "local"
    assert seen["bootstrap"] is None  # Ray starts its own instance


@pytest.mark.slow
def test_a_local_ray_starts_beside_a_recorded_cluster(monkeypatch) -> None:
    """The real check: with a `ray start` record in Ray's temp folder (here a private one, pointing at a port where
    nothing listens, so no other Ray on the machine is touched), a local Ray starts, is this process's own (its
    session folder is under that temp folder), and shuts down. Before 27.5 this raised Ray's ValueError."""
    import tempfile

    import ray

    assert not ray.is_initialized()
    with tempfile.TemporaryDirectory(prefix="r27-", dir="/tmp") as tmp:  # short: Ray's socket paths must fit
        monkeypatch.setenv("RAY_TMPDIR", tmp)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        (Path(tmp) / "ray").mkdir()
        (Path(tmp) / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{local_ray.free_loopback_port()}")
        try:
            info = local_ray.init_local_ray(1, include_dashboard=False, log_to_driver=False)
            assert Path(info.session_dir).resolve().is_relative_to(Path(tmp).resolve())
            assert ray.cluster_resources().get("CPU") == 1
        finally:
            local_ray.shutdown_ray()


# -------------------------------------------------------------------------------------------- 27.9 lock


def test_a_lock_whose_write_fails_leaves_no_file(monkeypatch, tmp_path: Path) -> None:
    """27.9: a full disk while writing the lock left an empty .lock that blocked every later run, --resume too, and
    blamed a run that never existed. The failed claim now raises the disk's error and removes its file."""
    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lock.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        lock.claim(tmp_path / "out", command="first")
    assert not (tmp_path / "out" / lock.LOCK_FILE).exists()
    monkeypatch.undo()
    with lock.claim(tmp_path / "out", command="second") as claimed:  # the folder is free for the next run
        assert lock.read_holder(claimed.path).command == "second"


def test_a_resumed_runs_lock_names_the_resuming_command(tmp_path: Path) -> None:
    """27.9: the lock of a resumed sweep named the original command (sweep.json's), not the one that resumed it."""
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"entry": "harness.sweep", "argv": ["--presets", "v1"], "started": 0,
                                                "request": {"presets": ["v1"]}}))
    argv = ["--resume", str(out)]
    _, launch, resuming, claimed = sweep.open_folder(sweep.Launch(SweepRequest(), entry="harness.sweep", argv=argv,
                                                                  resume=str(out)))
    try:
        assert resuming and launch.argv == ["--presets", "v1"]  # the run it continues
        assert lock.read_holder(out / lock.LOCK_FILE).command == f"python -m harness.sweep --resume {out}"
    finally:
        claimed.release()
