"""The session's real tiny study (tests/conftest.py `tiny_study`): how it is run, interrupted and resumed, and
the helpers of the tests that read or damage it; a CLI's `main` run in this process (`run_main`)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GAN_TRIAL_FINISHED = re.compile(r"^\[GAN trials\] .* finished$", re.MULTILINE)  # harness.cluster.progress's line


@dataclass(frozen=True)
class TinyStudy:
    """The session's real tiny study (see `tiny_study`); read it, never write into `out`."""

    out: Path  # the finished study folder
    first_log: str  # the interrupted run's console output
    finished: list[str]  # GAN trials Tune had finished when the driver got Ctrl-C (trial ids = folder names)
    started: list[str]  # GAN trials started by then (finished or running)
    resume: Ran  # `harness.sweep --resume OUT` (its main, in this process on the session's Ray)
    rows: dict[str, int]  # rows of trials.parquet (all, pretrainings) and scores.parquet after the resume
    resume_window: tuple[float, float]  # (unix seconds) just before the resume's process started, after it ended

    @property
    def pristine(self) -> Path:
        return self.out.parent / "pristine"

    @property
    def cache(self) -> Path:
        """The pretraining cache its CLIs used (`study_env`): the study stored its two pretrainings there."""
        return study_cache(self.out)


def tune_trials(tune_dir: Path) -> dict[str, str]:
    """Trial id -> status in the newest experiment state Tune wrote in `tune_dir` ({} before it wrote one)."""
    states = sorted(tune_dir.glob("experiment_state-*.json")) if tune_dir.is_dir() else []
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, ValueError):  # being written
        return {}
    trials = {}
    for entry in data.get("trial_data", []):
        state = json.loads(entry[0])
        trials[state["trial_id"]] = state["status"]
    return trials


def study_rows(out: Path) -> dict[str, int]:
    import polars as pl

    trials = pl.read_parquet(out / "trials.parquet")
    return {"trials": trials.height, "pretrain": trials.filter(pl.col("stage") == "pretrain").height,
            "scores": pl.read_parquet(out / "scores.parquet").height}


def study_cache(out: Path) -> Path:
    return out.parent / "pretrain-cache"


@dataclass(frozen=True)
class Ran:
    """What a CLI's `main` returned and wrote (`run_main`)."""

    returncode: int
    stdout: str
    stderr: str  # with what it logged at INFO and above, as its own logging.basicConfig would print it


def run_main(main: Callable[[list[str]], int], argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Ran:
    """`main(argv)` of a CLI (harness.sweep, harness.study, harness.train) in this process, as its command line runs
    it, with `env` set meanwhile: on the session's Ray, which the caller holds up (tests/harness/conftest.py
    `session_ray`; the CLI joins a running Ray), so the CLI's own start-up (imports, its Ray's start and stop:
    about 10 s) is paid once, by the tests that run it as a process. Its stdout and stderr are captured, with its
    log records at INFO and above (the CLI's logging.basicConfig does nothing under pytest's log handlers)."""
    _wait_for_idle_ray()
    env = dict(env or {})
    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    level = root.level
    saved = {key: os.environ.get(key) for key in env}
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(argv))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Ran(code, stdout.getvalue(), stderr.getvalue())


def _wait_for_idle_ray(timeout: float = 60) -> None:
    """Wait until the session's Ray (if up) has every CPU and GPU free again (an earlier test's actors exit
    asynchronously); fail naming what is held after `timeout` s, rather than let a run wait on it for ever."""
    import ray

    if not ray.is_initialized():
        return
    deadline = time.time() + timeout
    while True:
        total, free = ray.cluster_resources(), ray.available_resources()
        held = {k: (free.get(k, 0.0), v) for k, v in total.items() if k in ("CPU", "GPU") and free.get(k, 0.0) < v}
        if not held:
            return
        if time.time() > deadline:
            pytest.fail(f"the session's Ray still holds resources {timeout:.0f} s after the last test (free, total): "
                        f"{held}")
        time.sleep(0.5)


def study_env(out: Path) -> dict[str, str]:
    """The study's CLIs' environment: a pretraining cache of its own (harness.sweeps.cache), so its pretrainings train
    here (in tune_pretrain/) and no other run of the session finds them (a test that wants one copies its entry)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "ENHANCE_CACHE": str(study_cache(out))}


def interrupt_after(cmd: list[str], env: dict[str, str], log: Path, marker: re.Pattern, *,
                    timeout: float) -> tuple[int, str]:
    """Run `cmd` (in its own session, output to the file `log`: nobody reads a pipe while we wait, and it fills),
    send it Ctrl-C (SIGINT to its process group) once `marker` appears in its output, and return its exit code and
    output. Fails the test if it ends before the marker; SIGKILL if it has not exited 180 s after the SIGINT."""
    run = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                           start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and not marker.search(log.read_text()):
        if run.poll() is not None:
            pytest.fail(f"{' '.join(cmd[2:4])} ended before it could be interrupted:\n" + log.read_text()[-4000:])
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: Tune saves its state and the driver exits
    try:
        code = run.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        code = run.wait()
    return code, log.read_text()


def build_tiny_study(out: Path, data_root: Path) -> TinyStudy:
    """A real tiny study in `out` (see tests/conftest.py `tiny_study`), interrupted (its CLI in a process of its own,
    Ctrl-C to its process group) and resumed (`run_main`: the caller holds the session's Ray up); a copy of the
    finished folder is kept beside it (`TinyStudy.pristine`)."""
    cmd = [sys.executable, "-m", "harness.study", "--size", "tiny", "--seeds", "2", "--datasets", "set5",
           "--vgg-fallback", "untrained", "--out", str(out), "--data-root", str(data_root)]
    # Tune's progress callback says "<trial> finished" once Tune has the trial as done (on_trial_complete); its
    # state file on disk is written every 10 s or so, too late in a stage this short
    code, text = interrupt_after(cmd, study_env(out), out.parent / "first.log", GAN_TRIAL_FINISHED, timeout=900)
    assert code == 130, text[-4000:]  # the driver says it was interrupted
    assert not (out / "trials.parquet").exists(), "the study finished before it could be interrupted"
    at_interrupt = tune_trials(out / "tune")
    finished = sorted(t for t, status in at_interrupt.items() if status == "TERMINATED")
    started = sorted(d.name for d in (out / "trials").iterdir()
                     if not d.name.endswith("-pretrain") and (d / "starts.log").is_file())
    assert finished and set(finished) != set(at_interrupt), at_interrupt  # some, not all
    from harness.sweeps import sweep

    before = time.time()
    resume = run_main(sweep.main, ["--resume", str(out)], env={"ENHANCE_CACHE": str(study_cache(out))})
    window = (before, time.time())
    assert resume.returncode == 0, resume.stdout[-4000:] + resume.stderr[-4000:]
    shutil.copytree(out, out.parent / "pristine", symlinks=True)
    return TinyStudy(out=out, first_log=text, finished=finished, started=started, resume=resume,
                     rows=study_rows(out), resume_window=window)


