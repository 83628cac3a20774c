"""How the harness starts Ray and sizes its runs: a local Ray that listens on loopback only and leaves no
orphans, the fail-fast resource check, and how many sweep trials fit at once (fractional GPUs included).

Local Ray, what it binds (measured on Ray 2.60, see tests/harness/test_harness_network.py):
- `ray.init(_node_ip_address="127.0.0.1")` does not give a loopback node: `ray.init` swaps a loopback address for
  the machine's routable one (`services.resolve_ip_for_localhost`), and every gRPC server (GCS, raylet, core
  workers), the dashboard agent and the runtime-env agent then listen on all interfaces or on that address.
  Ray picks loopback only when `services.get_node_ip_address()` answers 127.0.0.1, which it does when Ray's own
  "local-only" switch is off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, `ray_constants.ENABLE_RAY_CLUSTER`, the
  macOS/Windows default). `init_local_ray` turns it off while Ray starts: the node IP is then 127.0.0.1 and each
  of those servers binds 127.0.0.1 (the C++ ones as `::ffff:127.0.0.1`).
- Metrics collection is off (`enable_metrics_collection=False`): the dashboard agent exports no Prometheus
  endpoint and workers send no metrics. Usage stats are off.
- The dashboard stays on, on 127.0.0.1: Ray Train V2's `PlacementGroupCleaner` asks the state API (served by
  the dashboard) whether a run's controller is alive; see `init_local_ray` for why it matters here.
- Gloo/NCCL bootstrap sockets of a local DDP run use the loopback interface (`GLOO_SOCKET_IFNAME=lo`,
  `NCCL_SOCKET_IFNAME=lo`, unless already set).

Orphans: Ray gives the processes the driver starts (GCS, raylet, dashboard, monitors) a parent-death signal, but
the raylet's own children do not get one in time: after a SIGKILLed driver the dashboard agent and runtime-env
agent notice their dead raylet within ~2 s, then spend 60 s (a hard-coded timeout) trying to report it to the
dead GCS, ports open. `init_local_ray` starts a small watchdog (stdlib only, its own session) that waits for the
driver to exit, then SIGKILLs the Ray processes this driver started: those whose environment carries this
start's `ENHANCE_RAY_OWNER` token, plus their descendants as last seen (the agents' environment is unreadable
after Ray renames them). Linux only; elsewhere the watchdog is not started.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
OWNER_ENV = "ENHANCE_RAY_OWNER"  # set in every process a local Ray of this harness starts (value: a per-start token)
# What a sweep's Tune trial (the function that only drives a TorchTrainer) holds: one byte of Ray's "memory"
# resource. Tune places every trial in a placement group and a bundle cannot be empty; holding CPU instead
# (0.001) made 2 one-CPU trials need 2.002 CPUs, so a 2-core machine ran one trial at a time (measured: two
# Tune trials of 4-s TorchTrainer runs took 41.7 s with 0.001 CPU, 30.6 s with this). `max_concurrent_trials`
# bounds the number of drivers (Ray Train's Tune guide).
TRIAL_DRIVER_RESOURCES = {"memory": 1}
MIN_PER_GPU_BATCH = 8
_UNITS = 10_000  # Ray accounts resources in units of 1/10000 (ray._raylet.RESOURCE_UNIT_SCALING)


@dataclass(frozen=True)
class LocalRay:
    """What `init_local_ray` started: Ray's session folder, the token its processes carry, the watchdog."""

    session_dir: str
    owner_token: str
    watchdog_pid: int | None


_watchdog: subprocess.Popen | None = None
_local: LocalRay | None = None


# -------------------------------------------------------------------------------------------- starting Ray


def init_ray(address: str | None, *, num_cpus: int | None = None, num_gpus: float | None = None,
             resources: Mapping[str, float] | None = None) -> LocalRay | None:
    """Join the Ray cluster at `address` (e.g. "auto"), or start a local Ray (`init_local_ray`) when it is empty.

    Joining a cluster binds nothing new on this machine beyond the driver's own gRPC server; how the cluster
    listens is the cluster's configuration (`ray start --node-ip-address/--dashboard-host`)."""
    import ray

    if ray.is_initialized():
        return _local
    if address:
        if num_cpus is not None or num_gpus is not None or resources:
            raise ValueError("num_cpus/num_gpus/resources describe a local Ray; a cluster has its own")
        ray.init(address=address)
        return None
    return init_local_ray(num_cpus, num_gpus=num_gpus, resources=resources)


