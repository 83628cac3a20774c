"""`python -m benchmarks.speed.gpu_check`: the GPU script runs on the CPU at tiny size (`--device cpu --tiny`), writes
every section into one JSON file, keeps its deadline, catches a planted host read, and imports nothing the GPU
machine lacks (Ray, polars, plotly, pyiqa are blocked in its processes, spawned ones included). No timing is
asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.speed import gpu_check
from srgan import engine as engine_module
from srgan.versions import preset

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("ray", "polars", "plotly", "pyiqa")

BLOCKER = f'''
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    """Any import of these packages fails, as on the GPU machine where they are not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {set(BLOCKED)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        return None

sys.meta_path.insert(0, _Blocked())
'''


def blocked_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python processes (spawned children too: `site` runs sitecustomize in each) cannot
    import the blocked packages."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "OMP_NUM_THREADS": "1"}


def run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_blocker_blocks(tmp_path: Path) -> None:
    env = blocked_env(tmp_path)
    for name in BLOCKED:
        done = run(["-c", f"import {name}"], env)
        assert done.returncode != 0 and "blocked by the test" in done.stderr, name


def test_imports_and_checks_steps_without_ray_polars_plotly_pyiqa(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    done = run(["-m", "benchmarks.speed.gpu_check", "--device", "cpu", "--tiny", "--sections", "sync", "--json",
                str(out)], blocked_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    sync = report["sections"]["sync"]
    assert sync["status"] == "done" and sync["method"] == "meta device" and sync["passed"]
    assert {r["preset"] for r in sync["rows"]} == {f"{p}-tiny" for p in gpu_check.PRESETS}
    assert any(r["ema"] > 0 for r in sync["rows"] if r["preset"] == "v3-tiny")  # v3 with EMA too
    assert {report["sections"][s]["reason"] for s in ("compare", "packing", "compiled")} == {"not requested"}


@pytest.mark.slow  # spawns five processes (packing) and times the tiny v3 and ESRGAN steps (~1 min)
def test_the_whole_tiny_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = run(["-m", "benchmarks.speed.gpu_check", "--device", "cpu", "--tiny", "--json", str(out)],
               blocked_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert [s for s in gpu_check.SECTIONS if sections[s]["status"] == "done"] == ["sync", "compare", "packing"]
    assert sections["compiled"] == {"status": "skipped", "reason": "not requested"}  # the CPU default
    rows = {(r["preset"], r["batch"], r["amp"], r["phase"]) for r in sections["compare"]["rows"]}
    assert rows == {(p, 2, "fp32", ph) for p in ("v3-tiny", "esrgan-tiny") for ph in ("warmup", "gan")}
    assert all(r["engine"] > 0 and r["reference"] > 0 for r in sections["compare"]["rows"])
    packing = sections["packing"]
    assert packing["trials"] == 4 and len(packing["packed"]) == 4 and packing["errors"] == []
    assert packing["ratio"] == pytest.approx(packing["packed_images_per_s"] / packing["alone_images_per_s"])
    assert all(r["steps"] >= 1 and r["seconds"] >= 1.0 for r in packing["alone"] + packing["packed"])
    assert report["goals"][0]["note"].startswith("the baselines are H100 figures")  # goals: CUDA only


def test_a_deadline_that_has_passed_skips_every_section(tmp_path: Path) -> None:
    out = tmp_path / "late.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--deadline-s", "0.001", "--json", str(out)]) == 0
    sections = json.loads(out.read_text())["sections"]
    assert {s: sections[s]["reason"] for s in ("sync", "compare", "packing")} == dict.fromkeys(
        ("sync", "compare", "packing"), "deadline")


def test_a_planted_host_read_is_caught_and_located(monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine_module.pixel_loss

    def reads(sr, gt, kind):
        loss = real(sr, gt, kind)
        _ = float(loss.detach())  # a host read
        return loss

    monkeypatch.setattr(engine_module, "pixel_loss", reads)
    cfg = preset("v2-tiny")
    result = gpu_check.check_steps(cfg, gpu_check.torch.device("cpu"))
    assert result["ok"] is False and result["step"] == 0 and "meta" in result["error"]
    assert result["where"].startswith("test_bench_gpu_check.py:")  # the innermost frame: where the read is


def test_bad_arguments_are_usage_errors() -> None:
    for argv in (["--device", "cpu", "--sections", "sync,warp"], ["--device", "cpu", "--amp", "fp8"],
                 ["--device", "cpu", "--batches", "many"], ["--device", "cpu", "--deadline-s", "0"]):
        with pytest.raises(SystemExit) as err:
            gpu_check.main(argv)
        assert err.value.code == 2, argv
