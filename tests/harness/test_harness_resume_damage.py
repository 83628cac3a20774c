"""A resume that lost results and exited 0 (issue 18.1): a disk that filled up left Tune a cut-off
`tune_pretrain/experiment_state-*.json`; Tune then failed to restore, started the stage afresh, and the resume
wrote 7 rows instead of 8, a parameter-less failed trial (`KeyError: 'preset'`) in place of both pretrainings.

Here: damaged states are named and set aside, the resume recovers from the newest intact state or from the trial
folders, and what the sweep collects is checked against its plan (a missing or an unplanned trial is an error
naming it, and the tables are left as they were). The real-run tests at the bottom damage the session's real tiny
study (`tiny_study_to_damage`) the way the disk did (a truncated newest state), with Tune's restart afresh and a
cut-off state of a later name, and with every GAN state lost and a stranger among the trial folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from real_runs import study_env, study_rows

from harness.sweeps import recovery
from harness.sweeps.collect import Outcome
from harness.sweeps.plan import SweepRequest, plan_sweep
from harness.sweeps.plan_check import plan_problems
from results import schema

REPO = Path(__file__).resolve().parents[2]


def _state(path: Path, trials: int = 1) -> Path:
    path.write_text(json.dumps({"trial_data": [["{}", "{}"]] * trials, "runner_data": {}}))
    return path


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------------------------------- Tune state files


def test_a_cut_off_state_is_named_and_set_aside_with_its_session(tmp_path: Path) -> None:
    old = _state(tmp_path / "experiment_state-2026-01-01_00-00-00.json")
    new = _state(tmp_path / "experiment_state-2026-01-02_00-00-00.json", trials=2)
    (tmp_path / "basic-variant-state-2026-01-02_00-00-00.json").write_text("{}")
    _cut(new)
    assert recovery.state_problem(old) is None and "cut off" in recovery.state_problem(new)
    assert recovery.prepare_restore(tmp_path)  # restorable: from the older, intact session
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["basic-variant-state-2026-01-02_00-00-00.json.damaged", old.name,
                     "experiment_state-2026-01-02_00-00-00.json.damaged"]
    assert recovery.intact_states(tmp_path) == [old]


def test_a_later_named_cut_off_state_does_not_hide_the_intact_one(tmp_path: Path, caplog) -> None:
    intact = _state(tmp_path / "experiment_state-2026-01-01_00-00-00.json")
    later = tmp_path / "experiment_state-2099-01-01_00-00-00.json"
    later.write_text('{"trial_data": [["{\\n  \\"stub')
    with caplog.at_level("WARNING"):
        assert recovery.prepare_restore(tmp_path)
    assert str(later) in caplog.text and "damaged Tune experiment state" in caplog.text
    assert intact.name in caplog.text  # what it resumes from
    assert later.with_name(later.name + ".damaged").exists() and intact.exists()


def test_the_state_of_a_stage_tune_restarted_afresh_is_set_aside(tmp_path: Path) -> None:
    """After a failed restore Tune starts the stage afresh: its new state (valid JSON, the newest) holds a trial
    without the stage's parameter. Restoring from it would drop every finished trial again."""
    def state(path: Path, configs: list[dict]) -> Path:
        trials = [[json.dumps({"trial_id": f"t{i}", "config": c}), "{}"] for i, c in enumerate(configs)]
        path.write_text(json.dumps({"trial_data": trials, "runner_data": {}}))
        return path

    good = state(tmp_path / "experiment_state-2026-01-01_00-00-00.json",
                 [{"run_name": "rrdb-pretrain"}, {"run_name": "srresnet-pretrain"}])
    phantom = state(tmp_path / "experiment_state-2026-01-02_00-00-00.json", [{}])
    assert recovery.state_problem(phantom) is None  # Tune's own shape ...
    assert "trial t0 has no 'run_name' parameter" in recovery.state_problem(phantom, param="run_name")  # ... not ours
    assert recovery.prepare_restore(tmp_path, param="run_name")
    assert recovery.intact_states(tmp_path, param="run_name") == [good]
    assert phantom.with_name(phantom.name + recovery.DAMAGED).exists()


def test_a_stage_with_no_intact_state_is_moved_aside_whole(tmp_path: Path) -> None:
    tune = tmp_path / schema.TUNE_DIR
    tune.mkdir()
    (tune / "tuner.pkl").write_bytes(b"...")
    only = _state(tune / "experiment_state-2026-01-01_00-00-00.json")
    _cut(only)
    assert not recovery.prepare_restore(tune)  # Tune starts the stage afresh (on the trial folders)
    assert not tune.exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{schema.TUNE_DIR}.damaged-")]
    assert len(aside) == 1 and (aside[0] / "tuner.pkl").exists()  # nothing deleted


