"""Resuming a sweep whose Ray Tune state is damaged, finding a trial's folder by its parameters, and checking that
a resume runs on the data its run started on.

Tune keeps an experiment's state in `experiment_state-<session>.json` (one per driver session, the newest read
on restore) beside the search algorithm's `basic-variant-state-<session>.json`. A disk that fills up while Tune
writes them leaves a cut-off file; Tune then fails to restore, logs it and *starts the experiment afresh*,
whose new state holds none of the finished trials. A resume built on that loses results and exits 0 (issue
18.1). So, before Tune restores a stage:

- every state file that does not parse as Tune's state, or holds a trial without the stage's parameter (the
  parameter-less trial of Tune's restart afresh), is *named* and set aside (renamed `<name>.damaged`, nothing
  deleted), with the other files of its session, so Tune restores from the newest intact session;
- a stage with no intact state left is moved aside whole (`<stage>.damaged-<time>`) and run again from its
  trial folders: pretrainings are named for what they are, and a GAN trial finds its folder by the parameters
  it recorded there (`PARAMS_FILE`); Ray Train then resumes each run from its own latest checkpoint, so
  finished work is not trained again.

What the sweep then collects is checked against its plan (`harness.sweeps.plan_check.plan_problems`), so anything this
cannot recover is an error naming the trial, never a quiet success.

A resume is the run it continues (issue 27.1): sweep.json keeps the data a run starts on (`data_record`: the
resolved data root, the validation splits, every training file's sha256), and a resume that finds another data
root or changed files is refused before Ray starts, naming what changed (`run_data`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from results import schema

log = logging.getLogger(__name__)

STATE_GLOB = "experiment_state-*.json"
DAMAGED = ".damaged"
PARAMS_FILE = "params.json"  # in every trial folder: the Tune parameters of the trial that ran there
TRIAL_IDS_FILE = "tune_trials.txt"  # ... and the Tune trial ids that ran there, one a line
_SESSION = re.compile(r"^experiment_state-(?P<session>.+)\.json$")


class DamagedState(Exception):
    """A Tune state that cannot be used, named with what is wrong with it."""


def state_problem(path: Path, *, param: str | None = None) -> str | None:
    """What is wrong with a Tune experiment-state file, or None when it reads as one. With `param`, every trial
    it holds must have that parameter ("run_name" for pretrainings, "preset" for GAN trials): a trial without it
    is not one of this sweep's (Tune's own restart after a failed restore leaves such a parameter-less trial)."""
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        return f"cut off or not JSON ({err})"
    if not isinstance(data, dict) or not isinstance(data.get("trial_data"), list) or "runner_data" not in data:
        return "not a Tune experiment state (no trial_data / runner_data)"
    if param is None:
        return None
    for entry in data["trial_data"]:
        try:
            trial = json.loads(entry[0])
            config, trial_id = trial["config"], trial.get("trial_id")
        except (TypeError, ValueError, KeyError, IndexError):
            return "a trial entry that is not Tune's"
        if not isinstance(config, dict) or param not in config:
            return (f"trial {trial_id} has no {param!r} parameter: not a trial of this sweep (a stage Tune "
                    "restarted afresh after it failed to restore it)")
    return None


def damaged_states(tune_dir: Path, *, param: str | None = None) -> dict[Path, str]:
    """The damaged experiment-state files of a Tune folder, with what is wrong with each (`state_problem`)."""
    found = {p: state_problem(p, param=param) for p in sorted(Path(tune_dir).glob(STATE_GLOB))}
    return {p: why for p, why in found.items() if why is not None}


def intact_states(tune_dir: Path, *, param: str | None = None) -> list[Path]:
    """The experiment-state files that read as Tune's state, oldest first (Tune restores the last)."""
    return [p for p in sorted(Path(tune_dir).glob(STATE_GLOB)) if state_problem(p, param=param) is None]


