"""A resume is the run it continues (issue 27.1): options given with `--resume` are an error naming each; sweep.json
keeps the resolved data root, the validation split and the training files' sha256, and a resume on changed data
is refused (rc 2, before Ray starts) naming what changed. A pretraining copied from the cache after Tune planned
its trial is not trained by that trial (27.8). Unit level: synthetic data, dry runs, no Ray."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from cache_synthetic import TRAIN_DIRS, finished, pretraining, rewrite_in_place, synthetic_root, trained_file

from harness.sweeps import cache, cli, plan, recovery, study, sweep
from results import schema
from srgan.config import to_dict
from srgan.holdout import holdout_split

# ------------------------------------------------------------------------------------- 27.1 the options


def test_options_given_with_resume_are_refused_naming_each(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s1"
    out.mkdir()
    argv = ["--size", "tiny", "--seeds", "2", "--vgg-fallback", "untrained", "--out", str(out)]
    request = study.study_request(study.build_parser().parse_args(argv))
    state = {"entry": "harness.study", "argv": argv, "request": asdict(request), "started": time.time()}
    (out / schema.SWEEP_STATE).write_text(json.dumps(state))
    code = study.main(["--resume", str(out), "--seeds", "3", "--data-root", str(tmp_path), "--datasets", "set14",
                       "--no-cache", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--data-root, --datasets, --no-cache, --seeds would change it and cannot be applied" in err
    assert f"python -m harness.study {' '.join(argv)}" in err  # the run it continues
    # the sweep's entry point on the study's folder, with an option given at its default value: still named
    assert sweep.main(["--resume", str(out), "--scale", "4", "--dry-run", "--no-report"]) == 2
    assert "--scale would change it" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [schema.SWEEP_STATE]  # nothing claimed or written


def test_only_options_that_change_nothing_pass_a_resume() -> None:
    resume = ["--resume", "DIR", "--dry-run", "--no-rep"]  # an abbreviation argparse accepted
    assert cli.resume_conflicts(resume, search="grid") == []
    # a Pareto search continues to a larger --num-samples (harness.sweeps.pareto_search); a grid would drop it
    assert cli.resume_conflicts([*resume, "--num-samples", "9"], search="pareto") == []
    assert cli.resume_conflicts([*resume, "--num-samples", "9"], search="grid") == ["--num-samples"]
    assert cli.resume_conflicts([*resume, "--set", "train.seed=1", "--seeds=1,2", "--no-c"], search="grid") == [
        "--no-c", "--seeds", "--set"]


# ------------------------------------------------------------------------------------- 27.1 the data


@pytest.fixture
def started(tmp_path: Path, data_root: Path, monkeypatch) -> tuple[Path, Path, plan.SweepRequest]:
    """A sweep started on $ENHANCE_DATA (no --data-root) as `run_sweep` starts it: planned, sweep.json written."""
    root = synthetic_root(tmp_path / "A")
    (root / "Set5").symlink_to(data_root / "Set5")
    monkeypatch.setenv("ENHANCE_DATA", str(root))
    request = plan.SweepRequest(presets=("v2",), size="tiny", steps=4, grid={}, datasets=("set5",),
                                save_images=("set5",), scheduler="none")
    out = tmp_path / "out"
    planned = plan.plan_sweep(request, out)
    launch = sweep.Launch(request, entry="harness.sweep", argv=["--presets", "v2"], out=str(out))
    sweep.start_folder(out, launch, False, data=recovery.run_data(out, planned, resuming=False, dry_run=False))
    return root, out, request


def _resume(out: Path, request: plan.SweepRequest) -> None:
    sweep.run_sweep(sweep.Launch(request, entry="harness.sweep", argv=["--resume", str(out), "--dry-run"],
                                 resume=str(out), dry_run=True))


def test_sweep_json_keeps_the_resolved_data_root_the_validation_split_and_the_training_files(started) -> None:
    root, out, request = started
    state = json.loads((out / schema.SWEEP_STATE).read_text())
    assert state["request"]["data_root"] is None and state["data_root"] == str(root)
    held = holdout_split(root / TRAIN_DIRS[0], count=10).images
    (split,) = state["validation"]
    assert [(img["path"], img["sha256"]) for img in split["images"]] == [(h.path.name, h.sha256) for h in held]
    for folder in TRAIN_DIRS:
        assert state["train_data"][folder] == {p.name: cache.sha256_of(p) for p in sorted((root / folder).iterdir())}
    assert recovery.run_data(out, plan.plan_sweep(request, out), resuming=True, dry_run=True) == {
        k: state[k] for k in ("data_root", "validation", "train_data")}  # unchanged: the resume goes on


@pytest.mark.parametrize("change", ["data-root", "training-image", "held-out-image"])
def test_a_resume_on_changed_data_is_refused_naming_what_changed(started, monkeypatch, tmp_path: Path,
                                                                  change: str) -> None:
    root, out, request = started
    before = (out / schema.SWEEP_STATE).read_bytes()
    if change == "data-root":  # the ENHANCE_DATA=B: the same folders, one image other
        other = tmp_path / "B"
        shutil.copytree(root, other, symlinks=True)
        rewrite_in_place(trained_file(other))
        monkeypatch.setenv("ENHANCE_DATA", str(other))
        expected = [f"data root: the run started on {root}, this resume resolves {other}",
                    f"training images of {TRAIN_DIRS[0]}: changed {trained_file(other).name}"]
    elif change == "training-image":
        changed = trained_file(root)
        rewrite_in_place(changed)
        expected = [f"training images of {TRAIN_DIRS[0]}: changed {changed.name}"]
    else:  # replaced by a rename (an in-place rewrite is named above: the training files' sha256 catch it)
        (held,) = holdout_split(root / TRAIN_DIRS[0], count=10).images
        data = bytearray(held.path.read_bytes())
        data[-1] ^= 0xFF
        (root / "new.tmp").write_bytes(bytes(data))
        (root / "new.tmp").replace(held.path)
        expected = [f"training images of {TRAIN_DIRS[0]}: changed {held.path.name}", "validation split: ",
                    f"{TRAIN_DIRS[0]}/{held.path.name}"]
    with pytest.raises(sweep.SweepError) as err:
        _resume(out, request)
    assert err.value.code == 2 and "resuming would mix two data sets" in str(err.value)
    for line in expected:
        assert line in str(err.value)
    assert (out / schema.SWEEP_STATE).read_bytes() == before


# ------------------------------------------------------------------------------ 27.8 the cached pretraining


def test_a_pretraining_copied_from_the_cache_is_not_trained_by_its_tune_trial(tmp_path: Path) -> None:
    root = synthetic_root(tmp_path / "data")
    cfg = pretraining(root)
    entry = cache.store(finished(cfg, tmp_path / "first" / cfg.name, root), cfg, source_run=tmp_path / "first",
                        root=tmp_path / "cache")
    out = tmp_path / "study"
    folder = cache.materialise(entry, out / schema.TRIALS_DIR / cfg.name)  # the resume found it in the cache
    files = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    settings = plan.SweepSettings(out=str(out), data_root=str(root), pretrainings={cfg.name: to_dict(cfg)})
    # the trial Tune planned for it before the interruption, restored and started again
    assert sweep.run_trial({"run_name": cfg.name}, asdict(settings)) is None
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files
