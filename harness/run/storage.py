"""Where runs go and where training data comes from: results root, run folders, training folders.

Every path a run will write under is checked here before anything runs (also with `--dry-run`), so that a results
root that is a file, a name longer than the file system allows, or a results folder inside the data root is named
as the problem instead of surfacing as an OSError traceback from deep inside a run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.scoring.datasets import data_root
from srgan.config import ExperimentConfig

__all__ = ["check_folder_path", "data_root", "default_storage", "dry_run_cache", "outside_data_root",
           "resolve_train_dirs", "run_folder"]

NAME_MAX = 255  # bytes in one path component on the common Linux file systems (ext4, xfs, btrfs, tmpfs, NFS)


def default_storage(kind: str) -> Path:
    """Where runs are written: $ENHANCE_RESULTS/<kind> or ./runs/<kind>."""
    base = os.environ.get("ENHANCE_RESULTS")
    root = ((Path(base) if base else Path.cwd() / "runs") / kind).resolve()
    check_folder_path(root, what="the results root ($ENHANCE_RESULTS)" if base else "the results root (./runs)")
    return root


def check_folder_path(path: str | Path, *, what: str) -> Path:
    """`path` if a folder can be made (or is) there: no part of it is an existing file, and no name in it is longer
    than the file system allows. Else a ValueError naming `what`, the path and the problem."""
    path = Path(path)
    limit = _name_max(path)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise ValueError(f"{what} {str(path)[:80]}...: the name {part[:40]}... is {len(os.fsencode(part))} bytes "
                             f"long; the file system allows {limit}")
    for parent in (path, *path.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ValueError(f"{what} {path}: {parent} is a file, not a folder")
            break
    return path


def _name_max(path: Path) -> int:
    """The longest name the file system at `path` (its nearest existing folder) allows."""
    for parent in (path, *path.parents):
        try:
            if parent.is_dir():
                return int(os.pathconf(parent, "PC_NAME_MAX"))
        except (OSError, ValueError):  # e.g. a name too long to look up: try the folder above
            continue
    return NAME_MAX


def run_folder(storage: str | Path, name: str) -> Path:
    """`storage/name`, refusing names that would put the run anywhere else (`..`, separators, absolute), names too
    long for the file system, and a results root that is a file."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("~") or "\0" in name:
        raise ValueError(f"run name {name!r} must be a plain folder name (no '/', '..' or absolute paths)")
    root = Path(storage).resolve()
    check_folder_path(root, what="the results root")
    limit = _name_max(root)
    if len(os.fsencode(name)) > limit:
        raise ValueError(f"run name {name[:40]}... is {len(os.fsencode(name))} bytes long; the file system allows "
                         f"{limit} (--name)")
    folder = (root / name).resolve()
    if folder.parent != root:
        raise ValueError(f"run name {name!r} resolves outside the results root {root}")
    return folder


def outside_data_root(folder: str | Path, root: str | Path, *, what: str) -> Path:
    """`folder` if it is neither the data root nor inside it (results written there would mix with the data, and
    a training folder scan could pick them up). Else a ValueError naming both."""
    folder, root = Path(folder).resolve(), Path(root).resolve()
    if folder == root or root in folder.parents:
        raise ValueError(f"{what} {folder} is inside the data root {root}; results must go elsewhere")
    return folder


@contextmanager
def dry_run_cache(folder: str | Path) -> Iterator[Path]:
    """A throwaway folder for the cost estimate's step-time cache during a dry run, which writes nothing: it
    starts with the step_times.json of `folder` (or of $ENHANCE_STEP_TIMES, when set) where there is one (so cached
    times are used), and is deleted after."""
    from benchmarks.speed.cost import CACHE_FILE, cache_folder

    tmp = Path(tempfile.mkdtemp(prefix="enhance-dry-run-"))
    try:
        cached = cache_folder(folder) / CACHE_FILE
        if cached.is_file():
            shutil.copyfile(cached, tmp / CACHE_FILE)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
