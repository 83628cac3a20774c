"""Selection never reads a scored set: a run that validates on a set the sweep scores is refused before Ray starts
(naming both), or, with the explicit opt-in, runs with every result flagged; the scored weights are the final ones
by default, the best on validation as an option (trials.parquet `selection`)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from harness.run import validation
from harness.sweeps import sweep
from harness.sweeps.collect import Collected, Outcome, Scoring, collect_trial
from srgan.checkpoint import load_generator, save_generator
from srgan.config import override, to_dict
from srgan.generator import build_generator
from srgan.versions import preset


def _refused(capsys, argv: list[str]) -> str:
    import ray

    assert sweep.main(argv) == 2
    assert not ray.is_initialized()  # refused in the plan, before Ray starts
    return capsys.readouterr().err


def test_validation_on_a_scored_set_is_refused_before_ray_starts(capsys, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "refused"
    base = ["--presets", "v1", "--grid", "none", "--steps", "4", "--datasets", "set5,set14", "--out", str(out),
            "--data-root", str(data_root)]
    err = _refused(capsys, [*base, "--set", "data.val_set=set5"])
    assert "v1-tiny: data.val_set=set5 is the scored set set5" in err and "scored: set5, set14" in err
    assert "--allow-selection-on-test" in err and not out.exists()  # nothing written
    # one grid point of several: named by its label
    err = _refused(capsys, [*base[:2], "--grid", "data.val_set=holdout,set5", *base[4:]])
    assert "v1-tiny (v1 val_set=set5): data.val_set=set5 is the scored set set5" in err
    # a validation folder that is a scored set's folder: named by its files
    set14 = data_root / "Set14" / "GTmod12"
    err = _refused(capsys, [*base, "--set", "data.val_set=dirs", "--set", f"data.val_dirs={set14}"])
    assert "14 validation image(s) of dirs are files of the scored set set14" in err and "baboon.png" in err
    # a held-out split of a training folder that holds a scored set's images
    err = _refused(capsys, [*base, "--set", f"data.train_dirs={data_root / 'Set5' / 'GTmod12'}"])
    assert "validation image(s) of holdout are files of the scored set set5" in err


def test_the_default_holdout_validates_on_no_scored_set(data_root: Path) -> None:
    for name in ("v1-cpu", "v3-cpu", "esrgan-paper"):
        cfg = preset(name)
        assert cfg.data.val_set == "holdout"
        if name != "esrgan-paper":  # DIV2K sub-images are not on these machines
            assert validation.scored_overlap(cfg, ["set5", "set14", "bsd100"], data_root) == []
    opted = validation.check_selection({"v1": override(preset("v1-tiny"), {"data.val_set": "set14"})},
                                       ["set5", "set14"], data_root, allow=True)
    assert opted == ["v1: data.val_set=set14 is the scored set set14"]
    assert validation.check_selection({"v1": override(preset("v1-tiny"), {"data.val_set": "bsd100"})},
                                      ["set5", "set14"], data_root, allow=False) == []  # not scored: allowed


# ------------------------------------------------------------------------- final vs best-val, and the flag


def _trial_folder(root: Path, name: str, **overrides) -> Path:
    """A finished single-stage tiny v1 trial: checkpoints at steps 2 and 4 (different weights), validation best at
    step 2."""
    cfg = override(preset("v1-tiny"), {"train.gan_steps": 4, "data.batch_size": 4, **overrides})
    run = root / "trials" / name
    for step, seed in ((2, 1), (4, 2)):
        torch.manual_seed(seed)
        save_generator(build_generator(cfg.generator, scale=cfg.scale).eval(), cfg, run / f"checkpoint_{step:07d}",
                       step=step)
    (run / "config.json").write_text(json.dumps({"config": to_dict(cfg), "flags": []}))
    history = [{"step": 2, "phase": "gan", "val_psnr": 20.0, "time": 1.0},
               {"step": 4, "phase": "gan", "val_psnr": 10.0, "time": 2.0}]
    (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return run


def _collect(run: Path, data_root: Path, selection: str) -> tuple[dict, pl.DataFrame]:
    into = Collected()
    scoring = Scoring(datasets=["set5"], scale=4, data_root=data_root, images_dir=run.parent.parent / "images",
                      selection=selection)
    collect_trial(Outcome(trial_id=run.name, run_dir=run, stage="gan"), scoring, {}, into)
    (row,) = into.trials
    return row, into.scores[0]


def _psnr(checkpoint: Path, data_root: Path) -> list[float]:
    from benchmarks.scoring.evaluate import evaluate_model

    net, _ = load_generator(checkpoint, expect_scale=4)
    return evaluate_model(net, ["set5"], 4, data_root=data_root, metrics=("psnr",), progress=False)["psnr"].to_list()


def test_final_weights_by_default_best_on_validation_as_an_option(data_root: Path, tmp_path: Path) -> None:
    run = _trial_folder(tmp_path, "v1-trial")
    final, best = _psnr(run / "checkpoint_0000004", data_root), _psnr(run / "checkpoint_0000002", data_root)
    assert final != best  # the two checkpoints score differently: which one was scored shows
    row, scores = _collect(run, data_root, "final")
    assert row["selection"] == "final" and row["g_updates"] == 4 and row["images_seen"] == 4 * 4
    assert scores["psnr"].to_list() == pytest.approx(final, abs=1e-9)
    row, scores = _collect(run, data_root, "best-val")
    assert row["selection"] == "best-val" and row["g_updates"] == 2 and row["images_seen"] == 2 * 4
    assert scores["psnr"].to_list() == pytest.approx(best, abs=1e-9)
    assert json.loads(row["flags"]) == []  # validated on its held-out split: no flag


def test_a_trial_that_validated_on_a_scored_set_is_flagged(data_root: Path, tmp_path: Path) -> None:
    run = _trial_folder(tmp_path, "v1-on-set5", **{"data.val_set": "set5"})
    row, _ = _collect(run, data_root, "final")
    assert validation.SELECTED_ON_TEST in json.loads(row["flags"])


@pytest.mark.slow
def test_the_opt_in_runs_and_flags_every_result(ray_job_sweep) -> None:
    """The session's sweep through `ray job submit` (tests/harness/conftest.py) validates on Set5, which it scores,
    by the opt-in: it runs, and its results are flagged."""
    from ray.job_submission import JobStatus

    out, logs = ray_job_sweep.out, ray_job_sweep.logs
    assert ray_job_sweep.status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "--allow-selection-on-test: runs validating on a scored set are flagged selected-on-test" in logs
    trials = pl.read_parquet(out / "trials.parquet").filter(pl.col("stage") == "gan")
    assert trials.height == 1 and trials["status"].to_list() == ["ok"]
    assert validation.SELECTED_ON_TEST in json.loads(trials["flags"][0]) and trials["selection"][0] == "final"
    run = json.loads((out / "run.json").read_text())
    assert run["validation"] == [{"kind": "benchmark", "set": "set5", "runs": ["v1-tiny"]}]
