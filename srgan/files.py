"""What srgan's readers and writers of files share: the checkpoint error, the suffixes of published weights, why
`torch.load` refused a file, and the atomic write.

It imports no other srgan module, so `srgan.checkpoint` and `srgan.official` (and `srgan.data`) both build on it
without importing each other both ways.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path

WEIGHT_SUFFIXES = (".pth", ".pt")  # published generator weights (`srgan.official`), read with weights_only=True


def file_hash(path: str | Path, kind: str = "sha256") -> str:
    """The hex digest of a file's bytes (`hashlib` algorithm `kind`), read in 1 MiB blocks."""
    digest = hashlib.new(kind)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the path and the problem."""


def torch_load_problem(err: BaseException) -> str:
    """Why `torch.load(..., weights_only=True)` failed, in one line, without PyTorch's advice to retry with
    the unsafe loader or to allowlist the offending class: for a file from elsewhere, that advice is how
    code gets run."""
    if isinstance(err, pickle.UnpicklingError):
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = [line.split(". Please use")[0].removeprefix("WeightsUnpickler error: ").rstrip(".") for line in lines
                  if "weights_only" not in line and not line.startswith(("Weights only load failed", "Check the"))]
        what = "; ".join(detail) or "an object other than tensors and plain values"
        return (f"refused: it holds a pickled object that could run code when loaded ({what}); only tensors and "
                "plain values are loaded")
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"corrupt or truncated ({first.split('. ')[0]})"


def _fsync(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY if directory else os.O_RDWR
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some platforms and file systems cannot open a folder: its rename is then best effort
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], object], *,
                 error: Callable[[str], Exception] = CheckpointError) -> None:
    """Write `path` through a hidden temporary file beside it, flushed to disk (fsync) before it is renamed
    over `path`, then the folder's entry flushed too: a full disk, a read-only folder or a crash leaves the
    previous file whole (or none), never a truncated one, and no partial file behind. A write that fails
    raises `error` (a `CheckpointError` unless the caller names another type) with a message naming the file,
    the reason and what was kept."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0]
        kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
        raise error(f"{path}: could not be written ({reason}); {kept}") from err
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync(path.parent, directory=True)
