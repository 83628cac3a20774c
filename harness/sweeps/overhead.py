"""How much of a sweep's (or study's) time went neither into training steps nor into scoring: Ray's start-up and
teardown, Tune's bookkeeping, trials starting, validation and checkpoints, and idle slots.

Counted in slot-seconds. From Ray's start to the end of scoring, the sweep has `slots` trial slots (the trials it
runs at once; `scorers` of them while it scores). Busy slot-seconds are
- the training steps of every trial, from its history: each report's steps since the previous one, times the
  batch, over its images/s (`worker.Clock`: the wall time of those steps, validation and checkpoints excluded);
  only reports made since Ray started count (a resumed run's earlier steps do not; a restarted trial's
  repeated steps count once, its history keeps them once);
- the scoring of every trial and of bicubic (its own timer, in its scoring process).
The share is 1 - busy / (slots x time before scoring + scorers x scoring time).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GOAL = 0.15  # issue 19: at most 15 % of a study's wall time elsewhere


@dataclass
class Timeline:
    """When this invocation's phases ran (unix seconds): Ray's start, the Tune stages, scoring."""

    started: float = field(default_factory=time.time)  # just before Ray starts
    slots: int = 1  # trials at once
    scorers: int = 1  # trials scored at once
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (start, end)
    record: dict[str, Any] | None = None  # the overhead `account` gave once scoring ended (run.json `overhead`)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:
            self.phases[name] = (start, time.time())


def step_seconds(history: Iterable[dict[str, Any]], batch: int, *, since: float) -> float:
    """Seconds of training steps in a trial's history reported at or after `since`."""
    total, previous = 0.0, 0
    for row in history:
        step, rate = row.get("step"), row.get("images_per_s")
        if row.get("diverged") or not isinstance(step, int):
            continue
        if rate and rate > 0 and (row.get("time") or 0) >= since and step > previous:
            total += (step - previous) * batch / rate
        previous = step
    return total


def trial_step_seconds(run_dir: Path, *, since: float) -> float:
    from harness.run.worker import read_history
    from results import io

    payload = io.read_json(Path(run_dir) / "config.json", required=False) or {}
    batch = payload.get("config", {}).get("data", {}).get("batch_size")
    return step_seconds(read_history(run_dir), int(batch), since=since) if batch else 0.0


def account(timeline: Timeline, *, train_s: float, scoring_s: float, ended: float | None = None) -> dict[str, Any]:
    """The record run.json keeps (`overhead`): the share, and what it is made of."""
    ended = ended or time.time()
    scoring = timeline.phases.get("scoring")
    scoring_wall = (scoring[1] - scoring[0]) if scoring else 0.0
    before = max(ended - timeline.started - scoring_wall, 0.0)
    capacity = timeline.slots * before + timeline.scorers * scoring_wall
    share = 1.0 - (train_s + scoring_s) / capacity if capacity > 0 else None
    return {
        "share": share, "goal": GOAL, "started": timeline.started, "wall_s": ended - timeline.started,
        "slots": timeline.slots,
        "scorers": timeline.scorers, "slot_s": capacity, "train_step_s": train_s, "scoring_s": scoring_s,
        "phases_s": {name: end - start for name, (start, end) in timeline.phases.items()},
        "definition": "1 - (training-step seconds + scoring seconds) / (slots x wall before scoring + scorers x "
                      "scoring wall), from Ray's start to the end of scoring (harness/sweeps/overhead.py)",
    }


def describe(record: dict[str, Any]) -> str:
    if record.get("share") is None:
        return "overhead: not measured (no wall time)"
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in record["phases_s"].items())
    verdict = "within" if record["share"] <= record["goal"] else "above"
    return (f"overhead: {100 * record['share']:.1f} % of {record['slot_s']:.0f} slot-seconds ({record['slots']} "
            f"slot(s) x {record['wall_s']:.0f} s, {record['scorers']} while scoring) went neither to training steps "
            f"({record['train_step_s']:.0f} s) nor to scoring ({record['scoring_s']:.0f} s); {verdict} the "
            f"{100 * record['goal']:.0f} % goal. Phases: {phases}")
