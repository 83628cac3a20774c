"""One run per results folder (issue 18.2): two studies started on one --out a second apart both passed the "not
empty" check and ran in the same Tune state. The folder is claimed with an O_EXCL lock file before any work."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.run import lock
from harness.sweeps import sweep
from harness.sweeps.plan import SweepRequest

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _write_lock(folder: Path, **holder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": "", **holder}
    (folder / lock.LOCK_FILE).write_text(json.dumps(record))
    return folder / lock.LOCK_FILE


def test_a_released_claim_leaves_no_folder_it_created_empty(tmp_path: Path) -> None:
    # a run refused in its plan (nothing written) leaves nothing behind, not even the folders its claim made
    with lock.claim(tmp_path / "a" / "b"):
        pass
    assert not (tmp_path / "a").exists() and tmp_path.is_dir()
    # a folder that holds something stays, and so does one that existed before the claim
    with lock.claim(tmp_path / "kept"):
        (tmp_path / "kept" / "sweep.json").write_text("{}")
    assert (tmp_path / "kept" / "sweep.json").is_file() and not (tmp_path / "kept" / lock.LOCK_FILE).exists()
    (tmp_path / "existing").mkdir()
    with lock.claim(tmp_path / "existing"):
        pass
    assert (tmp_path / "existing").is_dir()


def test_a_claim_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    claim = lock.claim(tmp_path / "out", command="python -m harness.study --out out")
    record = json.loads((tmp_path / "out" / lock.LOCK_FILE).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["started"] <= time.time() and record["command"] == "python -m harness.study --out out"
    with pytest.raises(lock.FolderLocked) as err:  # this process is alive: its claim holds
        lock.claim(tmp_path / "out", take_over_stale=True)
    assert f"pid {os.getpid()}" in str(err.value) and "harness.study" in str(err.value) and not err.value.stale
    claim.release()
    assert not (tmp_path / "out" / lock.LOCK_FILE).exists()
    lock.claim(tmp_path / "out").release()  # free again


def test_a_stale_lock_is_said_to_be_stale_and_taken_over_only_when_asked(tmp_path: Path) -> None:
    pid = _dead_pid()
    _write_lock(tmp_path, pid=pid)
    with pytest.raises(lock.FolderLocked) as err:
        lock.claim(tmp_path, resume_hint=f"--resume {tmp_path}")
    assert err.value.stale and "stale" in str(err.value) and f"pid {pid}" in str(err.value)
    assert f"--resume {tmp_path}" in str(err.value)
    claim = lock.claim(tmp_path, take_over_stale=True)
    assert lock.read_holder(tmp_path / lock.LOCK_FILE).pid == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == [lock.LOCK_FILE]  # the stale record is gone, nothing else
    claim.release()


def test_a_reused_pid_does_not_hold_a_lock(tmp_path: Path) -> None:
    """A lock whose PID now belongs to a process that started after the lock was written is stale."""
    _write_lock(tmp_path, pid=os.getpid(), started=time.time() - 10 * 86400)
    assert lock.is_stale(lock.read_holder(tmp_path / lock.LOCK_FILE))
    lock.claim(tmp_path, take_over_stale=True).release()


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(tmp_path: Path) -> None:
    path = _write_lock(tmp_path, pid=_dead_pid(), host="node-7.cluster")
    with pytest.raises(lock.FolderLocked) as err:
        lock.claim(tmp_path, take_over_stale=True)  # not ours to judge: another host's PID
    assert "node-7.cluster" in str(err.value) and "another host" in str(err.value) and str(path) in str(err.value)
    assert path.exists()


def test_an_unreadable_lock_is_named(tmp_path: Path) -> None:
    (tmp_path / lock.LOCK_FILE).write_text("")  # a claim cut off between create and write
    with pytest.raises(lock.FolderLocked, match="cannot be read"):
        lock.claim(tmp_path, take_over_stale=True)


def test_a_release_leaves_another_runs_lock(tmp_path: Path) -> None:
    claim = lock.claim(tmp_path)
    other = _write_lock(tmp_path, pid=os.getppid())  # someone else's claim replaced ours (e.g. by hand)
    claim.release()
    assert other.exists()


def test_a_sweep_on_a_folder_in_use_is_refused_at_once(capsys, data_root: Path, tmp_path: Path) -> None:
    """The second run is refused before any work, naming the first; the folder is left as it was."""
    out = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, pid=holder.pid, command="python -m harness.study --out study")
        code = sweep.main(["--presets", "v1", "--data-root", str(data_root), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and "in use by another run" in err and f"pid {holder.pid}" in err and "harness.study" in err
        # a resume is refused too while the holder lives
        (out / "sweep.json").write_text(json.dumps({"entry": "harness.sweep", "argv": [], "started": 0,
                                                    "request": {"presets": ["v1"]}}))
        code = sweep.main(["--resume", str(out)])
        assert code == 2 and f"pid {holder.pid}" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [lock.LOCK_FILE, "sweep.json"]
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_by_resume(capsys, tmp_path: Path) -> None:
    """A run killed without cleaning up (SIGKILL) leaves a stale lock: a new run on the folder is told so and
    pointed to --resume, which takes the folder over."""
    out = tmp_path / "sweep"
    _write_lock(out, pid=_dead_pid())
    (out / "sweep.json").write_text(json.dumps({"entry": "harness.sweep", "argv": ["--presets", "v1"], "started": 0,
                                                "request": {"presets": ["v1"]}}))
    code = sweep.main(["--presets", "v1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "stale lock" in err and f"python -m harness.sweep --resume {out}" in err
    _, launch, resuming, claim = sweep.open_folder(sweep.Launch(SweepRequest(), entry="harness.sweep", argv=[],
                                                                resume=str(out)))
    try:
        assert resuming and launch.request.presets == ("v1",)
        assert lock.read_holder(out / lock.LOCK_FILE).pid == os.getpid()
    finally:
        claim.release()


def test_a_stale_lock_in_an_otherwise_empty_folder_is_taken_by_a_new_run(tmp_path: Path) -> None:
    """A run that died before it wrote anything left only its lock: a new run may use the folder."""
    out = tmp_path / "fresh"
    _write_lock(out, pid=_dead_pid())
    got, _, resuming, claim = sweep.open_folder(sweep.Launch(SweepRequest(), entry="harness.sweep", argv=[],
                                                             out=str(out)))
    try:
        assert got == out.resolve() and not resuming
        assert lock.read_holder(out / lock.LOCK_FILE).pid == os.getpid()
    finally:
        claim.release()


@pytest.mark.slow
def test_two_studies_started_a_second_apart_on_one_folder(data_root: Path, tmp_path: Path) -> None:
    """The repro: two real `harness.study ... --out D` processes, the second started one second after the first.
    Exactly one goes on; the other is refused at once (rc 2) naming the first's PID. Ctrl-C on the one that
    went on ends it with 130 and gives the folder back."""
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "harness.study", "--size", "tiny", "--seeds", "1", "--datasets", "set5",
           "--vgg-fallback", "untrained", "--out", str(out), "--data-root", str(data_root), "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logs[0].open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    time.sleep(1.0)
    second = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logs[1].open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    procs = [first, second]
    try:
        deadline = time.time() + 120
        while time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        refused = [i for i, p in enumerate(procs) if p.poll() is not None]
        assert len(refused) == 1, [log.read_text()[-2000:] for log in logs]
        loser, winner = procs[refused[0]], procs[1 - refused[0]]
        text = logs[refused[0]].read_text()
        assert loser.returncode == 2, text[-3000:]
        assert "in use by another run" in text and f"pid {winner.pid}" in text
        assert lock.read_holder(out / lock.LOCK_FILE).pid == winner.pid
        os.killpg(winner.pid, signal.SIGINT)  # still planning (or already training): stopped either way
        assert winner.wait(timeout=180) == 130, logs[1 - refused[0]].read_text()[-3000:]
        assert not (out / lock.LOCK_FILE).exists()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_a_dry_run_claims_nothing_and_says_who_holds_the_folder(capsys, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = _write_lock(out, pid=holder.pid)
        before = path.read_bytes()
        code = sweep.main(["--presets", "v1", "--data-root", str(data_root), "--out", str(out), "--dry-run"])
        assert code == 2 and f"pid {holder.pid}" in capsys.readouterr().err
        assert path.read_bytes() == before and [p.name for p in out.iterdir()] == [lock.LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
