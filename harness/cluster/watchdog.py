"""The orphan watchdog of a local Ray: `python -S -m harness.cluster.watchdog DRIVER_PID TOKEN ENV_NAME` (Linux).

Why it exists: Ray gives the processes the driver starts (GCS, raylet, dashboard, monitors) a parent-death
signal, but the raylet's own children do not get one in time. After a SIGKILLed driver the dashboard agent and
the runtime-env agent notice their dead raylet within ~2 s, then spend 60 s (a hard-coded timeout) trying to
report it to the dead GCS, ports open. Ray has no option to shorten that, hence this process.

What it does: it learns of the driver's exit from EOF on its stdin (a pipe only the driver holds). Until then it
records, every second, the driver's descendants whose environment carries `ENV_NAME=TOKEN` (every process of
this Ray start inherits it) and their descendants, as pid -> start time so that a reused pid is never killed.
Ray renames its agents, which makes their environment unreadable: they are caught as descendants. At EOF it
SIGKILLs those still alive, plus any process anywhere whose environment carries the token, and exits.

It imports the standard library only (it starts with `-S`, before the driver has imported anything) and runs in
its own session, so Ctrl-C and group kills aimed at the driver pass it by. `start` and `stop` are the driver's
side (`harness.cluster.local_ray`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

POLL_S = 1.0


def process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, start time in clock ticks since boot), from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()  # the command name may hold spaces and ')'
        except (OSError, IndexError):
            continue
        out[int(name)] = (int(fields[1]), fields[19])
    return out


def carries(pid: int, needle: bytes) -> bool:
    """Whether the process's environment holds the entry `needle` (b"NAME=value")."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read().split(b"\0")
    except OSError:
        return False


def descendants(procs: dict[int, tuple[int, bytes]], roots: list[int]) -> set[int]:
    """`roots` and every process below them."""
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(roots), list(roots)
    while todo:
        for kid in kids.get(todo.pop(), ()):
            if kid not in seen:
                seen.add(kid)
                todo.append(kid)
    return seen


def watch(driver: int, needle: bytes, *, stdin_fd: int = 0) -> set[int]:
    """Record the driver's Ray processes until `stdin_fd` reaches EOF; return the pids to kill then."""
    me = os.getpid()
    known: dict[int, bytes] = {}
    while True:
        ready = select.select([stdin_fd], [], [], POLL_S)[0]
        if ready and not os.read(stdin_fd, 4096):
            break
        procs = process_table()
        roots = [p for p in descendants(procs, [driver]) if p not in (driver, me) and carries(p, needle)]
        known.update({p: procs[p][1] for p in descendants(procs, roots) if p in procs})
    procs = process_table()
    doomed = {p for p, start in known.items() if p in procs and procs[p][1] == start}
    doomed |= {p for p in procs if carries(p, needle)}
    return doomed - {me, driver}


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    driver, token, env_name = int(argv[0]), argv[1], argv[2]
    for pid in watch(driver, f"{env_name}={token}".encode()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return 0


# ------------------------------------------------------------------------------------------- driver side


def start(token: str, env_name: str) -> subprocess.Popen:
    """Start the watchdog for this process (the driver); closing its stdin (`stop`) or dying ends it."""
    env = {k: v for k, v in os.environ.items() if k != env_name}  # it must not match its own needle
    # -S: no site-packages, the standard library only (fast, and nothing the venv installs runs in it)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # the repository root
    return subprocess.Popen(
        [sys.executable, "-S", "-m", "harness.cluster.watchdog", str(os.getpid()), token, env_name],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True, close_fds=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close the watchdog's pipe: it kills what is left of its Ray and exits."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