def set_aside_damaged(tune_dir: Path, *, param: str | None = None) -> list[str]:
    """Rename every damaged state file of `tune_dir`, and its session's other files, to `<name>.damaged`, so that
    Tune restores from the newest intact session. Returns one line per damaged file (logged as well)."""
    said = []
    for path, why in damaged_states(tune_dir, param=param).items():
        match = _SESSION.match(path.name)
        session = match["session"] if match else None
        siblings = [p for p in path.parent.glob(f"*-{session}.json") if p != path] if session else []
        for p in (path, *siblings):
            p.rename(p.with_name(p.name + DAMAGED))
        line = f"{path}: damaged Tune experiment state, {why}; set aside as {path.name + DAMAGED}"
        if siblings:
            line += f" (with {', '.join(p.name for p in siblings)})"
        log.warning(line)
        said.append(line)
    return said


def prepare_restore(tune_dir: Path, *, param: str | None = None) -> bool:
    """Make a stage's Tune folder restorable; True when Tune can restore it. Damaged states are set aside
    (`set_aside_damaged`; `param`: the parameter each of the stage's trials has); a folder left with no intact state
    is moved aside whole (`<stage>.damaged-<time>`), and the stage then runs afresh on its trial folders (see the
    module docstring)."""
    tune_dir = Path(tune_dir)
    if not tune_dir.is_dir():
        return False
    said = set_aside_damaged(tune_dir, param=param)
    intact = intact_states(tune_dir, param=param)
    if intact:
        if said:
            log.warning("%s: resuming from the newest intact state, %s", tune_dir, intact[-1].name)
        return True
    if said:
        aside = tune_dir.with_name(f"{tune_dir.name}{DAMAGED}-{time.strftime('%Y%m%d-%H%M%S')}")
        tune_dir.rename(aside)
        log.warning("%s: no intact Tune state left; moved aside to %s. The stage runs again on its trial folders "
                    "(finished runs resume from their last checkpoint and train no further)", tune_dir, aside.name)
    return False


def check_readable(tune_dir: Path) -> None:
    """Raise `DamagedState` naming the newest state file of `tune_dir` when it cannot be read (e.g. a disk that
    filled up as Tune wrote it); the sweep then stops before it collects anything."""
    states = sorted(Path(tune_dir).glob(STATE_GLOB))
    if states and (why := state_problem(states[-1])) is not None:
        raise DamagedState(f"{states[-1]}: damaged Tune experiment state, {why}")


# ------------------------------------------------------------------------------------------ trial folders


def params_key(params: dict[str, Any]) -> str:
    """A trial's parameters as one comparable string."""
    return json.dumps(params, sort_keys=True, default=str)


def record_trial(run_dir: Path, params: dict[str, Any], trial_id: str) -> None:
    """What a trial folder holds: the parameters of its trial, and every Tune trial id that ran in it (more than
    one after a stage was run again on its folders)."""
    (Path(run_dir) / PARAMS_FILE).write_text(json.dumps(params, sort_keys=True, default=str))
    with (Path(run_dir) / TRIAL_IDS_FILE).open("a") as fh:
        fh.write(trial_id + "\n")


