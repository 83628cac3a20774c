"""A resume that lost results and exited 0 (issue 18.1): a disk that filled up left Tune a cut-off
`tune_pretrain/experiment_state-*.json`; Tune then failed to restore, started the stage afresh, and the resume
wrote 7 rows instead of 8, a parameter-less failed trial (`KeyError: 'preset'`) in place of both pretrainings.

Here: damaged states are named and set aside, the resume recovers from the newest intact state or from the trial
folders, and what the sweep collects is checked against its plan (a missing or an unplanned trial is an error
naming it, and the tables are left as they were). The real-run tests at the bottom damage a real tiny study's
folder the way the disk did (a truncated newest state), and with a cut-off state of a later name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from harness import recovery
from harness.collect import Outcome, plan_problems
from harness.plan import SweepRequest, plan_sweep
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


def _rows(out: Path) -> dict[str, int]:
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    return {"trials": trials.height, "pretrain": trials.filter(pl.col("stage") == "pretrain").height,
            "scores": pl.read_parquet(out / schema.SCORES_FILE).height}


def _starts(out: Path) -> dict[str, int]:
    return {d.name: len((d / "starts.log").read_text().split()) for d in (out / schema.TRIALS_DIR).iterdir()}


def _env(out: Path) -> dict[str, str]:
    # a pretraining cache of its own (harness.cache): the pretrainings train here and run in tune_pretrain/
    return {**os.environ, "PYTHONUNBUFFERED": "1", "ENHANCE_CACHE": str(out.parent / "pretrain-cache")}


def _resume(out: Path, entry: str = "harness.sweep") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", entry, "--resume", str(out), "--no-report"], cwd=REPO,
                          capture_output=True, text=True, timeout=900, env=_env(out))


def _gan_started(out: Path) -> bool:
    trials = out / schema.TRIALS_DIR
    return trials.is_dir() and any(not d.name.endswith("-pretrain") and (d / "starts.log").exists()
                                   for d in trials.iterdir())


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, dict]:
    """A real tiny study (five versions x one seed, two shared pretrainings) interrupted with Ctrl-C once its GAN
    stage has started, then finished by `harness.sweep --resume` (18.6); returns the folder and what it held."""
    out = tmp_path_factory.mktemp("damage") / "study"
    cmd = [sys.executable, "-m", "harness.study", "--size", "tiny", "--seeds", "1", "--datasets", "set5",
           "--vgg-fallback", "untrained", "--out", str(out), "--data-root", str(data_root), "--no-report"]
    log = out.parent / "first.log"
    first = subprocess.Popen(cmd, cwd=REPO, env=_env(out), stdout=log.open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not _gan_started(out):
        if first.poll() is not None:
            pytest.fail("the study ended before it could be interrupted:\n" + log.read_text()[-4000:])
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGINT)
    try:
        code = first.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(first.pid, signal.SIGKILL)
        code = first.wait()
    text = log.read_text()
    assert code == 130, text[-4000:]
    assert f"continue it with: python -m harness.study --resume {out}" in text  # the study's own command
    done = _resume(out)  # the sweep's entry point, on a study folder: finishes the study
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (out / schema.STUDY_FILE).is_file() and "study tables:" in done.stdout
    before = _rows(out)
    assert before == {"trials": 8, "pretrain": 2, "scores": 40}  # bicubic, 2 pretrainings, 5 GAN trials; x5 images
    shutil.copytree(out, out.parent / "pristine", symlinks=True)
    return out, before


def _fresh(study_folder) -> Path:
    """The finished study, as it was, at its own path (a GAN stage's config names its pretraining's folder by its
    absolute path: a copy elsewhere would be a different run)."""
    out = study_folder[0]
    shutil.rmtree(out)
    shutil.copytree(out.parent / "pristine", out, symlinks=True)
    return out


@pytest.mark.slow
def test_resume_after_a_cut_off_newest_state_and_a_later_named_cut_off_state(study_folder) -> None:
    """The repro: the newest tune_pretrain state cut off (the resume that wrote it ran out of disk). The next
    resume names it, resumes from the intact one, re-runs nothing and rewrites the same tables. With it, a cut-off
    state with a later name in tune/: each resume used to add one more phantom trial, so it resumes twice."""
    out = _fresh(study_folder)
    states = sorted((out / schema.PRETRAIN_TUNE_DIR).glob(recovery.STATE_GLOB))
    assert len(states) >= 2  # the first run's and the resume's
    _cut(states[-1])
    newest = sorted((out / schema.TUNE_DIR).glob(recovery.STATE_GLOB))[-1]
    (out / schema.TUNE_DIR / "experiment_state-2099-01-01_00-00-00.json").write_bytes(newest.read_bytes()[:300])
    starts = _starts(out)
    for attempt in range(2):
        done = _resume(out, entry="harness.study" if attempt else "harness.sweep")
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        if not attempt:
            assert f"{states[-1]}: damaged Tune experiment state" in done.stdout + done.stderr
        assert _rows(out) == study_folder[1]
        assert _starts(out) == starts  # nothing trained again
    assert states[-1].with_name(states[-1].name + recovery.DAMAGED).exists()
    trials = pl.read_parquet(out / schema.TRIALS_FILE)
    assert sorted(trials.filter(pl.col("stage") == "pretrain")["trial_id"]) == ["rrdb-pretrain", "srresnet-pretrain"]
    assert trials["error"].is_null().all()


@pytest.mark.slow
def test_resume_after_tune_restarted_a_stage_afresh(study_folder) -> None:
    """The second half of the repro: a failed restore had made Tune start tune_pretrain afresh, and its new,
    newest state held one parameter-less trial. That state is set aside and the resume restores the real one."""
    out = _fresh(study_folder)
    newest = sorted((out / schema.PRETRAIN_TUNE_DIR).glob(recovery.STATE_GLOB))[-1]
    state = json.loads(newest.read_text())
    trial = json.loads(state["trial_data"][0][0])
    trial.update(config={}, trial_id="f00d_00000")
    state["trial_data"] = [[json.dumps(trial), state["trial_data"][0][1]]]
    phantom = out / schema.PRETRAIN_TUNE_DIR / "experiment_state-2099-01-01_00-00-00.json"
    phantom.write_text(json.dumps(state))
    starts = _starts(out)
    done = _resume(out)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "trial f00d_00000 has no 'run_name' parameter" in done.stdout + done.stderr
    assert _rows(out) == study_folder[1] and _starts(out) == starts


@pytest.mark.slow
def test_resume_with_no_intact_gan_state_recovers_from_the_trial_folders(study_folder) -> None:
    """Every state of the GAN stage cut off: the stage is moved aside and run again on its trial folders; each
    trial finds its folder by its parameters and resumes at its last checkpoint (no step trained again)."""
    out = _fresh(study_folder)
    for state in (out / schema.TUNE_DIR).glob(recovery.STATE_GLOB):
        _cut(state)
    before = pl.read_parquet(out / schema.TRIALS_FILE).sort("trial_id")
    histories = {d.name: (d / "history.jsonl").read_text() for d in (out / schema.TRIALS_DIR).iterdir()}
    done = _resume(out)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "no intact Tune state left" in done.stdout + done.stderr
    after = pl.read_parquet(out / schema.TRIALS_FILE).sort("trial_id")
    assert after["trial_id"].to_list() == before["trial_id"].to_list()  # the same folders, the same ids
    assert after["steps"].to_list() == before["steps"].to_list() and _rows(out) == study_folder[1]
    assert {d.name: (d / "history.jsonl").read_text() for d in (out / schema.TRIALS_DIR).iterdir()} == histories
    assert any(p.name.startswith(f"{schema.TUNE_DIR}.damaged-") for p in out.iterdir())


@pytest.mark.slow
def test_what_cannot_be_matched_to_the_plan_fails_and_keeps_the_tables(study_folder) -> None:
    """A trial folder that no planned trial ran in: rc 1 naming it, the tables as they were."""
    out = _fresh(study_folder)
    (out / schema.TRIALS_DIR / "ghost_00000").mkdir()
    tables = {name: (out / name).read_bytes() for name in (schema.TRIALS_FILE, schema.SCORES_FILE)}
    done = _resume(out)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    assert "does not match its plan" in done.stderr and "ghost_00000" in done.stderr
    assert {name: (out / name).read_bytes() for name in tables} == tables
    assert not (out / ".lock").exists()
