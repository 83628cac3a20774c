"""Fixtures shared by the test folders: the data root, tiny checkpoints, and one real tiny sweep, interrupted
and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# Under pytest-xdist (`ENHANCE_TEST_WORKERS=N bash scripts/dev.sh test`: `-n N --dist loadscope`), the tests of
# one module run on one worker, so that a module-scoped fixture (a real study, a Ray cluster) is built once. A
# session fixture is built once per worker that uses it: the one test outside its module that uses the costly
# `resumed_sweep` (a real sweep, interrupted and resumed) is sent to the worker of the module that builds it.
SCOPE_OF = {"tests/reports/test_reports_browser.py::test_report_renders_offline": "tests/harness/test_harness_sweep.py"}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown (and unused) without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SCOPE_OF.get(nodeid.split("[")[0]) or nodeid.split("::", 1)[0]

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def _shared_data_in_ci() -> None:
    """Data-dependent tests skip on a machine without the shared data; in CI that would hide them, so there
    a missing data folder fails the run instead."""
    if os.environ.get("CI"):
        from benchmarks.datasets import data_root

        root = data_root()
        assert (root / "Set5").is_dir() and (root / "train" / "T91").is_dir(), (
            f"CI needs the shared data at {root} (set ENHANCE_DATA)")


@pytest.fixture(scope="session", autouse=True)
def _session_pretrain_cache(tmp_path_factory: pytest.TempPathFactory):
    """The pretraining cache (harness.cache, $ENHANCE_CACHE) of the session's own fixtures: never the results
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
    """The shared data (`benchmarks.datasets.data_root`: $ENHANCE_DATA, else ../shared/data); tests that need it
    skip without it (and fail in CI, see above)."""
    from benchmarks.datasets import data_root as resolve

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


@dataclass(frozen=True)
class ResumedSweep:
    out: Path  # the results folder
    finished_before_interrupt: list[str]  # trial ids Tune had finished when the driver got Ctrl-C
    resume_stdout: str


def _finished_trials(out: Path) -> list[str]:
    """GAN trials done for Tune: with one trial at a time, a trial is done once the next one has started; the
    done one holds the checkpoint of its last step. (The shared pretraining runs before them.)"""
    trials = sorted((out / "trials").glob("*")) if (out / "trials").is_dir() else []
    runs = [d for d in trials if (d / "starts.log").is_file() and not d.name.endswith("-pretrain")]
    if len(runs) < 2:
        return []
    done = []
    for run in runs:
        try:
            train = json.loads((run / "config.json").read_text())["config"]["train"]
        except (OSError, ValueError, KeyError):
            continue
        if (run / f"checkpoint_{train['warmup_steps'] + train['gan_steps']:07d}").is_dir():
            done.append(run.name)
    return sorted(done)


@pytest.fixture(scope="session")
def resumed_sweep(tmp_path_factory: pytest.TempPathFactory) -> ResumedSweep:
    """A real tiny sweep through the CLI: v3 and RaGAN x two adversarial weights, 6 steps each (3 of shared
    pixel-loss pretraining, run once for all four, then 3 GAN steps), one trial at a time, scored on Set5;
    interrupted with Ctrl-C once its first GAN trial has finished, then completed with `--resume`. v3 and RaGAN
    use untrained VGG features by explicit opt-in (these machines have no ImageNet weights), so their results
    carry that flag. Run once per test session; the report and resume tests read it."""
    from benchmarks.datasets import data_root

    root = data_root()
    if not (root / "Set5").is_dir():
        pytest.skip(f"shared test data not found at {root} (set ENHANCE_DATA)")
    out = tmp_path_factory.mktemp("sweep") / "results"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "harness.sweep", "--presets", "v3,ragan", "--grid", "loss.adv_weight=0.001,0.005",
           "--steps", "6", "--datasets", "set5", "--save-images", "set5", "--vgg-fallback", "untrained",
           "--scheduler", "none", "--max-concurrent", "1", "--out", str(out), "--data-root", str(root)]
    log = out.parent / "driver.log"  # a file, not a pipe: nobody reads a pipe while we wait, and it fills
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and not _finished_trials(out):
        if driver.poll() is not None:
            pytest.fail("sweep driver exited early:\n" + log.read_text()[-4000:])
        time.sleep(0.5)
    finished = _finished_trials(out)
    assert finished, "no trial finished within 400 s"
    os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: Tune saves its state and the driver exits
    try:
        code = driver.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        code = driver.wait()
    assert not (out / "trials.parquet").exists(), "the sweep finished before it could be interrupted"
    assert code == 130, log.read_text()[-4000:]  # the driver says it was interrupted
    resumed = subprocess.run([sys.executable, "-m", "harness.sweep", "--resume", str(out)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-4000:]
    return ResumedSweep(out=out, finished_before_interrupt=finished, resume_stdout=resumed.stdout)


@pytest.fixture(scope="session")
def sweep_results(resumed_sweep: ResumedSweep) -> Path:
    return resumed_sweep.out
