"""The holdout split is cached on content (issue 27.9): it was cached on the folder's mtime, which a file rewritten
in place leaves unchanged, so a process kept holding out (and validating on) an image that was no longer there,
while training excluded nothing of the new one."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from srgan.holdout import _holdout, holdout_split, sha256_of


def _bmp(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "BMP")
    return buf.getvalue()


def test_a_file_rewritten_in_place_changes_the_split(tmp_path: Path) -> None:
    """Six 40x40 BMPs (one is held out); one that is not held out is rewritten in place, same size, with pixels whose
    sha256 is now the smallest, and even its mtime set back: the folder's mtime is unchanged. The split follows
    the bytes, and equals a fresh computation."""
    folder = tmp_path / "train"
    folder.mkdir()
    for k in range(6):
        (folder / f"im{k}.bmp").write_bytes(_bmp(k))
    before = holdout_split(folder, count=1)
    assert len(before.images) == 1
    target = next(p for p in sorted(folder.iterdir()) if p != before.images[0].path)
    smallest = min(sha256_of(p) for p in folder.iterdir())
    seed = 100
    while hashlib.sha256(data := _bmp(seed)).hexdigest() >= smallest:  # about one try in seven succeeds
        seed += 1
    assert len(data) == target.stat().st_size
    folder_mtime, file_stat = folder.stat().st_mtime_ns, target.stat()
    with open(target, "r+b") as f:  # in place: same file, same size
        f.write(data)
    os.utime(target, ns=(file_stat.st_atime_ns, file_stat.st_mtime_ns))
    assert folder.stat().st_mtime_ns == folder_mtime and target.stat().st_mtime_ns == file_stat.st_mtime_ns

    after = holdout_split(folder, count=1)
    assert after.images[0].path == target.resolve() and after.images[0].sha256 == hashlib.sha256(data).hexdigest()
    assert after.excluded == {hashlib.sha256(data).hexdigest()}
    _holdout.cache_clear()
    assert holdout_split(folder, count=1) == after  # the same as computed afresh


def test_an_unchanged_folder_is_not_read_again(tmp_path: Path, monkeypatch) -> None:
    """The cache still does its job: a second split of an unchanged folder reads no file's bytes."""
    folder = tmp_path / "train"
    folder.mkdir()
    for k in range(5):
        (folder / f"im{k}.bmp").write_bytes(_bmp(k))
    first = holdout_split(folder, count=1)
    reads = []
    import srgan.holdout as holdout

    monkeypatch.setattr(holdout, "sha256_of", lambda path: reads.append(path) or sha256_of(path))
    assert holdout_split(folder, count=1) == first and reads == []
    (folder / "im4.bmp").write_bytes(_bmp(40))  # one file changes: it alone is read again
    holdout_split(folder, count=1)
    assert [Path(p).name for p in reads] == ["im4.bmp"]
