"""Session fixtures shared by the test folders: the results of one real tiny sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sweep_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny sweep (v1 and RaGAN, 6 steps each, scored on Set5), run once per test session through the
    CLI on its own local Ray. RaGAN uses untrained VGG features by explicit opt-in (these machines have no
    ImageNet weights), so its results carry that flag."""
    from benchmarks.datasets import data_root

    root = data_root()
    if not (root / "Set5").is_dir():
        pytest.skip(f"shared test data not found at {root} (set ENHANCE_DATA)")
    out = tmp_path_factory.mktemp("sweep") / "results"
    cmd = [sys.executable, "-m", "harness.sweep", "--presets", "v1,ragan", "--grid", "loss.adv_weight=0.001",
           "--steps", "6", "--datasets", "set5", "--save-images", "set5", "--vgg-fallback", "untrained",
           "--scheduler", "none", "--no-report", "--out", str(out), "--data-root", str(root)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out
