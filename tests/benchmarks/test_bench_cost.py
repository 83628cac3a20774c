"""Cost before compute: step times measured once per network and cached; the estimate's arithmetic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from benchmarks.speed import cost
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


# ------------------------------------------------------------------------------ a hostile step_times.json


def _cache_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: object) -> tuple[str, list]:
    """A cache holding `entry` under the key of tiny v3's GAN step; measuring is faked (4 steps/s) and counted."""
    calls = []

    def fake_rate(cfg, *, device, steps=3, phase=None):
        calls.append(phase)
        return 4.0

    monkeypatch.setattr(cost, "measure_step_rate", fake_rate)
    key = cost.signature_key(cost.signature(tiny("v3"), "gan", "cpu"))
    (tmp_path / cost.CACHE_FILE).write_text(json.dumps({"version": cost.CACHE_VERSION, "entries": {key: entry}}))
    return key, calls


@pytest.mark.parametrize("entry,problem", [
    ({"seconds_per_step": -5}, "has seconds_per_step -5, not a finite time"),
    ({"seconds_per_step": 0}, "has seconds_per_step 0, not a finite time"),
    ({"seconds_per_step": float("nan")}, "has seconds_per_step nan, not a finite time"),
    ({"seconds_per_step": float("inf")}, "has seconds_per_step inf, not a finite time"),
    ({"seconds_per_step": 1e9}, "has seconds_per_step 1000000000.0, not a finite time"),
    ({"seconds_per_step": "0.25"}, "has seconds_per_step '0.25', not a number"),
    ({"seconds_per_step": True}, "has seconds_per_step True, not a number"),
    ({"seconds_per_step": [0.25]}, "not a number"),
    ({"steps_timed": 3}, "has no seconds_per_step"),
    (0.25, "is a float, not an object"),
    ([0.25], "is a list, not an object"),
    (None, "is a NoneType, not an object"),
    ({"seconds_per_step": 0.5, "signature": {"phase": "warmup"}}, "holds the signature of another network"),
])
def test_a_bad_cache_entry_is_named_ignored_and_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog, entry: object, problem: str) -> None:
    """Issue 18.7: -5 printed "-0.00556 device-hours, wall -20 s", NaN "nan days", a non-dict entry or a missing
    seconds_per_step a TypeError/KeyError traceback."""
    key, calls = _cache_with(tmp_path, monkeypatch, entry)
    cfg = override(tiny("v3"), {"train.warmup_steps": 0, "train.gan_steps": 80})
    with caplog.at_level("WARNING", logger=cost.__name__):
        est = cost.estimate({"gan": [cfg]}, concurrency=1, device="cpu", cache_dir=tmp_path)
    warning = next(r.getMessage() for r in caplog.records if key in r.getMessage())
    assert str(tmp_path / cost.CACHE_FILE) in warning and problem in warning and "measured again" in warning
    assert calls == ["gan"]  # re-measured: 0.25 s a step
    assert est.step_times[0].seconds_per_step == 0.25 and not est.step_times[0].cached
    assert est.device_hours == pytest.approx(80 * 0.25 / 3600) and est.wall_seconds == pytest.approx(20)
    text = est.format()
    assert "total: 80 steps, 0.00556 device-hours, wall 20 s" in text and "nan" not in text
    assert not re.search(r"-\d", text)  # no negative number anywhere
    stored = json.loads((tmp_path / cost.CACHE_FILE).read_text())["entries"][key]
    assert stored["seconds_per_step"] == 0.25  # the bad entry was replaced by the measurement
    assert cost.step_seconds(cfg, phase="gan", device="cpu", cache_dir=tmp_path) == (0.25, True)
    assert calls == ["gan"]


def test_a_good_entry_beside_a_bad_one_is_still_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, calls = _cache_with(tmp_path, monkeypatch, {"seconds_per_step": 0.125})
    other = cost.signature_key(cost.signature(tiny("v3"), "warmup", "cpu"))
    path = tmp_path / cost.CACHE_FILE
    data = json.loads(path.read_text())
    data["entries"][other] = {"seconds_per_step": -1}
    path.write_text(json.dumps(data))
    assert cost.step_seconds(tiny("v3"), phase="gan", device="cpu", cache_dir=tmp_path) == (0.125, True)
    assert cost.step_seconds(tiny("v3"), phase="warmup", device="cpu", cache_dir=tmp_path) == (0.25, False)
    assert calls == ["warmup"]


@pytest.mark.parametrize("text,problem", [
    ("[1, 2]", "not a step-time cache"),
    ('{"version": 1, "entries": [1]}', "not a step-time cache"),
    ('{"version": 1}', "not a step-time cache"),
    ('{"version": 99, "entries": {}}', "cache of another version (99, not 1)"),
    ("\xff\xfe", "unreadable step-time cache"),
])
def test_a_cache_of_the_wrong_shape_is_named_and_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog, text: str, problem: str) -> None:
    monkeypatch.setattr(cost, "measure_step_rate", lambda cfg, **kw: 2.0)
    path = tmp_path / cost.CACHE_FILE
    path.write_bytes(text.encode("latin-1"))
    with caplog.at_level("WARNING", logger=cost.__name__):
        assert cost.step_seconds(tiny("v2"), phase="gan", device="cpu", cache_dir=tmp_path) == (0.5, False)
    assert f"{path}: {problem}" in caplog.text
    assert json.loads(path.read_text())["version"] == cost.CACHE_VERSION
