"""Cost before compute: step times measured once per network and cached; the estimate's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import cost
from srgan.config import override
from srgan.versions import gan_stage, preset, pretrain_stage


def tiny(name: str, **updates):
    return override(preset(f"{name}-tiny"), {"loss.perceptual_weights": "untrained", "data.patch_size": 24,
                                             "data.batch_size": 2, **updates})


def test_measure_step_rate_times_real_steps_without_side_effects(offline: Path) -> None:
    """A real engine, both phases; the perceptual network is timed on untrained features, so a preset that asks
    for ImageNet VGG19 weights is timed without them (offline here); the global RNG is left as it was."""
    cfg = override(preset("v3-tiny"), {"data.patch_size": 24, "data.batch_size": 2})
    assert cfg.loss.perceptual_weights == "imagenet"
    state = torch.get_rng_state()
    for phase in ("warmup", "gan"):
        rate = cost.measure_step_rate(cfg, device="cpu", steps=2, phase=phase)
        assert 0 < rate < 1e5
    assert torch.equal(torch.get_rng_state(), state)
    assert cost.main_phase(pretrain_stage(cfg)) == "warmup" and cost.main_phase(cfg) == "gan"


def test_step_times_are_cached_per_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_rate(cfg, *, device, steps=3, phase=None):
        calls.append((cfg.data.batch_size, phase))
        return 4.0

    monkeypatch.setattr(cost, "measure_step_rate", fake_rate)
    cfg = tiny("v3")
    assert cost.step_seconds(cfg, phase="gan", device="cpu", cache_dir=tmp_path) == (0.25, False)
    entries = json.loads((tmp_path / cost.CACHE_FILE).read_text())["entries"]
    (entry,) = entries.values()
    assert entry["seconds_per_step"] == 0.25 and entry["signature"]["batch_size"] == 2
    assert entry["signature"]["device"] == cost.device_label("cpu")
    # same network, other loss weights, lr and seed: the cache answers
    same = override(cfg, {"loss.adv_weight": 1e-1, "optim.lr_g": 1e-3, "train.seed": 5})
    assert cost.step_seconds(same, phase="gan", device="cpu", cache_dir=tmp_path) == (0.25, True)
    assert len(calls) == 1
    # another batch, phase or generator: measured
    cost.step_seconds(override(cfg, {"data.batch_size": 4}), phase="gan", device="cpu", cache_dir=tmp_path)
    cost.step_seconds(cfg, phase="warmup", device="cpu", cache_dir=tmp_path)
    cost.step_seconds(override(cfg, {"generator.num_blocks": 3}), phase="gan", device="cpu", cache_dir=tmp_path)
    assert len(calls) == 4
    assert len(json.loads((tmp_path / cost.CACHE_FILE).read_text())["entries"]) == 4


def test_a_corrupt_cache_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(cost, "measure_step_rate", lambda cfg, **kw: 2.0)
    (tmp_path / cost.CACHE_FILE).write_text("{not json")
    assert cost.step_seconds(tiny("v2"), phase="gan", device="cpu", cache_dir=tmp_path) == (0.5, False)
    assert "unreadable step-time cache" in caplog.text
    assert json.loads((tmp_path / cost.CACHE_FILE).read_text())["version"] == cost.CACHE_VERSION


def test_makespan() -> None:
    assert cost.makespan([], 3) == 0
    assert cost.makespan([3, 3, 3], 2) == 6
    assert cost.makespan([1, 1, 4], 2) == 5  # started in order: the long run starts last
    assert cost.makespan([4, 1, 1], 2) == 4
    assert cost.makespan([2, 2], 8) == 2


def test_estimate_arithmetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a pixel-only step takes 0.25 s, a GAN step 1 s, whatever the network
    rates = {"warmup": 4.0, "gan": 1.0}
    calls = []

    def fake_rate(cfg, *, device, steps=3, phase=None):
        calls.append(phase)
        return rates[phase]

    monkeypatch.setattr(cost, "measure_step_rate", fake_rate)
    v3 = tiny("v3")
    pre_a = pretrain_stage(override(v3, {"train.warmup_steps": 100}))
    pre_b = pretrain_stage(override(v3, {"train.warmup_steps": 300, "train.seed": 1}))
    gans = [gan_stage(override(v3, {"train.gan_steps": 50, "loss.adv_weight": w}), "pre") for w in (1e-3, 5e-3, 1e-2)]
    single = override(tiny("v1"), {"train.warmup_steps": 10, "train.gan_steps": 20})
    stages = {"pretrain": [pre_a, pre_b], "gan": gans, "single": [single]}

    est = cost.estimate(stages, concurrency=2, device="cpu", cache_dir=tmp_path)
    assert [(s.name, s.runs, s.steps) for s in est.stages] == [("pretrain", 2, 400), ("gan", 3, 150),
                                                                ("single", 1, 30)]
    assert [s.device_seconds for s in est.stages] == pytest.approx([100, 150, 22.5])
    assert [s.wall_seconds for s in est.stages] == pytest.approx([75, 100, 22.5])  # 25 | 75; 50+50 | 50
    assert est.total_steps == 580
    assert est.device_hours == pytest.approx(272.5 / 3600)
    assert est.wall_seconds == pytest.approx(197.5)
    # one measurement per network and phase: v3's pixel step, v3's GAN step, v1's pixel and GAN steps
    assert sorted(calls) == ["gan", "gan", "warmup", "warmup"] and len(est.step_times) == 4
    text = est.format()
    assert "pretrain: 2 run(s), 400 steps" in text and "total: 580 steps, 0.0757 device-hours, wall 3.3 min" in text
    assert "0.25 s/step" in text and "(measured)" in text

    again = cost.estimate(stages, concurrency=1, device="cpu", cache_dir=tmp_path, devices_per_run=2)
    assert len(calls) == 4 and all(t.cached for t in again.step_times)  # all from the cache
    assert [s.wall_seconds for s in again.stages] == pytest.approx([50, 75, 11.25])  # serial, two devices a run
    assert again.device_hours == pytest.approx(est.device_hours)
    assert "(cached)" in again.format() and "2 devices each" in again.format()


def test_estimate_rejects_bad_concurrency(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        cost.estimate({}, concurrency=0, device="cpu", cache_dir=tmp_path)
