"""How the harness starts Ray: join a cluster (`--address`), or start a local Ray that listens on loopback only,
exports no metrics, takes free ports, and leaves no orphans (`harness.cluster.watchdog`).

What a local Ray binds (measured on Ray 2.60, see tests/harness/test_harness_network.py), and why each setting
is here rather than one of Ray's own options:
- Node IP 127.0.0.1. `ray.init(_node_ip_address="127.0.0.1")` does not give it: `ray.init` swaps a loopback
  address for the machine's routable one (`services.resolve_ip_for_localhost`), and every gRPC server (GCS,
  raylet, core workers), the dashboard agent and the runtime-env agent then listen on all interfaces or on that
  address. Ray picks loopback only when `services.get_node_ip_address()` answers 127.0.0.1, which it does when its
  "local-only" switch (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the macOS/Windows default) is off; Ray's children
  read the environment variable, the driver reads `ray_constants.ENABLE_RAY_CLUSTER`, fixed at import
  (`_loopback_node_ip`). Each server then binds 127.0.0.1 (the C++ ones as `::ffff:127.0.0.1`).
- Metrics collection off (`_system_config={"enable_metrics_collection": False}`): no Prometheus endpoint of
  the dashboard agent, no metrics from workers. Usage stats off (`RAY_USAGE_STATS_ENABLED=0`).
- Two Prometheus servers Ray starts whatever that setting says: the autoscaler monitor's and the dashboard's. They
  bind 127.0.0.1, at ports that Ray fixes (44217, 44227) unless its `AUTOSCALER_METRIC_PORT` /
  `DASHBOARD_METRIC_PORT` environment variables say otherwise; `ray.init` has no argument for them. A second
  local Ray on the host then logs "Address already in use" for both. We give each start two free ports.
- The dashboard, on 127.0.0.1 at a free port: Ray Train V2's `PlacementGroupCleaner` needs its state API (see
  `init_local_ray`). Its state-API client does not ask the cluster it runs in where the dashboard is: it reads
  `RAY_API_SERVER_ADDRESS` / `RAY_ADDRESS`, else looks for GCS processes on the machine and gives up when it
  finds several ("Found multiple active Ray instances"), so `RAY_API_SERVER_ADDRESS` points it at ours.
- Always a Ray of its own (`ray.init(address="local")`): without an address, `ray.init` joins the cluster a
  `ray start` on this machine recorded in `<tmp>/ray/ray_current_cluster`, and then refuses our `_system_config`
  and CPU counts (a raw "When connecting to an existing cluster ..." ValueError) or runs on someone else's Ray.
- Gloo/NCCL bootstrap sockets of a local DDP run on the loopback interface (`GLOO_SOCKET_IFNAME=lo`,
  `NCCL_SOCKET_IFNAME=lo`, unless already set): torch's own variables, read by torch, not Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from harness.cluster import watchdog

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
OWNER_ENV = "ENHANCE_RAY_OWNER"  # set in every process a local Ray of this harness starts (value: a per-start token)


@dataclass(frozen=True)
class LocalRay:
    """What `init_local_ray` started: Ray's session folder, the token its processes carry, the watchdog, and
    the loopback ports it chose (`dashboard_url` is where to watch it)."""

    session_dir: str
    owner_token: str
    watchdog_pid: int | None
    dashboard_url: str | None = None
    metrics_ports: tuple[int, int] = ()  # autoscaler monitor, dashboard (Prometheus, loopback)


_watchdog: subprocess.Popen | None = None
_local: LocalRay | None = None


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
                   log_to_driver: bool = True, watch: bool = True) -> LocalRay:
    """Start a Ray for this machine only (see the module's docstring), with a watchdog (Linux) that removes Ray's
    processes when this driver dies.

    `num_gpus=1` on a machine without one makes Ray believe in a GPU (tests of the GPU arithmetic).

    The dashboard is on by default because Ray Train V2 needs it: each run starts a detached
    `PlacementGroupCleaner` that polls the state API (a dashboard service) for its controller and removes the
    run's placement group once the controller is dead. When a sweep's trial is stopped (ASHA, a stopper), its
    controller dies with it. Measured on Ray 2.60 with a Tune trial stopped after 3 reports: without the dashboard
    the cleaner's query fails, it retries forever, and the worker's placement group (its CPUs/GPUs) was still
    reserved 45 s later; with it, freed within 1.5 s (tests/harness/test_harness_network.py checks this).
    `include_dashboard=False` is for plain Ray use only (no Ray Train)."""
    global _local, _watchdog
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; call ray.shutdown() first")
    if _watchdog is not None and _watchdog.poll() is None:
        # the previous local Ray was shut down (a bare ray.shutdown()): its stragglers go now, before the new Ray
        # starts, so that the old watchdog never sees (and at its end kills) a process of the new one
        watchdog.stop(_watchdog)
        _watchdog = None
    token = uuid.uuid4().hex
    started = _start_watchdog(token) if watch else None
    metrics_ports = (free_loopback_port(), free_loopback_port())
    env = {
        OWNER_ENV: token,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # for Ray's children: their node IP lookups answer loopback
        "RAY_USAGE_STATS_ENABLED": "0",
        "AUTOSCALER_METRIC_PORT": str(metrics_ports[0]),
        "DASHBOARD_METRIC_PORT": str(metrics_ports[1]),
    }
    if sys.platform.startswith("linux") and os.path.exists("/sys/class/net/lo"):
        env.update({k: "lo" for k in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME") if k not in os.environ})
    dashboard_port = None
    if include_dashboard:
        dashboard_port = free_loopback_port()
        env["RAY_API_SERVER_ADDRESS"] = f"http://{LOOPBACK}:{dashboard_port}"
    try:
        with scoped_environ(env, drop=("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")), _loopback_node_ip():
            context = ray.init(
                address="local",  # start our own: never join a `ray start` cluster recorded in <tmp>/ray
                num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources) if resources else None,
                include_dashboard=include_dashboard, dashboard_host=LOOPBACK,
                **({"dashboard_port": dashboard_port} if dashboard_port else {}),
                configure_logging=False, log_to_driver=log_to_driver,
                _system_config={"enable_metrics_collection": False},
            )
    except BaseException:
        if started is not None:
            watchdog.stop(started)
        raise
    if dashboard_port and context.dashboard_url != f"{LOOPBACK}:{dashboard_port}":
        log.warning("Ray's dashboard came up at %s, not at %s:%d (port taken meanwhile): Ray Train may not free the "
                    "resources of stopped trials", context.dashboard_url, LOOPBACK, dashboard_port)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:  # Ray changed how it picks the node IP: say so rather than claim loopback
        log.warning("local Ray advertises %s, not %s: its servers may listen beyond loopback", node_ip, LOOPBACK)
    _watchdog = started
    try:  # Ray has no public accessor for the session folder
        session_dir = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:
        session_dir = ""
    url = f"http://{context.dashboard_url}" if context.dashboard_url else None
    _local = LocalRay(session_dir=session_dir, owner_token=token,
                      watchdog_pid=started.pid if started is not None else None, dashboard_url=url,
                      metrics_ports=metrics_ports)
    if url:
        log.info("local Ray: dashboard at %s (loopback only)", url)
    return _local


def current() -> LocalRay | None:
    """The local Ray this process started (None: none, or a cluster joined with `--address`)."""
    return _local


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it; it may be taken again before Ray binds it, hence the
    dashboard check in `init_local_ray`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def shutdown_ray() -> None:
    """`ray.shutdown()`, then let the watchdog remove whatever of the local Ray survived it."""
    global _watchdog, _local
    import ray

    ray.shutdown()
    if _watchdog is not None:
        watchdog.stop(_watchdog)
    _watchdog, _local = None, None


def _start_watchdog(token: str) -> subprocess.Popen | None:
    if not sys.platform.startswith("linux"):  # it reads /proc
        log.info("no orphan watchdog on %s: Ray's agents may outlive a killed driver by about a minute",
                 sys.platform)
        return None
    return watchdog.start(token, OWNER_ENV)


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str], *, drop: tuple[str, ...] = ()) -> Iterator[None]:
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
    """Ray's node-IP lookup in this process answers 127.0.0.1 while Ray starts (its macOS/Windows behaviour).

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, at import, into `ray_constants.ENABLE_RAY_CLUSTER`;
    `services.get_node_ip_address()` consults that constant each call. The driver has imported Ray long before,
    so the constant is switched here and restored after: Ray has no argument that does it."""
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
