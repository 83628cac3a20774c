"""One run per results folder: a lock file `<folder>/.lock`, created with O_EXCL before any work.

Two sweeps or studies started on one `--out` a second apart used to both pass the "not empty" check (it came
before the step timing, ~15 s before sweep.json was written) and then ran in the same Tune state and trial
folders. O_EXCL makes the claim atomic, on a local disk and on NFS (v3 and later) alike. The file holds who
claimed it (PID, host, process start time, command), so the refusal names the run that holds the folder.

A lock left by a run that died without cleaning up (SIGKILL, OOM killer, a lost node) is *stale* when its PID is
not alive on this host, or is alive but started after the lock was written (the PID was reused). A stale lock
is said to be stale and is taken over by `--resume`. A lock held from another host cannot be checked from here:
it is refused with the host named, and the message says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# The lock's own start time may be a little earlier than its process's (the record is made after the process
# started); a process that started more than this after the lock was written cannot be the one that wrote it.
_START_SLACK_S = 2.0


class FolderLocked(Exception):
    """The folder is claimed by another run (or a stale lock that this call may not take over)."""

    def __init__(self, message: str, *, holder: Holder | None = None, stale: bool = False) -> None:
        super().__init__(message)
        self.holder, self.stale = holder, stale


@dataclass(frozen=True)
class Holder:
    """Who claimed a folder."""

    pid: int
    host: str
    started: float  # time.time() when the lock was written
    command: str = ""

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, since {when}" + (f": {self.command}" if self.command else "")


def _this_host() -> str:
    return socket.gethostname()


def read_holder(path: Path) -> Holder | None:
    """The holder a lock file names; None when it cannot be read (empty, cut off, not ours)."""
    try:
        data = json.loads(path.read_text())
        return Holder(pid=int(data["pid"]), host=str(data["host"]), started=float(data["started"]),
                      command=str(data.get("command", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_stale(holder: Holder) -> bool:
    """True when the holder is surely gone: on this host, and its PID is not alive or belongs to a process that
    started after the lock was written (a reused PID). A holder on another host is never judged stale here."""
    if holder.host != _this_host():
        return False
    import psutil

    try:
        created = psutil.Process(holder.pid).create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # e.g. access denied: the process exists, so it may well be the holder
        return False
    return created > holder.started + _START_SLACK_S


@dataclass
class FolderLock:
    """A claimed folder; `release()` removes the lock file if it is still this process's, and the folders the
    claim created if the run left them empty (a run refused in its plan leaves nothing behind)."""

    path: Path
    holder: Holder
    created: tuple[Path, ...] = ()  # innermost first

    def release(self) -> None:
        current = read_holder(self.path)
        if current is not None and current == self.holder:
            self.path.unlink(missing_ok=True)
        for folder in self.created:
            try:
                folder.rmdir()  # only an empty one
            except OSError:
                break

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _create(path: Path, holder: Holder) -> bool:
    """Create the lock file with O_EXCL; False when it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(asdict(holder)))
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:  # e.g. a full disk: an empty or cut-off lock would block every later run, --resume too
        path.unlink(missing_ok=True)
        raise
    return True


def live_claim(folder: str | Path) -> tuple[Path, Holder | None] | None:
    """The lock file that holds `folder` or a folder above it (a run folder inside a live study's folder is that
    study's), with its holder, when a run may still hold it; a stale lock holds nothing. An unreadable lock holds
    `folder` itself (holder None) but not the folders below it: a `.lock` above may be another tool's (pytest's)."""
    folder = Path(folder)
    for place in (folder, *folder.parents):
        path = place / LOCK_FILE
        if path.is_file():
            holder = read_holder(path)
            if holder is None and place == folder or holder is not None and not is_stale(holder):
                return path, holder
    return None


def claim(folder: str | Path, *, command: str = "", take_over_stale: bool = False, resume_hint: str = "") -> FolderLock:
    """Claim `folder` (created if missing) for this process, atomically.

    Raises `FolderLocked` naming the holder when another run holds it. A stale lock (see `is_stale`) is taken over
    when `take_over_stale`; otherwise the error says it is stale and `resume_hint` (e.g. "--resume DIR") says how
    to take it over."""
    folder = Path(folder)
    created = tuple(p for p in (folder, *folder.parents) if not p.exists())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    me = Holder(pid=os.getpid(), host=_this_host(), started=time.time(), command=command)
    if _create(path, me):
        return FolderLock(path, me, created)
    holder = read_holder(path)
    if holder is None:
        raise FolderLocked(f"{folder} is claimed by another run, but its lock file {path} cannot be read (empty or "
                           f"cut off); if no run uses this folder, remove {path} and start again")
    if not is_stale(holder):
        where = "" if holder.host == _this_host() else (
            f"; the lock was taken on another host, which cannot be checked from here: if that run is gone, "
            f"remove {path}")
        raise FolderLocked(f"{folder} is in use by another run ({holder.describe()}){where}", holder=holder)
    if not take_over_stale:
        hint = f"; take it over with {resume_hint}" if resume_hint else f"; remove {path} to use the folder"
        raise FolderLocked(f"{folder} holds a stale lock: its run ({holder.describe()}) is no longer alive{hint}",
                           holder=holder, stale=True)
    # Take the stale lock over. Renaming is atomic: of two processes taking it over at once, one renames it and
    # the other finds it gone and then meets the winner's new lock in `_create`.
    aside = path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        aside = None
    if aside is not None:
        if read_holder(aside) != holder:  # a lock written between our read and our rename: not the stale one
            with contextlib.suppress(FileExistsError):  # a third run claimed it meanwhile: theirs stands
                os.link(aside, path)
            aside.unlink(missing_ok=True)
            raise FolderLocked(f"{folder} was claimed by another run while this one took over its stale lock")
        aside.unlink(missing_ok=True)
        log.warning("%s: took over the stale lock of %s", folder, holder.describe())
    if _create(path, me):
        return FolderLock(path, me)
    winner = read_holder(path)
    raise FolderLocked(f"{folder} is in use by another run ({winner.describe() if winner else 'unreadable lock'})",
                       holder=winner)