def test_state_shapes_that_are_not_tune_state(tmp_path: Path) -> None:
    for text, why in [("", "cut off"), ("[]", "not a Tune experiment state"), ('{"trial_data": 3}', "not a Tune")]:
        (tmp_path / "s.json").write_text(text)
        assert why in recovery.state_problem(tmp_path / "s.json")
    with pytest.raises(recovery.DamagedState, match="experiment_state-x.json: damaged"):
        (tmp_path / "experiment_state-x.json").write_text("{")
        recovery.check_readable(tmp_path)


def test_trial_folders_are_found_by_their_parameters(tmp_path: Path) -> None:
    trials = tmp_path / schema.TRIALS_DIR
    for name, params in [("a_00000", {"preset": "v2", "loss.adv_weight": 0.001}),
                         ("a_00001", {"preset": "v2", "loss.adv_weight": 0.005}),
                         ("r_00000", {"preset": "v1", "loss.adv_weight": 0.001}),  # a repeat of one point ...
                         ("r_00001", {"preset": "v1", "loss.adv_weight": 0.001}),  # ... is ambiguous
                         ("srresnet-pretrain", {"run_name": "srresnet-pretrain"})]:
        (trials / name).mkdir(parents=True)
        recovery.record_trial(trials / name, params, name)
    by_params = recovery.folders_by_params(tmp_path)
    assert by_params == {recovery.params_key({"loss.adv_weight": 0.001, "preset": "v2"}): "a_00000",
                         recovery.params_key({"preset": "v2", "loss.adv_weight": 0.005}): "a_00001"}
    recovery.record_trial(trials / "a_00000", {"preset": "v2", "loss.adv_weight": 0.001}, "b_00007")  # ran again
    assert recovery.folders_by_trial_id(tmp_path)["b_00007"] == "a_00000"


# --------------------------------------------------------------------------------------- the plan check


@pytest.fixture
def planned(data_root: Path, tmp_path: Path):
    """A real plan (v1, v2, esrgan x one adversarial weight: two pretrainings, three GAN trials) and the outcomes
    of a complete run of it, with their trial folders."""
    request = SweepRequest(presets=("v1", "v2", "esrgan"), grid={"loss.adv_weight": [0.001]}, steps=4,
                           datasets=("set5",), vgg_fallback="untrained", scheduler="none", data_root=str(data_root))
    out = tmp_path / "sweep"
    sweep = plan_sweep(request, out)
    outcomes = [Outcome(name, out / schema.TRIALS_DIR / name, schema.STAGE_PRETRAIN, params={"run_name": name})
                for name in sweep.settings.pretrainings]
    outcomes += [Outcome(f"t_{i:05d}", out / schema.TRIALS_DIR / f"t_{i:05d}", schema.STAGE_GAN, params=dict(p))
                 for i, (p, _) in enumerate(sweep.trials)]
    for o in outcomes:
        o.run_dir.mkdir(parents=True)
        (o.run_dir / "config.json").write_text("{}")
    return sweep, outcomes, out


def test_a_complete_run_matches_its_plan(planned) -> None:
    sweep, outcomes, out = planned
    assert sorted(sweep.settings.pretrainings) == ["rrdb-pretrain", "srresnet-pretrain"]
    assert plan_problems(sweep, outcomes, out) == []


def test_the_repro_dropped_pretrainings_and_a_phantom_trial_are_named(planned) -> None:
    """What the bad resume collected: both pretrainings gone, a parameter-less failed trial in their place."""
    sweep, outcomes, out = planned
    phantom = Outcome("f00d_00000", out / schema.TRIALS_DIR / "f00d_00000", schema.STAGE_PRETRAIN,
                      error="KeyError: 'preset'", params={})
    got = plan_problems(sweep, [o for o in outcomes if o.stage == schema.STAGE_GAN] + [phantom], out)
    text = "\n".join(got)
    assert "pretraining trial f00d_00000 (no parameters) is not in the plan" in text
    assert "planned pretraining rrdb-pretrain is missing" in text and "planned pretraining srresnet-pretrain" in text
    assert f"{out / schema.TRIALS_DIR / 'rrdb-pretrain'}: a trial folder that no trial of this plan ran in" in text


