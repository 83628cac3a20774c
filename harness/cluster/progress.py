"""One progress line per update for the long phases of a sweep (pretraining, GAN trials, scoring), with the time
left: at most one line every `every_s` seconds, and one when a trial or a phase ends.

The time left is the remaining work at the rate seen so far in this phase (training steps for the Tune stages,
trials for scoring): a rough guide that firms up as the phase runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

EVERY_S = 20.0


def clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Counts done out of total (steps, trials) since `start`; `line` says it, `maybe` at most every `every_s`."""

    def __init__(self, phase: str, total: float, *, unit: str, every_s: float = EVERY_S) -> None:
        self.phase, self.total, self.unit, self.every_s = phase, total, unit, every_s
        self.start = time.time()
        self.last = 0.0
        self.done = 0.0

    def left_s(self) -> float | None:
        elapsed = time.time() - self.start
        if self.done <= 0 or elapsed <= 0:
            return None
        return max(self.total - self.done, 0) * elapsed / self.done

    def line(self, detail: str = "") -> str:
        left = self.left_s()
        eta = f"~{clock(left)} left" if left is not None else "time left not known yet"
        pct = 100 * self.done / self.total if self.total else 100.0
        return (f"[{self.phase}] {self.done:.0f}/{self.total:.0f} {self.unit} ({pct:.0f} %), "
                f"{clock(time.time() - self.start)} elapsed, {eta}" + (f"; {detail}" if detail else ""))

    def maybe(self, detail: str = "", *, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last >= self.every_s:
            self.last = now
            log.info(self.line(detail))


def tune_progress(phase: str, planned_steps: Callable[[dict[str, Any]], int], *, trials: int, total_steps: int,
                  label: Callable[[dict[str, Any]], str] = str, every_s: float = EVERY_S):
    """A Tune callback printing the stage's progress: trials done, running, steps done of the planned total and the
    time left at the stage's step rate. `planned_steps(params)` is a trial's planned steps (its config's),
    `label(params)` its name in the line."""
    from ray.tune import Callback

    class TuneProgress(Callback):
        def __init__(self) -> None:
            self.progress = Progress(phase, total_steps, unit="steps", every_s=every_s)
            self.steps: dict[str, int] = {}  # trial id -> its last reported step
            self.planned: dict[str, int] = {}
            self.ended: set[str] = set()

        def setup(self, **info) -> None:  # also when Tune restores the stage (--resume): time it from now
            self.progress.start = time.time()

        def _label(self, trial) -> str:
            try:
                return label(dict(trial.config))
            except (KeyError, TypeError, ValueError):
                return trial.trial_id

        def _planned(self, trial) -> int:
            if trial.trial_id not in self.planned:
                try:
                    self.planned[trial.trial_id] = planned_steps(dict(trial.config))
                except Exception:  # noqa: BLE001 - a trial whose config fails fails in its own process, named there
                    self.planned[trial.trial_id] = 0
            return self.planned[trial.trial_id]

        def _update(self, trials_now: list, *, force: bool, note: str = "") -> None:
            # an ended trial counts as its planned steps (ASHA stops some early; they need no more time)
            self.progress.done = sum(max(self._planned(t), self.steps.get(t.trial_id, 0)) if t.trial_id in self.ended
                                     else self.steps.get(t.trial_id, 0) for t in trials_now)
            running = sum(1 for t in trials_now if t.status == "RUNNING" and t.trial_id not in self.ended)
            detail = f"trials {len(self.ended)}/{trials} done, {running} running" + (f"; {note}" if note else "")
            self.progress.maybe(detail, force=force)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if isinstance(result.get("step"), int):
                self.steps[trial.trial_id] = result["step"]
            self._update(trials, force=False)

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.ended.add(trial.trial_id)
            self._update(trials, force=True, note=f"{self._label(trial)} finished")

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.ended.add(trial.trial_id)
            self._update(trials, force=True, note=f"{self._label(trial)} FAILED "
                                                  "(its error goes to trials.parquet and the report)")

    return TuneProgress()
