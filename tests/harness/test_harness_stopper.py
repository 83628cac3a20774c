"""The divergence stopper: a non-finite loss or a collapsed discriminator stops a trial, and says why."""

from __future__ import annotations

import json
import math
from pathlib import Path

from harness.sweeps.stopper import DivergenceStopper


def test_non_finite_loss_stops_and_records_the_reason(tmp_path: Path) -> None:
    stopper = DivergenceStopper(tmp_path / "stops.json")
    assert not stopper.tune_stopper("t1", {"step": 10, "diverged": 0.0, "d_real": 0.6, "d_fake": 0.4})
    reason = "generator step 11: loss_g is nan"
    assert stopper.tune_stopper("t1", {"step": 11, "diverged": 1.0, "diverged_reason": reason})
    assert json.loads((tmp_path / "stops.json").read_text()) == {"t1": f"diverged: {reason}"}
    assert not stopper.tune_stopper.stop_all()


def test_collapsed_discriminator_needs_a_streak(tmp_path: Path) -> None:
    stopper = DivergenceStopper(tmp_path / "stops.json", gap=0.98, patience=3)
    collapsed = {"d_real": 0.999, "d_fake": 0.001}
    healthy = {"d_real": 0.7, "d_fake": 0.3}
    # two collapsed reports, a healthy one resets the streak, then three in a row stop the trial
    results = [collapsed, collapsed, healthy, collapsed, collapsed, collapsed]
    decisions = [stopper.tune_stopper("t2", {"step": i, **r}) for i, r in enumerate(results)]
    assert decisions == [False, False, False, False, False, True]
    assert "discriminator collapse" in json.loads((tmp_path / "stops.json").read_text())["t2"]
    # another trial's streak is its own
    assert not stopper.tune_stopper("t3", {"step": 0, **collapsed})


def test_the_relativistic_gap_decides_when_it_is_reported(tmp_path: Path) -> None:
    """A saturated relativistic D: C(real) = 20, 21 and C(fake) = 10, 11 put sigmoid(C) at 1 for both
    (d_real - d_fake = 0), while D_Ra separates them completely; d_gap says so, and the stopper reads it."""
    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    real, fake = [20.0, 21.0], [10.0, 11.0]
    mean_real, mean_fake = sum(real) / 2, sum(fake) / 2
    d_gap = (sum(sig(r - mean_fake) for r in real) - sum(sig(f - mean_real) for f in fake)) / 2
    saturated = {"d_real": sum(map(sig, real)) / 2, "d_fake": sum(map(sig, fake)) / 2, "d_gap": d_gap}
    assert saturated["d_real"] - saturated["d_fake"] < 1e-4 and d_gap > 0.99
    stopper = DivergenceStopper(tmp_path / "stops.json", gap=0.98, patience=2)
    assert [stopper.tune_stopper("ra", {"step": i, **saturated}) for i in range(2)] == [False, True]
    assert "d_gap" in json.loads((tmp_path / "stops.json").read_text())["ra"]
    # and the other way: plain sigmoids far apart but a small reported d_gap do not stop a trial
    apart = {"d_real": 0.999, "d_fake": 0.001, "d_gap": 0.5}
    assert not any(stopper.tune_stopper("rb", {"step": i, **apart}) for i in range(4))
    # a result without d_gap (an older engine) falls back to d_real - d_fake
    old = {"d_real": 0.999, "d_fake": 0.001}
    assert [stopper.tune_stopper("rc", {"step": i, **old}) for i in range(2)] == [False, True]


def test_reasons_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "stops.json"
    DivergenceStopper(path).tune_stopper("t4", {"diverged": 1.0, "diverged_reason": "x"})
    assert DivergenceStopper(path).reasons == {"t4": "diverged: x"}


def test_best_checkpoint_prefers_the_gan_phase(tmp_path: Path) -> None:
    """Scoring a GAN trial by its PSNR-best checkpoint would pick the pixel-only warmup; pick among GAN ones."""
    from harness.sweeps.collect import best_checkpoint

    rows = [{"step": 10, "phase": "warmup", "val_psnr": 30.0}, {"step": 20, "phase": "gan", "val_psnr": 25.0},
            {"step": 30, "phase": "gan", "val_psnr": 26.0}, {"step": 40, "phase": "gan", "val_psnr": 24.0}]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for row in rows:
        ckpt = tmp_path / f"checkpoint_{row['step']:07d}"
        ckpt.mkdir()
        (ckpt / "generator.safetensors").write_bytes(b"")
        (ckpt / "config.json").write_text(json.dumps({"step": row["step"]}))
    best, row = best_checkpoint(tmp_path)
    assert best.name == "checkpoint_0000030" and row["val_psnr"] == 26.0
    best, _ = best_checkpoint(tmp_path, metric="val_psnr", mode="min")
    assert best.name == "checkpoint_0000040"
    for row in rows[1:]:  # a run that never reached the GAN phase: its best warmup checkpoint
        (tmp_path / f"checkpoint_{row['step']:07d}" / "generator.safetensors").unlink()
    best, _ = best_checkpoint(tmp_path)
    assert best.name == "checkpoint_0000010"
