"""Where runs go and where training data comes from: results root, run folders, training folders."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.datasets import data_root
from srgan.config import ExperimentConfig

__all__ = ["data_root", "default_storage", "resolve_train_dirs", "run_folder"]


def default_storage(kind: str) -> Path:
    """Where runs are written: $ENHANCE_RESULTS/<kind> or ./runs/<kind>."""
    base = os.environ.get("ENHANCE_RESULTS")
    return ((Path(base) if base else Path.cwd() / "runs") / kind).resolve()


def run_folder(storage: str | Path, name: str) -> Path:
    """`storage/name`, refusing names that would put the run anywhere else (`..`, separators, absolute)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("~") or "\0" in name:
        raise ValueError(f"run name {name!r} must be a plain folder name (no '/', '..' or absolute paths)")
    root = Path(storage).resolve()
    folder = (root / name).resolve()
    if folder.parent != root:
        raise ValueError(f"run name {name!r} resolves outside the results root {root}")
    return folder


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
