"""Smoke test of `python -m benchmarks.throughput` (it lives with the srgan tests: it drives srgan's engine and
loader). Only that it runs and reports every number: no timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.throughput import main


@pytest.mark.slow  # decodes the 290 T91 + BSD200 images
def test_train_and_loader_sections_report_every_rate(data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "throughput.json"
    assert main(["--presets", "v1", "--sections", "train,loader", "--batch", "1", "--steps", "1", "--warmup", "0",
                 "--workers", "0", "--loader-batches", "2", "--data-root", str(data), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    rates = results["train"]["v1"]["images_per_s"]
    assert set(rates) == {"warmup", "generator", "discriminator", "gan"} and all(v > 0 for v in rates.values())
    assert results["train"]["v1"]["batch"] == 1 and results["train"]["v1"]["patch_size"] == 96
    assert results["loader"]["v1"]["0"]["patches_per_s"] > 0
    printed = capsys.readouterr().out
    assert printed.startswith("cpu: ") and "== train" in printed and "== loader" in printed


def test_unknown_preset_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        main(["--presets", "v9"])