def init_local_ray(num_cpus: int | None = None, *, num_gpus: float | None = None,
                   resources: Mapping[str, float] | None = None, include_dashboard: bool = True,
                   log_to_driver: bool = True, watchdog: bool = True) -> LocalRay:
    """Start a Ray for this machine only: every server Ray lets us place on loopback is there, metrics export and
    usage stats are off, and a watchdog removes Ray's processes when this driver dies.

    `num_gpus=1` on a machine without one makes Ray believe in a GPU (tests of the GPU arithmetic).

    The dashboard (127.0.0.1, a free port) is on by default because Ray Train V2 needs it: each run starts a
    detached `PlacementGroupCleaner` that polls the state API (a dashboard service) for its controller and removes
    the run's placement group once the controller is dead. When a sweep's trial is stopped (ASHA, a stopper), its
    controller dies with it. Measured on Ray 2.60 with a Tune trial stopped after 3 reports: without the dashboard
    the cleaner's query fails, it retries forever, and the worker's placement group (its CPUs/GPUs) was still
    reserved 45 s later; with it, freed within 1.5 s (tests/harness/test_harness_network.py checks this).
    `include_dashboard=False` is for plain Ray use only (no Ray Train)."""
    global _local, _watchdog
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; call ray.shutdown() first")
    token = uuid.uuid4().hex
    started = _start_watchdog(token) if watchdog else None
    env = {
        OWNER_ENV: token,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # for Ray's children: their node IP lookups answer loopback
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if sys.platform.startswith("linux") and os.path.exists("/sys/class/net/lo"):
        env.update({k: "lo" for k in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME") if k not in os.environ})
    dashboard_port = None
    if include_dashboard:
        # Ray's state-API client (the PlacementGroupCleaner's) does not ask the cluster it runs in for the
        # dashboard: it reads RAY_API_SERVER_ADDRESS / RAY_ADDRESS, else looks for GCS processes on the machine
        # and gives up when it finds several ("Found multiple active Ray instances"). Point it at ours.
        dashboard_port = _free_loopback_port()
        env["RAY_API_SERVER_ADDRESS"] = f"http://{LOOPBACK}:{dashboard_port}"
    try:
        with _scoped_environ(env, drop=("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")), _loopback_node_ip():
            context = ray.init(
                num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources) if resources else None,
                include_dashboard=include_dashboard, dashboard_host=LOOPBACK,
                **({"dashboard_port": dashboard_port} if dashboard_port else {}),
                configure_logging=False, log_to_driver=log_to_driver,
                _system_config={"enable_metrics_collection": False},
            )
    except BaseException:
        if started is not None:
            _stop_watchdog(started)
        raise
    if dashboard_port and context.dashboard_url != f"{LOOPBACK}:{dashboard_port}":
        log.warning("Ray's dashboard came up at %s, not at %s:%d (port taken meanwhile): Ray Train may not free the "
                    "resources of stopped trials", context.dashboard_url, LOOPBACK, dashboard_port)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # Ray changed how it picks the node IP: say so rather than claim loopback
        log.warning("local Ray advertises %s, not %s: its servers may listen beyond loopback", node_ip, LOOPBACK)
    if _watchdog is not None and _watchdog.poll() is None:
        _stop_watchdog(_watchdog)  # the previous local Ray was shut down; its stragglers go now
    _watchdog = started
    try:  # Ray has no public accessor for the session folder
        session_dir = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:
        session_dir = ""
    _local = LocalRay(session_dir=session_dir, owner_token=token,
                      watchdog_pid=started.pid if started is not None else None)
    return _local


def _free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def shutdown_ray() -> None:
    """`ray.shutdown()`, then let the watchdog remove whatever of the local Ray survived it."""
    global _watchdog, _local
    import ray

    ray.shutdown()
    if _watchdog is not None:
        _stop_watchdog(_watchdog)
    _watchdog, _local = None, None


def current_local_ray() -> LocalRay | None:
    return _local


@contextlib.contextmanager
def _scoped_environ(values: Mapping[str, str], *, drop: tuple[str, ...] = ()) -> Iterator[None]:
    """Set (and drop) environment variables while Ray starts, so Ray's processes inherit them; the driver's own
    environment is restored afterwards. A local run ignores RAY_ADDRESS (use --address for a cluster)."""
    saved = {k: os.environ.get(k) for k in (*values, *drop)}
    for key in drop:
        if os.environ.pop(key, None) is not None:
            log.info("local Ray: ignoring %s (pass --address to use a cluster)", key)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _loopback_node_ip() -> Iterator[None]:
    """Ray's node-IP lookup answers 127.0.0.1 while Ray starts (its macOS/Windows behaviour).

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, at import, into `ray_constants.ENABLE_RAY_CLUSTER`;
    `services.get_node_ip_address()` consults that constant each call. The driver has imported Ray long before,
    so the constant is switched here and restored after."""
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        log.warning("this Ray has no ray_constants.ENABLE_RAY_CLUSTER: cannot pin the node IP to loopback")
        yield
        return
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


# ------------------------------------------------------------------------------------------------ watchdog

# Runs as `python -c`, stdlib only, in its own session (Ctrl-C and group kills aimed at the driver pass it by).
# argv: driver pid, owner token. It learns of the driver's exit from EOF on its stdin (a pipe only the driver
# holds). Until then it records, every second, the driver's descendants whose environment carries the token and
# their descendants (pid -> start time, so a reused pid is never killed); then it SIGKILLs those still alive,
# plus any process anywhere whose environment carries the token.
_WATCHDOG_SOURCE = r"""
import os, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
driver, token = int(sys.argv[1]), sys.argv[2].encode()
needle, me = b"%s=%s" % (sys.argv[3].encode(), token), os.getpid()

def table():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            out[int(name)] = (int(fields[1]), fields[19])  # ppid, start time (clock ticks since boot)
    return out

def marked(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:
        return False

def below(procs, roots):
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(roots), list(roots)
    while todo:
        for kid in kids.get(todo.pop(), ()):
            if kid not in seen:
                seen.add(kid)
                todo.append(kid)
    return seen

known = {}
while True:
    ready = select.select([0], [], [], 1.0)[0]
    if ready and not os.read(0, 4096):
        break
    procs = table()
    ray_roots = [p for p in below(procs, [driver]) if p not in (driver, me) and marked(p)]
    known.update({p: procs[p][1] for p in below(procs, ray_roots) if p in procs})
procs = table()
doomed = {p for p, start in known.items() if p in procs and procs[p][1] == start}
doomed |= {p for p in procs if marked(p)}
doomed -= {me, driver}
for pid in doomed:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
"""


def _start_watchdog(token: str) -> subprocess.Popen | None:
    if not sys.platform.startswith("linux"):
        log.info("no orphan watchdog on %s: Ray's agents may outlive a killed driver by about a minute",
                 sys.platform)
        return None
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    return subprocess.Popen(
        [sys.executable, "-S", "-c", _WATCHDOG_SOURCE, str(os.getpid()), token, OWNER_ENV],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True, close_fds=True,
    )


def _stop_watchdog(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close the watchdog's pipe: it sweeps what is left of its Ray and exits."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


# ---------------------------------------------------------------------------------------- resource sizing


def local_resources() -> dict[str, float]:
    """What a local Ray on this machine will offer: its CPUs and CUDA GPUs (before Ray starts)."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())


def _units(x: float) -> int:
    return round(x * _UNITS)


def check_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float, batch_size: int,
                    available: Mapping[str, float]) -> str | None:
    """Fail fast (ValueError) on a request Ray could never place; return the per-GPU batch warning, if any.

    A request that does not fit would otherwise stay PENDING forever with only a warning from Ray.
    GPUs per worker may be a fraction (below 1: several workers share a GPU) or a whole number."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if cpus_per_worker < 0 or gpus_per_worker < 0:
        raise ValueError(f"resources per worker cannot be negative: {cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU")
    if gpus_per_worker and (_units(gpus_per_worker) == 0 or abs(_units(gpus_per_worker) / _UNITS - gpus_per_worker)
                            > 1e-12):
        raise ValueError(f"--gpus-per-worker {gpus_per_worker!r}: Ray counts GPUs in steps of 0.0001")
    if gpus_per_worker > 1 and _units(gpus_per_worker) % _UNITS:
        raise ValueError(f"--gpus-per-worker {gpus_per_worker:g}: above 1 it must be a whole number of GPUs "
                         f"(Ray places a fraction only within one GPU)")
    if 0 < gpus_per_worker < 1 and workers > 1:
        raise ValueError(f"--gpus-per-worker {gpus_per_worker:g} with {workers} workers: a fractional GPU is for "
                         f"packing several single-worker runs on one GPU; DDP ranks of one run may land on the "
                         f"same GPU, which NCCL refuses. Use 1 worker per run, or whole GPUs per worker")
    need_cpu = workers * cpus_per_worker
    need_gpu = workers * gpus_per_worker
    have_cpu, have_gpu = float(available.get("CPU", 0)), float(available.get("GPU", 0))
    if _units(need_cpu) > _units(have_cpu) or _units(need_gpu) > _units(have_gpu):
        raise ValueError(
            f"impossible resource request: {workers} worker(s) x ({cpus_per_worker:g} CPU, {gpus_per_worker:g} GPU) "
            f"needs {need_cpu:g} CPU / {need_gpu:g} GPU, the cluster has {have_cpu:g} CPU / {have_gpu:g} GPU")
    if batch_size % workers:
        raise ValueError(f"data.batch_size {batch_size} is not divisible by {workers} workers")
    return per_gpu_batch_warning(batch_size, workers, gpus_per_worker)


def check_run(spec: Any, available: Mapping[str, float]) -> str | None:
    """`check_resources` for a `RunSpec` (workers, cpus_per_worker, gpus_per_worker, cfg.data.batch_size); logs
    and returns the per-GPU batch warning, if any."""
    warning = check_resources(spec.workers, spec.cpus_per_worker, spec.gpus_per_worker, spec.cfg.data.batch_size,
                              available)
    if warning:
        log.warning("warning: %s", warning)
    return warning


def per_gpu_batch_warning(batch_size: int, workers: int, gpus_per_worker: float) -> str | None:
    """A warning when DDP over GPUs leaves each GPU a batch below MIN_PER_GPU_BATCH (launch-bound, and batch
    statistics from a handful of images); None for CPU runs, a single worker, or a large enough batch."""
    if gpus_per_worker <= 0 or workers <= 1:
        return None
    per_gpu = batch_size / workers
    if per_gpu >= MIN_PER_GPU_BATCH:
        return None
    return (f"DDP over {workers} GPU workers leaves a batch of {per_gpu:g} per GPU (data.batch_size {batch_size}): "
            f"below {MIN_PER_GPU_BATCH}, the GPUs wait on kernel launches and per-GPU batch statistics are noisy. "
            f"Raise data.batch_size to at least {MIN_PER_GPU_BATCH * workers} or use fewer workers")


def plan_concurrency(available: Mapping[str, float], per_trial_cpu: float, per_trial_gpu: float,
                     max_concurrent: int = 0, *, driver_cpu: float = TRIAL_DRIVER_RESOURCES.get("CPU", 0.0)
                     ) -> tuple[int, str]:
    """How many sweep trials run at once, and a one-line account of it.

    A trial holds `driver_cpu` for its Tune function plus its workers' `per_trial_cpu`/`per_trial_gpu`. A
    fractional GPU (below 1) is packed within one GPU, `floor(1 / gpu)` trials per GPU; whole GPUs are counted
    against the total. `max_concurrent` (> 0) caps the result. At least 1 (check_resources refuses what cannot
    fit at all)."""
    have_cpu, have_gpu = float(available.get("CPU", 0)), float(available.get("GPU", 0))
    cpu_units = _units(per_trial_cpu + driver_cpu)
    by_cpu = _units(have_cpu) // cpu_units if cpu_units else math.inf
    parts = [f"{per_trial_cpu + driver_cpu:g} CPU"]
    if per_trial_gpu <= 0:
        by_gpu = math.inf
    elif per_trial_gpu < 1:
        share = _UNITS // _units(per_trial_gpu)
        by_gpu = share * math.floor(have_gpu + 1e-9)
        parts.append(f"{per_trial_gpu:g} GPU: {share} trials share each GPU ({per_trial_gpu:g} GPU per worker)")
    else:
        by_gpu = _units(have_gpu) // _units(per_trial_gpu)
        parts.append(f"{per_trial_gpu:g} GPU")
    fit = min(by_cpu, by_gpu)
    limit = "CPUs" if by_cpu <= by_gpu else "GPUs"
    if fit == math.inf:
        fit, limit = 1, "no resources asked"
    n = max(int(fit), 1)
    text = (f"{n} trial(s) at once; each holds {' + '.join(parts)}; cluster {have_cpu:g} CPU / {have_gpu:g} GPU "
            f"(limited by {limit})")
    if max_concurrent and max_concurrent < n:
        n = max_concurrent
        text = f"{n} trial(s) at once (--max-concurrent); " + text.split("; ", 1)[1]
    return n, text
