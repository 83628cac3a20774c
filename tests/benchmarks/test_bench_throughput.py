"""`python -m benchmarks.speed.throughput`: the train and loader sections report every rate; `--compare` reports the
engine and the minimal reference step per preset and phase with FLOPs and MFU. Only that it runs and every
number is there and plausible: no timing is asserted (a shared CPU is far too noisy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.speed.measure import flops_per_image
from benchmarks.speed.reference_step import ReferenceStep
from benchmarks.speed.throughput import main
from srgan.config import override
from srgan.engine import GanEngine
from srgan.versions import preset


@pytest.mark.slow  # decodes the 290 T91 + BSD200 images
def test_train_and_loader_sections_report_every_rate(data_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "throughput.json"
    assert main(["--presets", "v1", "--sections", "train,loader", "--batch", "1", "--steps", "1", "--warmup", "0",
                 "--workers", "0", "--loader-batches", "2", "--data-root", str(data_root), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    rates = results["train"]["v1"]["images_per_s"]
    assert set(rates) == {"warmup", "generator", "discriminator", "gan"} and all(v > 0 for v in rates.values())
    assert results["train"]["v1"]["batch"] == 1 and results["train"]["v1"]["patch_size"] == 96
    assert results["loader"]["v1"]["0"]["patches_per_s"] > 0
    printed = capsys.readouterr().out
    assert printed.startswith("cpu: ") and "== train" in printed and "== loader" in printed


@pytest.mark.slow  # scans T91 + BSD200 for the loader rows
def test_compare_reports_engine_and_reference_per_phase(data_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "compare.json"
    assert main(["--compare", "--tiny", "--presets", "v1,ragan", "--batch", "2,3", "--steps", "1", "--warmup", "0",
                 "--repeats", "1", "--workers", "0", "--loader-batches", "1", "--data-root", str(data_root),
                 "--clock", "process", "--json", str(out)]) == 0
    compare = json.loads(out.read_text())["compare"]
    assert compare["clock"] == "process" and compare["ceiling_flops"] > 0
    rows = {(r["preset"], r["batch"], r["phase"]): r for r in compare["rows"]}
    assert set(rows) == {(p, b, ph) for p in ("v1-tiny", "ragan-tiny") for b in (2, 3) for ph in ("warmup", "gan")}
    for r in rows.values():
        assert r["engine"] > 0 and r["reference"] > 0 and r["ratio"] == pytest.approx(r["engine"] / r["reference"])
        assert r["amp"] == "fp32" and r["gpu_busy_engine"] is None  # CPU: no autocast, no GPU trace
        assert r["compile"] == "off"
        assert r["mfu_engine"] == pytest.approx(r["flops_per_image"] * r["engine"] / compare["ceiling_flops"])
    # the GAN step costs more than the pixel-only step, and FLOPs per image do not depend on the batch
    assert rows["ragan-tiny", 2, "gan"]["flops_per_image"] > rows["ragan-tiny", 2, "warmup"]["flops_per_image"]
    assert rows["v1-tiny", 2, "gan"]["flops_per_image"] == pytest.approx(rows["v1-tiny", 3, "gan"]["flops_per_image"])
    assert {r["preset"] for r in compare["loader"]} == {"v1-tiny", "ragan-tiny"}
    assert all(r["loader_patches_per_s"] > 0 and r["device_stage_patches_per_s"] > 0 for r in compare["loader"])
    printed = capsys.readouterr().out
    assert "== compare" in printed and "worst ratio" in printed


def test_reference_step_trains_like_the_engine() -> None:
    """The reference is a faithful minimal step: from the same weights and batch, one GAN step of each gives the
    same generator (so the benchmark compares the same work)."""
    cfg = override(preset("ragan-tiny"), {"loss.perceptual_weights": "untrained", "train.warmup_steps": 0,
                                          "data.batch_size": 2})
    engine, ref = GanEngine(cfg), ReferenceStep(cfg, device=torch.device("cpu"), use_amp=False)
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 48, 48, generator=gen)
    lq = torch.nn.functional.avg_pool2d(gt, 4)
    engine.train_step(lq, gt)
    ref.gan(lq, gt)
    for a, b in zip(engine.net_g.parameters(), ref.net_g.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(engine.net_d.parameters(), ref.net_d.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert flops_per_image(lambda: ref.gan(lq, gt), 2) > 0


def test_unknown_preset_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        main(["--presets", "v9"])
    with pytest.raises(SystemExit):
        main(["--compare", "--batch", "four"])
    with pytest.raises(SystemExit):
        main(["--compare", "--amp", "fp8"])
    with pytest.raises(SystemExit):
        main(["--compare", "--compile", "fast"])
