"""The validation images of a run, and what they take out of training: selection never reads a scored set.

By default (`data.val_set = "holdout"`) validation is a held-out split of the first training folder, fixed by
content so that every process, stage, seed and preset that trains on that folder holds out the same images:

- the candidates are the folder's image files whose header reads and whose shorter side is at least
  `MIN_SIDE` px (the split does not depend on the patch size, so a pretraining and its GAN stage agree);
- sub-images cut from one source image (`srgan.prepare`'s `<stem>_s001.png`, ...) count as one source image and
  are held out together: overlapping tiles of a validation image never train;
- the `data.val_count` source images with the smallest sha256 of their bytes (a group's smallest) are held out,
  but never more than one in `MAX_SHARE` of the folder's source images (at least one): a 5-image folder keeps 4;
- a held-out image (a group: its file with the smallest hash) is validated on; it, its group and every
  byte-identical copy in any training folder are removed from training (`training_exclusions`).

With `data.val_set = "dirs"` every image of `data.val_dirs` is validated on, and byte-identical copies of them
are removed from training too. A benchmark name validates on that set (refused where it is also scored: see
`harness.run.validation`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from srgan.config import ExperimentConfig
from srgan.files import file_hash
from srgan.images import IMAGE_SUFFIXES, ImageError, image_size

MIN_SIDE = 32  # px: smaller files are no validation candidates (an SSIM window after the border crop needs room)
MAX_SHARE = 5  # at most one source image in five is held out
_TILE = re.compile(r"^(?P<stem>.+)_s\d{3,}$")  # srgan.prepare's sub-image names


@dataclass(frozen=True)
class HeldOut:
    """One validation image: its file, the sha256 of its bytes, and the source image (group) it stands for."""

    path: Path
    sha256: str
    group: str


@dataclass(frozen=True)
class ValidationSplit:
    """The validation images of a run and the sha256 of every file they take out of training."""

    kind: str  # "holdout" | "dirs"
    folders: tuple[Path, ...]  # where the images are (holdout: the first training folder)
    images: tuple[HeldOut, ...]  # sorted by sha256 (holdout) or by path (dirs)
    excluded: frozenset[str]  # never trained on
    sources: int  # source images the holdout chose from (dirs: the images)

    def record(self, root: str | Path) -> dict:
        """What config.json and run.json list: kind, folders (relative to the data root where they are under it),
        the images (folder-relative paths) with their sha256."""
        folders = [_relative(f, root) for f in self.folders]
        return {"kind": self.kind, "folders": folders, "count": len(self.images), "sources": self.sources,
                "excluded_from_training": len(self.excluded),
                "images": [{"folder": _relative(h.path.parent, root), "path": h.path.name, "sha256": h.sha256}
                           for h in self.images]}


def _relative(path: Path, root: str | Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def sha256_of(path: Path) -> str:
    return file_hash(path, "sha256")


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"validation folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _usable(path: Path) -> bool:
    try:
        return min(image_size(path)) >= MIN_SIDE
    except ImageError:
        return False


def holdout_split(folder: str | Path, *, count: int) -> ValidationSplit:
    """The held-out split of `folder` (module docstring). Raises `ValueError` naming the folder when it has fewer
    than two usable source images (nothing would be left to train on).

    Computed once per content: the split is cached on the folder's file names and their sha256 (`file_digest`),
    not on the folder's mtime, which a file rewritten in place leaves as it was."""
    folder = Path(folder).resolve()
    return _holdout(folder, count, tuple((path.name, file_digest(path)) for path in _image_files(folder)))


def file_digest(path: Path) -> str:
    """`sha256_of(path)`, remembered while the file's stat signature (device, inode, size, mtime and ctime in ns)
    stays the same: any write to the file changes its ctime, which no user call can set back (unlike the mtime),
    so a rewritten file is read again. Use `sha256_of` where the bytes must be read whatever the metadata says."""
    st = path.stat()
    return _digest_at(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@lru_cache(maxsize=8192)
def _digest_at(path: str, _dev: int, _ino: int, _size: int, _mtime_ns: int, _ctime_ns: int) -> str:
    return sha256_of(Path(path))


@lru_cache(maxsize=16)
def _holdout(folder: Path, count: int, contents: tuple[tuple[str, str], ...]) -> ValidationSplit:
    groups: dict[str, list[tuple[str, Path, bool]]] = {}  # group -> (sha256, file, usable)
    for name, digest in contents:
        path = folder / name
        match = _TILE.match(path.stem)
        groups.setdefault(match["stem"] if match else path.stem, []).append((digest, path, _usable(path)))
    units = {}  # smallest usable sha256 -> (file, group); byte-identical files are one image (as in training)
    for group, members in groups.items():
        usable = sorted((digest, path) for digest, path, ok in members if ok)
        if usable and usable[0][0] not in units:
            units[usable[0][0]] = (usable[0][1], group)
    if len(units) < 2:
        raise ValueError(f"{folder}: {len(units)} usable image(s) (at least {MIN_SIDE} px): too few to hold out "
                         "validation images and still train; name a validation folder (--set data.val_set=dirs "
                         "--set data.val_dirs=FOLDER) or a benchmark set that is not scored (--set data.val_set=NAME)")
    take = min(count, max(1, len(units) // MAX_SHARE))
    chosen = [(digest, *units[digest]) for digest in sorted(units)[:take]]
    images = tuple(HeldOut(path, digest, group) for digest, path, group in chosen)
    excluded = frozenset(digest for _, _, group in chosen for digest, _, _ in groups[group])
    return ValidationSplit("holdout", (folder,), images, excluded, len(units))


def dirs_split(folders: Sequence[str | Path]) -> ValidationSplit:
    """Every image file of `folders` (`data.val_dirs`, resolved), sorted by path; none is a `ValueError`."""
    images = []
    for folder in folders:
        for path in _image_files(Path(folder)):
            images.append(HeldOut(path, sha256_of(path), path.stem))
    if not images:
        raise ValueError(f"no validation images in {', '.join(str(f) for f in folders)} (data.val_dirs)")
    return ValidationSplit("dirs", tuple(Path(f) for f in folders), tuple(images),
                           frozenset(h.sha256 for h in images), len(images))


def resolve_dirs(entries: Sequence[str], root: str | Path) -> list[Path]:
    """Folders of a config entry list, relative ones resolved against the data root."""
    return [Path(e) if Path(e).is_absolute() else Path(root) / e for e in entries]


def validation_split(cfg: ExperimentConfig, train_folders: Sequence[str | Path],
                     root: str | Path) -> ValidationSplit | None:
    """The config's split: the holdout of its first training folder, its `val_dirs`, or None for a benchmark set."""
    if cfg.data.val_set == "holdout":
        return holdout_split(train_folders[0], count=cfg.data.val_count)
    if cfg.data.val_set == "dirs":
        return dirs_split(resolve_dirs(cfg.data.val_dirs, root))
    return None


def training_exclusions(cfg: ExperimentConfig, train_folders: Sequence[str | Path],
                        root: str | Path) -> frozenset[str]:
    """sha256 of the files a run must not train on: its validation images (and, for the holdout, their groups);
    none for a benchmark validation set."""
    split = validation_split(cfg, train_folders, root)
    return split.excluded if split is not None else frozenset()
