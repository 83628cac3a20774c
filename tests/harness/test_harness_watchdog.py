"""The orphan watchdog (`harness.cluster.watchdog`), without Ray: a driver is SIGKILLed, and the processes that carry
its
token go with it, and so do their children without it (seen as descendants); a process outside both stays."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]

# The driver starts the watchdog, then a marked child (which starts an unmarked grandchild) and an unmarked
# bystander in its own session, prints their pids, and waits to be killed.
DRIVER = """
import os, subprocess, sys, time
from harness.cluster import watchdog
token = sys.argv[1]
dog = watchdog.start(token, "ENHANCE_TEST_OWNER")
sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
# the grandchild's environment lacks the token (as Ray's renamed agents' is unreadable): caught as a descendant
parent = [sys.executable, "-c", "import os, subprocess, sys, time; "
          "env = {k: v for k, v in os.environ.items() if k != 'ENHANCE_TEST_OWNER'}; "
          "p = subprocess.Popen(sys.argv[1:], env=env); print(p.pid, flush=True); time.sleep(120)", *sleeper]
marked = subprocess.Popen(parent, env={**os.environ, "ENHANCE_TEST_OWNER": token}, stdout=subprocess.PIPE, text=True)
grandchild = int(marked.stdout.readline())
bystander = subprocess.Popen(sleeper, start_new_session=True)
print(dog.pid, marked.pid, grandchild, bystander.pid, flush=True)
time.sleep(120)
"""


def test_the_watchdog_kills_the_marked_processes_of_a_killed_driver(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the watchdog reads /proc")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, "tok-" + os.urandom(4).hex()], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, text=True)
    procs: list[psutil.Process] = []
    try:
        dog, marked, grandchild, bystander = (psutil.Process(int(x)) for x in driver.stdout.readline().split())
        procs = [dog, marked, grandchild, bystander]
        assert dog.cmdline()[1:4] == ["-S", "-m", "harness.cluster.watchdog"]  # a real module, stdlib only
        time.sleep(2.5)  # the watchdog looks every second
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                             for p in (dog, marked, grandchild)):
            time.sleep(0.2)
        for proc in (dog, marked, grandchild):
            assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, proc
        assert bystander.is_running() and bystander.status() != psutil.STATUS_ZOMBIE  # not ours to kill
    finally:
        if driver.poll() is None:
            driver.kill()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
