"""Stop a sweep trial whose GAN diverged, and keep the reason (`stops.json` in the sweep folder)."""

from __future__ import annotations

from pathlib import Path

from results.io import read_json, write_json
from results.schema import COLLAPSE_GAP, COLLAPSE_PATIENCE


class DivergenceStopper:
    """Stop a trial whose GAN diverged: a non-finite loss (reported by the worker) or a collapsed D
    (D(real) - D(fake) above `gap` for `patience` reports: G gets no useful gradient). Reasons are kept in
    `path` so the results say why; `tune_stopper` is the object to hand to Tune."""

    def __init__(self, path: Path, *, gap: float = COLLAPSE_GAP, patience: int = COLLAPSE_PATIENCE) -> None:
        from ray.tune import Stopper

        self.path, self.gap, self.patience = Path(path), gap, patience
        self.reasons: dict[str, str] = read_json(self.path, required=False) or {}
        self.streak: dict[str, int] = {}
        outer = self

        class _Stopper(Stopper):
            def __call__(self, trial_id: str, result: dict) -> bool:
                return outer.check(trial_id, result)

            def stop_all(self) -> bool:
                return False

        self.tune_stopper = _Stopper()

    def check(self, trial_id: str, result: dict) -> bool:
        reason = None
        if result.get("diverged"):
            reason = f"diverged: {result.get('diverged_reason', 'non-finite loss')}"
        elif result.get("d_real") is not None and result.get("d_fake") is not None:
            collapsed = result["d_real"] - result["d_fake"] > self.gap
            self.streak[trial_id] = self.streak.get(trial_id, 0) + 1 if collapsed else 0
            if self.streak[trial_id] >= self.patience:
                reason = (f"discriminator collapse: D(real)-D(fake) > {self.gap} for {self.patience} reports "
                          f"(step {result.get('step')})")
        if reason:
            self.reasons[trial_id] = reason
            write_json(self.path, self.reasons)
        return reason is not None


def read_stops(path: Path) -> dict[str, str]:
    return read_json(path, required=False) or {}

