"""What a sweep ran, checked against its plan before anything is scored (`plan_problems`): a resume or a damaged
Tune state that would mix runs, or lose one, is an error naming what is wrong, never a quiet success."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from results import schema

if TYPE_CHECKING:
    from harness.sweeps.collect import Outcome
    from harness.sweeps.plan import SweepPlan


def plan_problems(sweep: SweepPlan, outcomes: Sequence[Outcome], out: Path, *,
                  confirmed: Collection[str] = ()) -> list[str]:
    """What the collected `outcomes` lack or hold beyond the sweep's plan, one line each (empty: they match).
    `confirmed`: the run folders of a Pareto search's confirm-seed trials, planned from its front and checked by
    `harness.sweeps.pareto_search.confirm_outcomes`, not against the search's space (their folders are theirs).

    Checked: every planned pretraining (by name) and GAN trial (by its parameters; with random search, by count
    and range) ran once in Tune's state; no trial ran that the plan does not hold (e.g. a parameter-less trial
    of an experiment Tune restarted afresh after it failed to read its state); a trial Tune holds as finished has
    its folder (config, checkpoints) under trials/; no trial folder is left that no trial ran in."""
    from harness.sweeps.plan import trial_label
    from harness.sweeps.recovery import params_key

    r, problems = sweep.request, []
    planned_pre = set(sweep.settings.pretrainings)
    ran_pre: dict[str, int] = {}
    gan = []
    for o in outcomes:
        params = o.params or {}
        if o.stage == schema.STAGE_PRETRAIN:
            name = params.get("run_name") if o.params is not None else o.trial_id  # None: known by its folder only
            if name in planned_pre:
                ran_pre[name] = ran_pre.get(name, 0) + 1
            else:
                problems.append(f"pretraining trial {o.trial_id} ({_described(params)}) is not in the plan "
                                f"(planned: {', '.join(sorted(planned_pre)) or 'none'})")
        elif o.run_dir.name not in confirmed:
            gan.append(o)
    for name in sorted(planned_pre):
        if name not in ran_pre:
            problems.append(f"planned pretraining {name} is missing from {out / schema.PRETRAIN_TUNE_DIR}'s Tune state")
        elif ran_pre[name] > 1:
            problems.append(f"planned pretraining {name} ran {ran_pre[name]} times in one Tune state")
    ranges = {**r.loguniform, **r.uniform}

    def in_range(params: dict) -> bool:
        return all(isinstance(params.get(k), (int, float)) and lo <= params[k] <= hi for k, (lo, hi) in ranges.items())

    def fixed(params: dict) -> str:  # the grid part of a trial's parameters (sampled values aside)
        return params_key({k: v for k, v in params.items() if k not in ranges})

    if r.search == "grid":
        expected: dict[str, list[str]] = {}
        for params, _ in sweep.trials:
            expected.setdefault(fixed(params), []).extend([trial_label(params)] * r.num_samples)
        for o in gan:
            params = o.params or {}
            slots = expected.get(fixed(params))
            if slots and in_range(params):
                slots.pop()
            else:
                problems.append(f"trial {o.trial_id} ({_described(params)}) is not in the plan")
        problems += [f"planned trial {label} is missing from {out / schema.TUNE_DIR}'s Tune state"
                     for labels in expected.values() for label in labels]
    else:  # random search: num_samples trials, each inside the space
        choices = {"preset": list(r.presets), **sweep.grid}
        for o in gan:
            params = o.params or {}
            inside = set(params) == set(choices) | set(ranges) and in_range(params) and all(
                params[k] in values for k, values in choices.items())
            if not inside:
                problems.append(f"trial {o.trial_id} ({_described(params)}) is not in the plan's search space")
        if len(gan) != r.num_samples:
            problems.append(f"{len(gan)} GAN trial(s) in {out / schema.TUNE_DIR}'s Tune state, the plan samples "
                            f"{r.num_samples}")
    claimed = set()
    for o in outcomes:
        claimed.add(o.run_dir.name)
        if o.error is None and not (o.run_dir / "config.json").is_file():
            problems.append(f"trial {o.trial_id} finished in Tune's state, but its folder {o.run_dir} (config, "
                            "checkpoints) is missing")
    trials_dir = out / schema.TRIALS_DIR
    for folder in sorted(p for p in trials_dir.iterdir() if p.is_dir()) if trials_dir.is_dir() else []:
        if folder.name not in claimed:
            problems.append(f"{folder}: a trial folder that no trial of this plan ran in (move it out of "
                            f"{trials_dir} if it belongs elsewhere)")
    return problems


def _described(params: dict) -> str:
    if not params:
        return "no parameters"
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
