"""Where and how a result was made: git commit, hardware, and the run.json payload (`schema.RUN_FIELDS`)."""

from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """The checkout's HEAD commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def hardware(gpus: Sequence[str] = ()) -> str:
    """"GPU: 2x NVIDIA H100" when `gpus` names the devices used, else "CPU: N cores (arch)"."""
    if gpus:
        return f"GPU: {len(gpus)}x {gpus[0]}"
    return f"CPU: {os.cpu_count()} cores ({platform.machine()})"


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def run_info(*, kind: str, scale: int, datasets: Sequence[str], started: float, protocol: dict, hardware: str,
             command: str | None = None, **extra: Any) -> dict:
    """The run.json payload: `schema.RUN_FIELDS` plus any extra keys (the model, its config, stages...)."""
    finished = time.time()
    info = {
        "kind": kind,
        "command": command if command is not None else shlex.join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "hardware": hardware,
        "started_at": iso(started),
        "finished_at": iso(finished),
        "wall_s": round(finished - started, 3),
        "scale": scale,
        "datasets": list(datasets),
        "protocol": protocol,
    }
    return {**info, **extra}
