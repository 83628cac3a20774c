"""A sweep driver interrupted mid-sweep and restarted with --resume completes without repeating finished
trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _finished_trials(out: Path) -> list[str]:
    """Trials whose final result Tune has written (`done: true` in their result.json)."""
    done = []
    for result in (out / "tune").glob("run_trial_*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if any(r.get("done") for r in lines):
            done.append(lines[-1]["trial_id"])
    return done


def test_interrupted_sweep_resumes_without_repeating_finished_trials(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "harness.sweep", "--presets", "v1,v2", "--grid", "loss.adv_weight=0.001",
            "--steps", "6", "--datasets", "set5", "--max-concurrent", "1", "--scheduler", "none", "--no-report",
            "--out", str(out), "--data-root", str(data_root)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not _finished_trials(out):
        assert driver.poll() is None, driver.stdout.read().decode()[-3000:]
        time.sleep(1)
    first = _finished_trials(out)
    assert len(first) == 1, "no trial finished in time"
    os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: Tune saves its state and the driver exits
    try:
        driver.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert not (out / "trials.parquet").exists(), "the sweep finished before it could be interrupted"

    resumed = subprocess.run([sys.executable, "-m", "harness.sweep", "--resume", str(out)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = pl.read_parquet(out / "trials.parquet").filter(pl.col("status") != "baseline")
    assert sorted(trials["preset"].to_list()) == ["v1", "v2"]
    assert trials["status"].to_list() == ["ok", "ok"]
    starts = (out / "trials" / first[0] / "starts.log").read_text().split()
    assert len(starts) == 1, "a finished trial was run again"
    assert trials.filter(pl.col("trial_id") == first[0])["steps"].to_list() == [6]