def test_a_missing_an_unplanned_and_a_repeated_gan_trial_are_named(planned) -> None:
    sweep, outcomes, out = planned
    gan = [o for o in outcomes if o.stage == schema.STAGE_GAN]
    pre = [o for o in outcomes if o.stage == schema.STAGE_PRETRAIN]
    text = "\n".join(plan_problems(sweep, pre + gan[1:], out))
    assert f"planned trial {gan[0].params['preset']} adv_weight=0.001 is missing" in text
    stranger = Outcome("t_00099", out / schema.TRIALS_DIR / "t_00099", schema.STAGE_GAN,
                       params={"preset": "v2", "loss.adv_weight": 0.5})
    (stranger.run_dir).mkdir()
    (stranger.run_dir / "config.json").write_text("{}")
    text = "\n".join(plan_problems(sweep, [*outcomes, stranger], out))
    assert "trial t_00099 (loss.adv_weight=0.5, preset=v2) is not in the plan" in text
    twice = Outcome("t_00098", gan[1].run_dir, schema.STAGE_GAN, params=dict(gan[1].params))
    assert any("t_00098" in p and "not in the plan" in p for p in plan_problems(sweep, [*outcomes, twice], out))


def test_a_finished_trial_without_its_folder_is_named(planned) -> None:
    sweep, outcomes, out = planned
    shutil.rmtree(outcomes[-1].run_dir)
    assert plan_problems(sweep, outcomes, out) == [
        f"trial {outcomes[-1].trial_id} finished in Tune's state, but its folder {outcomes[-1].run_dir} (config, "
        "checkpoints) is missing"]
    failed = Outcome(outcomes[-1].trial_id, outcomes[-1].run_dir, schema.STAGE_GAN, error="RayActorError: died",
                     params=outcomes[-1].params)
    assert plan_problems(sweep, [*outcomes[:-1], failed], out) == []  # a failed trial may have no folder


def test_random_search_is_checked_by_count_and_range(data_root: Path, tmp_path: Path) -> None:
    request = SweepRequest(presets=("v1",), grid={}, loguniform={"loss.adv_weight": (1e-4, 1e-2)}, search="random",
                           num_samples=2, steps=4, datasets=("set5",), scheduler="none", data_root=str(data_root))
    out = tmp_path / "random"
    sweep = plan_sweep(request, out)

    def trial(i: int, weight: float) -> Outcome:
        o = Outcome(f"r_{i}", out / schema.TRIALS_DIR / f"r_{i}", schema.STAGE_GAN,
                    params={"preset": "v1", "loss.adv_weight": weight})
        o.run_dir.mkdir(parents=True, exist_ok=True)
        (o.run_dir / "config.json").write_text("{}")
        return o

    assert plan_problems(sweep, [trial(0, 3e-4), trial(1, 5e-3)], out) == []
    text = "\n".join(plan_problems(sweep, [trial(0, 3e-4), trial(1, 0.5)], out))
    assert "r_1" in text and "search space" in text
    shutil.rmtree(out / schema.TRIALS_DIR / "r_1")
    assert plan_problems(sweep, [trial(0, 3e-4)], out) == [
        f"1 GAN trial(s) in {out / schema.TUNE_DIR}'s Tune state, the plan samples 2"]


# ------------------------------------------------------------------------------------- real runs (slow)


def _starts(out: Path) -> dict[str, int]:
    return {d.name: len((d / "starts.log").read_text().split()) for d in (out / schema.TRIALS_DIR).iterdir()}


def _resume(out: Path, entry: str = "harness.sweep") -> subprocess.CompletedProcess:
    """`python -m <entry> --resume OUT --no-report` in a process of its own (its own Ray): resumed in the session's
    Ray, Tune would sync back the driver files it staged in that Ray's session folder for an earlier resume of this
    folder (the tiny study's own, real_runs.run_main), a state file this test has set aside among them."""
    return subprocess.run([sys.executable, "-m", entry, "--resume", str(out), "--no-report"], cwd=REPO,
                          capture_output=True, text=True, timeout=900, env=study_env(out))


