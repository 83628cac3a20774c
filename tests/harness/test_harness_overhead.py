"""The overhead share (`harness.sweeps.overhead`) from a history and a timeline, against the arithmetic done by hand;
the
progress line (`harness.cluster.progress`): its time left and its rate limit."""

from __future__ import annotations

import logging

import pytest

from harness.cluster import progress
from harness.sweeps import overhead


def test_step_seconds_are_the_steps_over_their_rate_since_ray_started() -> None:
    history = [
        {"step": 4, "images_per_s": 8.0, "time": 100.0},  # before Ray started (a resumed run's first part)
        {"step": 8, "images_per_s": 16.0, "time": 210.0},  # 4 steps x batch 4 / 16 img/s = 1 s
        {"step": 8, "phase": "diverged", "diverged": 1.0, "time": 211.0},
        {"step": 20, "images_per_s": 12.0, "time": 230.0},  # 12 x 4 / 12 = 4 s
        {"step": 24, "images_per_s": None, "time": 240.0},  # no rate: not counted, but its steps are passed
        {"step": 28, "images_per_s": 4.0, "time": 250.0},  # 4 x 4 / 4 = 4 s
    ]
    assert overhead.step_seconds(history, 4, since=200.0) == pytest.approx(1 + 4 + 4)
    assert overhead.step_seconds(history, 4, since=0.0) == pytest.approx(4 * 4 / 8 + 1 + 4 + 4)


def test_the_share_counts_idle_slots_and_scoring_slots() -> None:
    timeline = overhead.Timeline(started=1000.0, slots=2, scorers=3)
    timeline.phases = {"Ray start-up": (1000.0, 1010.0), "GAN trials": (1010.0, 1090.0), "scoring": (1100.0, 1120.0)}
    record = overhead.account(timeline, train_s=120.0, scoring_s=45.0, ended=1120.0)
    # 2 slots x 100 s before scoring + 3 scorers x 20 s = 260 slot-seconds, 165 of them busy
    assert record["slot_s"] == pytest.approx(260.0)
    assert record["share"] == pytest.approx(1 - 165 / 260)
    assert record["wall_s"] == pytest.approx(120.0) and record["phases_s"]["scoring"] == pytest.approx(20.0)
    text = overhead.describe(record)
    assert f"{100 * (1 - 165 / 260):.1f} %" in text and "above the 15 % goal" in text
    busy = overhead.account(timeline, train_s=190.0, scoring_s=58.0, ended=1120.0)
    assert "within the 15 % goal" in overhead.describe(busy)


def test_progress_says_the_time_left_at_the_rate_so_far(monkeypatch, caplog) -> None:
    now = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    p = progress.Progress("GAN trials", 300, unit="steps", every_s=20)
    assert "time left not known yet" in p.line()
    now[0] += 60
    p.done = 100  # 100 steps in a minute: 200 left take two more
    assert p.line() == "[GAN trials] 100/300 steps (33 %), 1m00s elapsed, ~2m00s left"
    with caplog.at_level(logging.INFO, logger="harness.cluster.progress"):
        p.maybe("a")
        now[0] += 5
        p.maybe("b")  # within 20 s of the last line: quiet
        p.maybe("c", force=True)  # a trial ended: said at once
        now[0] += 25
        p.maybe("d")
    assert [r.getMessage().rsplit("; ", 1)[1] for r in caplog.records] == ["a", "c", "d"]
    assert progress.clock(3725) == "1h02m" and progress.clock(59.6) == "1m00s"
