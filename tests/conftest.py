"""Fixtures shared by the test folders: the data root, tiny checkpoints, one step-time cache, the session's one
in-process Ray (`session_ray`, `local_ray`), and the session's real tiny study, interrupted and resumed
(`tiny_study`)."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from real_runs import TinyStudy, build_tiny_study

REPO = Path(__file__).resolve().parents[1]


# Under pytest-xdist (`ENHANCE_TEST_WORKERS=N bash scripts/dev.sh test`: `-n N --dist loadscope`), tests go to
# workers by module (a module fixture is built once), and every module that runs real things (a test marked slow:
# Ray, training, a browser) is one scope: those run one after another on one worker, sharing the session's tiny
# study and Ray, while the unit tests run beside them (two of them at once starved each other on 2 cores).
REAL_RUNS = "real runs (modules with slow tests)"


@functools.cache
def _runs_real_things(module: str) -> bool:
    path = REPO / module
    return path.is_file() and "mark.slow" in path.read_text()


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown (and unused) without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return REAL_RUNS if _runs_real_things(module) else module

    return ModuleScheduling(config, log)


# In-process Ray: the session's one (tests/harness/conftest.py `session_ray`, behind `local_ray`) and the module
# fixtures that start a Ray of another shape (they shut the session's down first).
SESSION_RAY_FIXTURES = ("session_ray", "local_ray")
OWN_RAY_FIXTURES = ("fake_gpu_ray",)


def ray_group(item: pytest.Item) -> int:
    """0: no Ray in this process; 1: the session's Ray; 2: a Ray of its own."""
    names = getattr(item, "fixturenames", ())
    return 2 if any(n in names for n in OWN_RAY_FIXTURES) else 1 if any(n in names for n in SESSION_RAY_FIXTURES) else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that use the session's Ray run one after another, after every test that needs no Ray in this
    process (an in-process CLI call must find none up, and CLI subprocesses start their own), and before the
    modules that start a Ray of another shape: one Ray start for all of them. Otherwise the order is kept."""
    items[:] = sorted(items, key=ray_group)  # stable


class SessionRay:
    """The session's in-process Ray, started the product's way (`harness.cluster.local_ray.init_local_ray`: 2 CPUs,
    services on loopback, the dashboard on, as Ray Train V2 needs it), once, on first use. A module that needs a
    Ray of another shape (fake GPUs) shuts it down first; the next test that asks for it starts it again. The
    CLIs whose `main` a fixture runs in this process (real_runs.run_main: the tiny study's and the Pareto search's
    resumes, the cache module's sweeps) join it. The tests that use it run one after another, after the tests that
    need no Ray in this process (`pytest_collection_modifyitems`: an error path's in-process CLI call must not find
    a Ray already up)."""

    def __init__(self) -> None:
        self.info = None
        self.starts = 0

    def get(self):
        """The running session Ray's `LocalRay` (what it started: session folder, owner token, ports)."""
        import ray

        from harness.cluster.local_ray import current, init_local_ray

        if not ray.is_initialized() or current() is not self.info:
            if ray.is_initialized():
                from harness.cluster.local_ray import shutdown_ray

                shutdown_ray()
            self.info = init_local_ray(2, log_to_driver=False)
            self.starts += 1
        return self.info

    def close(self) -> None:
        import ray

        from harness.cluster.local_ray import shutdown_ray

        if ray.is_initialized():
            shutdown_ray()
        self.info = None


@pytest.fixture(scope="session")
def session_ray() -> Iterator[SessionRay]:
    ray = SessionRay()
    try:
        yield ray
    finally:
        ray.close()


@pytest.fixture
def local_ray(session_ray: SessionRay):
    """The session's Ray (`SessionRay`), up; returns the `ray` module. Never shut it down in a test."""
    import ray

    session_ray.get()
    return ray


@pytest.fixture(scope="session", autouse=True)
def _shared_data_in_ci() -> None:
    """Data-dependent tests skip on a machine without the shared data; in CI that would hide them, so there
    a missing data folder fails the run instead."""
    if os.environ.get("CI"):
        from benchmarks.scoring.datasets import data_root

        root = data_root()
        assert (root / "Set5").is_dir() and (root / "train" / "T91").is_dir(), (
            f"CI needs the shared data at {root} (set ENHANCE_DATA)")


@pytest.fixture(scope="session", autouse=True)
def _session_pretrain_cache(tmp_path_factory: pytest.TempPathFactory):
    """The pretraining cache (harness.sweeps.cache, $ENHANCE_CACHE) of the session's own fixtures: never the results
    root's (a test would then find, or leave, a real run's pretrainings)."""
    yield from _scoped_cache(tmp_path_factory, "pretrain-cache-session")


@pytest.fixture(scope="module", autouse=True)
def _module_pretrain_cache(tmp_path_factory: pytest.TempPathFactory):
    """A cache per test module (its module-scoped fixtures): a study of one module never starts from a
    pretraining that another module's run left in the cache."""
    yield from _scoped_cache(tmp_path_factory, "pretrain-cache-module")


@pytest.fixture(autouse=True)
def _test_pretrain_cache(tmp_path_factory: pytest.TempPathFactory):
    """... and one per test."""
    yield from _scoped_cache(tmp_path_factory, "pretrain-cache")


def _scoped_cache(tmp_path_factory: pytest.TempPathFactory, name: str):
    saved = os.environ.get("ENHANCE_CACHE")
    os.environ["ENHANCE_CACHE"] = str(tmp_path_factory.mktemp(name))
    yield
    if saved is None:
        os.environ.pop("ENHANCE_CACHE", None)
    else:
        os.environ["ENHANCE_CACHE"] = saved


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data (`benchmarks.scoring.datasets.data_root`: $ENHANCE_DATA, else ../shared/data); tests that need it
    skip without it (and fail in CI, see above)."""
    from benchmarks.scoring.datasets import data_root as resolve

    root = resolve()
    if not (root / "Set5" / "GTmod12").is_dir():
        pytest.skip(f"shared test data not found at {root} (set ENHANCE_DATA)")
    return root


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """make_checkpoint(scale=2, name="ckpt"): a tiny v3 checkpoint folder (random weights) in tmp_path."""
    import torch

    from srgan.checkpoint import save_generator
    from srgan.generator import build_generator
    from srgan.versions import preset

    def make(scale: int = 2, name: str = "ckpt") -> Path:
        cfg = preset("v3-tiny", scale=scale)
        torch.manual_seed(0)
        net = build_generator(cfg.generator, scale=scale).eval()
        return save_generator(net, cfg, tmp_path / name)

    return make


@pytest.fixture(scope="session", autouse=True)
def _shared_step_times(tmp_path_factory: pytest.TempPathFactory):
    """One step-time cache (benchmarks.speed.cost, `$ENHANCE_STEP_TIMES`) for every run of the session, in this process
    and in the CLIs it starts: a network is timed once, not once per results folder. A test of the per-folder
    default unsets it (monkeypatch.delenv)."""
    from benchmarks.speed.cost import CACHE_ENV

    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("step-times"))
    yield
    if saved is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = saved


# Ray Train V2's controller takes a worker's report once per poll of its workers (each worker's report queue holds
# one), every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (default 2 s): a run that reports every step, as the tests' tiny runs
# do (log_every=1), trains one step per poll. A hanging poll is only waited on longer (a worker is declared dead after
# RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S, 10 min), so a short period changes when reports are taken, not what runs.
RAY_TRAIN_POLL_S = "0.2"


@pytest.fixture(scope="session", autouse=True)
def _ray_train_poll():
    """The tests' Ray Train runs, in this process's Ray and in every CLI it starts, poll their workers every
    `RAY_TRAIN_POLL_S` (unless the environment sets it)."""
    name = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    saved = os.environ.get(name)
    os.environ.setdefault(name, RAY_TRAIN_POLL_S)
    yield
    if saved is None:
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory, data_root: Path, session_ray) -> TinyStudy:
    """A real `python -m harness.study --size tiny --seeds 2 --datasets set5` through its CLI: v1, v2, v3, RaGAN
    and ESRGAN x seeds 0 and 1, from two shared pretrainings (SRResNet for v2/v3/RaGAN, RRDB for ESRGAN), scored
    on Set5, with its study tables and report. v3, RaGAN and ESRGAN use untrained VGG features by explicit opt-in
    (no ImageNet weights here), flagged in their results. Interrupted with Ctrl-C once Tune has finished its first
    GAN trial, then finished by `python -m harness.sweep --resume OUT` (the sweep's entry point on a study folder
    finishes the study, 18.6). Built once per session; a copy of the finished folder is kept beside it
    (`pristine`, for `tiny_study_to_damage`)."""
    session_ray.get()  # the resume runs harness.sweep's main in this process (real_runs.run_main)
    return build_tiny_study(tmp_path_factory.mktemp("tiny-study") / "study", data_root)


@pytest.fixture
def tiny_study_to_damage(tiny_study: TinyStudy) -> Iterator[Path]:
    """The session's tiny study, finished, at its own path (a GAN stage's config names its pretraining's folder by
    its absolute path: a copy elsewhere would be another run), for a test to damage and resume; put back as it
    was after the test, for the tests that read `tiny_study`."""
    def restore() -> None:
        shutil.rmtree(tiny_study.out)
        shutil.copytree(tiny_study.pristine, tiny_study.out, symlinks=True)

    try:
        yield tiny_study.out
    finally:
        restore()