@pytest.mark.slow
def test_resume_after_cut_off_restarted_and_later_named_states(tiny_study, tiny_study_to_damage) -> None:
    """The repro, on the session's real tiny study (interrupted and resumed, tests/conftest.py): the newest
    tune_pretrain state cut off (the resume that wrote it ran out of disk), and a newer one holding only the
    parameter-less trial of Tune's restart afresh after a failed restore; in tune/, a cut-off state with a later
    name (each resume used to add one more phantom trial). The resume, through the study's own entry point,
    names each, sets them aside, restores the intact states, re-runs nothing and rewrites the same tables, keeping
    every model's scores (none scored again); the state it leaves is one the next resume restores from as it is."""
    out = tiny_study_to_damage
    states = sorted((out / schema.PRETRAIN_TUNE_DIR).glob(recovery.STATE_GLOB))
    assert len(states) >= 2  # the first run's and the resume's
    state = json.loads(states[-1].read_text())
    trial = json.loads(state["trial_data"][0][0])
    trial.update(config={}, trial_id="f00d_00000")
    state["trial_data"] = [[json.dumps(trial), state["trial_data"][0][1]]]
    phantom = out / schema.PRETRAIN_TUNE_DIR / "experiment_state-2099-01-01_00-00-00.json"
    phantom.write_text(json.dumps(state))
    _cut(states[-1])
    newest = sorted((out / schema.TUNE_DIR).glob(recovery.STATE_GLOB))[-1]
    later = out / schema.TUNE_DIR / "experiment_state-2099-01-01_00-00-00.json"
    later.write_bytes(newest.read_bytes()[:300])
    starts = _starts(out)
    done = _resume(out, entry="harness.study")
    said = done.stdout + done.stderr
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"{states[-1]}: damaged Tune experiment state" in said
    assert "trial f00d_00000 has no 'run_name' parameter" in said
    assert f"{later}: damaged Tune experiment state" in said
    assert study_rows(out) == tiny_study.rows
    assert _starts(out) == starts  # nothing trained again
    models = tiny_study.rows["trials"]  # bicubic too
    assert f"{models} of {models} models keep the scores" in said  # nothing scored again (harness.sweeps.scored)
    for table, rows in ((schema.SCORES_FILE, ["trial_id", "dataset", "image"]),
                        (schema.SUMMARY_FILE, ["trial_id", "dataset"])):
        assert pl.read_parquet(out / table).sort(rows).equals(pl.read_parquet(tiny_study.pristine / table).sort(rows))
    for path in (states[-1], phantom, later):
        assert not path.exists() and path.with_name(path.name + recovery.DAMAGED).exists()
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    assert sorted(trials.filter(pl.col("stage") == "pretrain")["trial_id"]) == ["rrdb-pretrain", "srresnet-pretrain"]
    assert trials["error"].is_null().all()
    # what the next resume restores from: every stage's newest state intact, with exactly the planned trials
    gan = tiny_study.rows["trials"] - tiny_study.rows["pretrain"] - 1  # all but the pretrainings and bicubic
    for tune_dir, param, planned in ((schema.PRETRAIN_TUNE_DIR, "run_name", 2), (schema.TUNE_DIR, "preset", gan)):
        newest = sorted((out / tune_dir).glob(recovery.STATE_GLOB))[-1]
        assert recovery.state_problem(newest, param=param) is None
        assert len(json.loads(newest.read_text())["trial_data"]) == planned


@pytest.mark.slow
def test_resume_with_no_intact_gan_state_finds_each_trial_folder_and_names_the_stranger(tiny_study_to_damage
                                                                                         ) -> None:
    """Every state of the GAN stage cut off: the stage is moved aside and run again on its trial folders; each
    trial finds its folder by its parameters and resumes at its last checkpoint (no step trained again). A trial
    folder that no planned trial ran in (ghost_00000) is the one thing that does not match the plan: rc 1 naming
    it (and nothing else: every planned trial found its own folder), the tables as they were, the lock given back."""
    out = tiny_study_to_damage
    for state in (out / schema.TUNE_DIR).glob(recovery.STATE_GLOB):
        _cut(state)
    histories = {d.name: (d / "history.jsonl").read_text() for d in (out / schema.TRIALS_DIR).iterdir()}
    (out / schema.TRIALS_DIR / "ghost_00000").mkdir()
    tables = {name: (out / name).read_bytes() for name in (schema.TRIALS_FILE, schema.SCORES_FILE)}
    done = _resume(out)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    assert "no intact Tune state left" in done.stdout + done.stderr
    assert any(p.name.startswith(f"{schema.TUNE_DIR}.damaged-") for p in out.iterdir())
    assert "does not match its plan" in done.stderr and "ghost_00000" in done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1 and "ghost_00000" in problems[0], done.stderr[-4000:]
    assert {d.name: (d / "history.jsonl").read_text() for d in (out / schema.TRIALS_DIR).iterdir()
            if d.name != "ghost_00000"} == histories
    assert {name: (out / name).read_bytes() for name in tables} == tables
    assert not (out / ".lock").exists()