def read_params(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(run_dir) / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _folders(out: Path) -> list[Path]:
    trials = Path(out) / schema.TRIALS_DIR
    return sorted(p for p in trials.iterdir() if p.is_dir()) if trials.is_dir() else []


def folders_by_params(out: Path) -> dict[str, str]:
    """GAN trial folders of a sweep by their parameters (`params_key`), where exactly one folder holds those
    parameters (repeats of one grid point are ambiguous: they are left out and train again)."""
    seen: dict[str, list[str]] = {}
    for folder in _folders(out):
        params = read_params(folder)
        if params is not None and not params.get("run_name"):
            seen.setdefault(params_key(params), []).append(folder.name)
    return {key: names[0] for key, names in seen.items() if len(names) == 1}


def folders_by_trial_id(out: Path) -> dict[str, str]:
    """Tune trial id -> the folder it ran in, for every id a trial folder records."""
    found = {}
    for folder in _folders(out):
        try:
            ids = (folder / TRIAL_IDS_FILE).read_text().split()
        except OSError:
            continue
        found.update({trial_id: folder.name for trial_id in ids})
    return found


# ------------------------------------------------------------------------------------------ the run's data


def data_record(sweep) -> dict[str, Any]:
    """What sweep.json keeps of the data a sweep (`harness.sweeps.plan.SweepPlan`) starts on, so that a resume is the
    run
    it continues (issue 27.1): the resolved data root, the validation splits (`harness.run.validation.records`, the
    held-out images with their sha256) and the sha256 of every file of every training folder."""
    from harness.run import validation

    root = sweep.settings.data_root
    return {"data_root": root, "validation": validation.records(sweep.validated_runs(), root),
            "train_data": train_files(sweep)}


def train_files(sweep) -> dict[str, dict[str, str]]:
    """The sha256 of every file of the sweep's training folders (`harness.sweeps.cache.folder_files`), by folder
    (relative
    to the data root where it is under it)."""
    from harness.run.storage import resolve_train_dirs
    from harness.sweeps.cache import folder_files

    root = Path(sweep.settings.data_root)
    cfgs = [*sweep.runs, *sweep.pretrain_configs.values()]
    folders = sorted({f.resolve() for cfg in cfgs for f in resolve_train_dirs(cfg, root)})
    return {_under(f, root): folder_files(f) for f in folders}


def _under(folder: Path, root: Path) -> str:
    try:
        return str(folder.relative_to(root.resolve()))
    except ValueError:
        return str(folder)


def run_data(out: Path, sweep, *, resuming: bool, dry_run: bool) -> dict[str, Any] | None:
    """The data a run starts on (`data_record`), for sweep.json; on --resume checked against what sweep.json
    recorded, a change a ValueError naming what changed (a resume never mixes two data sets). None for a new dry
    run."""
    if dry_run and not resuming:
        return None
    now = data_record(sweep)
    if resuming:
        problems = resume_problems(json.loads((Path(out) / schema.SWEEP_STATE).read_text()), now)
        if problems:
            raise ValueError(f"--resume {out}: the data changed since the {sweep.request.kind} started; resuming "
                             "would mix two data sets:" + "".join(f"\n  - {p}" for p in problems)
                             + "\nrestore the data it started on to resume it, or start a new run with --out")
    return now


def resume_problems(state: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed between the data a run started on (sweep.json's `data_record`) and the data a resume finds
    (`now`), one line each; none when they are the same. A sweep.json written before it kept the data (no
    `data_root`) cannot be checked: a warning says so."""
    if "data_root" not in state:
        log.warning("sweep.json records no data root (written by an earlier version): the resume cannot check that "
                    "it runs on the data the run started on")
        return []
    problems = []
    if Path(state["data_root"]).resolve() != Path(now["data_root"]).resolve():
        problems.append(f"data root: the run started on {state['data_root']}, this resume resolves "
                        f"{now['data_root']} (--data-root as recorded, else $ENHANCE_DATA or ../shared/data)")
    before, after = state.get("train_data", {}), now["train_data"]
    for folder in sorted(set(before) | set(after)):
        if before.get(folder) != after.get(folder):
            problems.append(f"training images of {folder}: " + _file_changes(before.get(folder), after.get(folder)))
    if state.get("validation") != now["validation"]:
        problems.append("validation split: " + _split_changes(state.get("validation") or [], now["validation"]))
    return problems


def _file_changes(before: dict[str, str] | None, after: dict[str, str] | None) -> str:
    if before is None or after is None:
        return "not a training folder of the run" if before is None else "no longer a training folder of the run"
    said = []
    for what, names in (("changed", [n for n in before if n in after and before[n] != after[n]]),
                        ("added", [n for n in after if n not in before]),
                        ("removed", [n for n in before if n not in after])):
        if names:
            shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            said.append(f"{what} {shown}")
    return "; ".join(said)


def _split_changes(before: list[dict], after: list[dict]) -> str:
    def images(records: list[dict]) -> dict[str, str]:
        return {f"{img['folder']}/{img['path']}": img["sha256"] for r in records for img in r.get("images", [])}

    old, new = images(before), images(after)
    said = []
    for what, names in (("content changed", [n for n in old if n in new and old[n] != new[n]]),
                        ("now held out", [n for n in new if n not in old]),
                        ("no longer held out", [n for n in old if n not in new])):
        if names:
            said.append(f"{what}: {', '.join(sorted(names))}")
    return "; ".join(said) or "its settings changed"
