"""Small helpers for paths: data root, results root, training folders."""

from __future__ import annotations

import os
from pathlib import Path

from srgan.config import ExperimentConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root(explicit: str | Path | None = None) -> Path:
    """The data folder: the explicit argument, else $ENHANCE_DATA, else ../shared/data beside the repo."""
    from benchmarks.datasets import data_root as resolve

    return resolve(explicit)


def default_storage(kind: str) -> Path:
    """Where runs are written: $ENHANCE_RESULTS/<kind> or ./runs/<kind>."""
    base = os.environ.get("ENHANCE_RESULTS")
    return (Path(base) if base else Path.cwd() / "runs") / kind


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
