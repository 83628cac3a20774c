"""Small helpers for paths and run metadata: data root, results root, git commit, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from srgan.config import ExperimentConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root(explicit: str | Path | None = None) -> Path:
    """The data folder: the explicit argument, else $ENHANCE_DATA, else ../shared/data beside the repo."""
    from benchmarks.datasets import data_root as resolve

    return resolve(explicit)


def default_storage(kind: str) -> Path:
    """Where runs are written: $ENHANCE_RESULTS/<kind> or ./results/<kind>."""
    base = os.environ.get("ENHANCE_RESULTS")
    return (Path(base) if base else Path.cwd() / "results") / kind


def resolve_train_dirs(cfg: ExperimentConfig, root: str | Path) -> list[Path]:
    """Training folders of a config, relative ones resolved against the data root; missing ones raise."""
    out = []
    for entry in cfg.data.train_dirs:
        path = Path(entry)
        path = path if path.is_absolute() else Path(root) / path
        if not path.is_dir():
            raise FileNotFoundError(
                f"training folder not found: {path} (data.train_dirs entry {entry!r}; set ENHANCE_DATA or "
                f"--data-root to the folder holding it)"
            )
        out.append(path)
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def hardware_summary() -> str:
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"GPU: {n}x {torch.cuda.get_device_name(0)}"
    return f"CPU: {os.cpu_count()} cores ({platform.machine()}, {platform.processor() or 'unknown model'})"
