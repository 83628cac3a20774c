"""Stop a sweep trial whose GAN diverged, and keep the reason (`stops.json` in the sweep folder)."""

from __future__ import annotations

from pathlib import Path

from results.io import read_json, write_json
from results.schema import COLLAPSE_GAP, COLLAPSE_PATIENCE


class DivergenceStopper:
    """Stop a trial whose GAN diverged: a non-finite loss (reported by the worker) or a collapsed D (its gap
    above `gap` for `patience` reports: G gets no useful gradient). The gap is the engine's `d_gap` (for a
    relativistic D, D_Ra's own: sigmoid(C(real) - mean C(fake)) against sigmoid(C(fake) - mean C(real))); a
    result without it (an engine from before it) falls back to `d_real - d_fake`. Reasons are kept in `path` so
    the results say why; `tune_stopper` is the object to hand to Tune."""

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
        elif (gap := d_gap(result)) is not None:
            self.streak[trial_id] = self.streak.get(trial_id, 0) + 1 if gap > self.gap else 0
            if self.streak[trial_id] >= self.patience:
                reason = (f"discriminator collapse: D's gap (d_gap) > {self.gap} for {self.patience} reports "
                          f"(step {result.get('step')})")
        if reason:
            self.reasons[trial_id] = reason
            write_json(self.path, self.reasons)
        return reason is not None



def d_gap(result: dict) -> float | None:
    """The reported D gap: `d_gap`, else `d_real - d_fake` (results without d_gap), else None."""
    if result.get("d_gap") is not None:
        return result["d_gap"]
    if result.get("d_real") is not None and result.get("d_fake") is not None:
        return result["d_real"] - result["d_fake"]
    return None
