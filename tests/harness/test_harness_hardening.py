"""Bad input and faults against the harness entry points: each gives a clear message naming the problem, and
nothing already computed is lost (issue 9)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness_helpers import PoisonRank, tiny_config, with_hook

from harness.run import train
from harness.run.runs import RunSpec, prepare_run
from harness.run.storage import run_folder
from harness.sweeps import sweep

REPO = Path(__file__).resolve().parents[2]


def _run(main, argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_sweep_refuses_a_folder_that_holds_results(capsys, data_root: Path, tmp_path: Path) -> None:
    """A folder holding a sweep (its sweep.json) is refused, with --resume suggested; a folder holding anything
    else is refused without suggesting a --resume that would fail (issue 18.9). Neither is touched, and the
    folder's claim (harness.run.lock) is given back."""
    out = tmp_path / "finished"
    out.mkdir()
    (out / "trials.parquet").write_bytes(b"a finished sweep's table")
    code, err = _run(sweep.main, ["--presets", "v1", "--data-root", str(data_root), "--out", str(out)], capsys)
    assert code == 2 and str(out) in err and "--out" in err and "--resume" not in err
    assert sorted(p.name for p in out.iterdir()) == ["trials.parquet"]  # untouched, no lock left behind
    (out / "sweep.json").write_text("{}")
    code, err = _run(sweep.main, ["--presets", "v1", "--data-root", str(data_root), "--out", str(out)], capsys)
    assert code == 2 and f"--resume {out}" in err
    assert (out / "trials.parquet").read_bytes() == b"a finished sweep's table"
    assert not (out / ".lock").exists()


def test_sweep_out_that_is_a_file_suggests_a_folder(capsys, data_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    code, err = _run(sweep.main, ["--presets", "v1", "--data-root", str(data_root), "--out", str(target)], capsys)
    assert code == 2 and str(target) in err and "is a file" in err and "folder" in err
    assert "--resume" not in err  # --resume FILE cannot work
    assert target.read_text() == "not a folder"


def test_sweep_resume_of_a_corrupt_state_names_the_file(capsys, tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text("{not json")
    code, err = _run(sweep.main, ["--resume", str(tmp_path)], capsys)
    assert code == 2 and str(tmp_path / "sweep.json") in err and "JSON" in err
    (tmp_path / "sweep.json").write_text(json.dumps({"started": 1}))
    code, err = _run(sweep.main, ["--resume", str(tmp_path)], capsys)
    assert code == 2 and "corrupt sweep state" in err


@pytest.mark.parametrize("name", ["../../..", "a/b", "..", "/etc", ""])
def test_run_names_stay_inside_the_results_root(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain folder name|outside"):
        run_folder(tmp_path, name)
    assert run_folder(tmp_path, "v2-x4") == (tmp_path / "v2-x4").resolve()


def test_config_name_cannot_move_the_run_folder(capsys, data_root: Path, tmp_path: Path) -> None:
    code, err = _run(train.main, ["--preset", "v1-tiny", "--set", "name=../../..", "--storage", str(tmp_path),
                                  "--data-root", str(data_root), "--dry-run"], capsys)
    assert code == 2 and "plain folder name" in err
    assert list(tmp_path.iterdir()) == []


def test_a_run_folder_is_resumed_only_by_the_same_config(data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    v2 = tiny_config(data_root, name="v2-tiny")
    prepare_run(RunSpec(cfg=v2, run_dir=run_dir, data_root=data_root))
    before = (run_dir / "config.json").read_text()
    prepare_run(RunSpec(cfg=v2, run_dir=run_dir, data_root=data_root))  # the same run: resumable
    (run_dir / "history.jsonl").write_text(json.dumps({"step": 1, "phase": "warmup"}) + "\n")  # it trained
    v1 = tiny_config(data_root, name="v1-tiny")
    with pytest.raises(ValueError) as err:
        prepare_run(RunSpec(cfg=v1, run_dir=run_dir, data_root=data_root))
    message = str(err.value)
    assert "already holds a different run" in message and "name" in message and "generator.output" in message
    assert json.loads((run_dir / "config.json").read_text())["config"]["name"] == "v2-tiny"
    assert json.loads(before)["config"] == json.loads((run_dir / "config.json").read_text())["config"]


def test_a_run_that_failed_before_its_first_step_leaves_a_reusable_folder(data_root: Path, tmp_path: Path) -> None:
    """18.4: a run that failed in its worker before training a step (config.json written, FAILED, no history and
    no checkpoint) blocked `--name` as "a different run". Such a folder takes the next config; one that trained
    (a checkpoint) is still refused."""
    run_dir = tmp_path / "run"
    prepare_run(RunSpec(cfg=tiny_config(data_root, name="v2-tiny"), run_dir=run_dir, data_root=data_root))
    (run_dir / "FAILED").write_text("training failed: before its first step\n")
    v1 = tiny_config(data_root, name="v1-tiny")
    prepare_run(RunSpec(cfg=v1, run_dir=run_dir, data_root=data_root))
    assert json.loads((run_dir / "config.json").read_text())["config"]["name"] == "v1-tiny"
    assert not (run_dir / "FAILED").exists()  # the reason of the old run no longer describes the folder
    (run_dir / "checkpoint_0000002").mkdir()
    with pytest.raises(ValueError, match="already holds a different run"):
        prepare_run(RunSpec(cfg=tiny_config(data_root, name="v2-tiny"), run_dir=run_dir, data_root=data_root))


def test_an_interrupted_study_names_its_own_resume(capsys, monkeypatch, data_root: Path, tmp_path: Path) -> None:
    """18.6: Ctrl-C on a study printed `python -m harness.sweep --resume DIR`, which then finished no study. The
    message names the study's command, whichever entry point resumes it, and `harness.sweep --resume` of a study
    folder resumes the study (its entry and kind come from sweep.json). Tune returning early after Ctrl-C is
    simulated (no Ray starts); the real interrupt is in test_harness_resume_damage.py."""
    from harness.sweeps import study

    monkeypatch.setattr(sweep.local_ray, "init_ray", lambda address=None: None)
    monkeypatch.setattr(sweep, "run_stages", lambda *args, **kwargs: False)
    out = tmp_path / "study"
    argv = ["--size", "tiny", "--seeds", "1", "--datasets", "set5", "--vgg-fallback", "untrained", "--out", str(out),
            "--data-root", str(data_root), "--no-report"]
    code, err = _run(study.main, argv, capsys)
    assert code == 130 and f"continue it with: python -m harness.study --resume {out}" in err
    assert not (out / ".lock").exists()  # the claim is given back on the way out
    code, err = _run(sweep.main, ["--resume", str(out)], capsys)
    assert code == 130 and f"python -m harness.study --resume {out}" in err
    _, resumed, resuming, claim = sweep.open_folder(sweep.Launch(sweep.plan.SweepRequest(), entry="harness.sweep",
                                                                 argv=["--resume", str(out)], resume=str(out)))
    claim.release()
    assert resuming and resumed.entry == "harness.study" and resumed.request.kind == "study"
    assert resumed.request == study.study_request(study.build_parser().parse_args(argv))


@pytest.mark.slow
def test_divergence_exits_non_zero_with_the_reason_recorded(capsys, local_ray, data_root: Path,
                                                           tmp_path: Path) -> None:
    """`harness.train`'s main in this process, on the session's Ray."""
    code, err = _run(train.main, ["--preset", "v2-tiny", "--storage", str(tmp_path), "--name", "nan",
                                  "--data-root", str(data_root), "--set", "optim.lr_g=1e6", "--set", "optim.lr_d=1e6",
                                  "--set", "train.warmup_steps=6", "--set", "train.gan_steps=6",
                                  "--set", "train.log_every=1"], capsys)
    assert code == 1, err[-3000:]
    history = [json.loads(line) for line in (tmp_path / "nan" / "history.jsonl").read_text().splitlines()]
    reasons = [r["diverged_reason"] for r in history if r.get("diverged")]
    assert len(reasons) == 1 and ("nan" in reasons[0] or "inf" in reasons[0]) and "step" in reasons[0]
    assert f"diverged: {reasons[0]}" in err
    assert (tmp_path / "nan" / "FAILED").read_text().startswith("diverged:")


@pytest.mark.slow
def test_ctrl_c_stops_harness_train_with_130(data_root: Path, tmp_path: Path) -> None:
    """README's exit codes: 130 interrupted (harness.train had none: a KeyboardInterrupt traceback). Ctrl-C is a
    SIGINT to the terminal's process group, sent once the run has trained a step."""
    import os
    import signal

    cmd = [sys.executable, "-m", "harness.train", "--preset", "v2-tiny", "--storage", str(tmp_path), "--name", "long",
           "--data-root", str(data_root), "--set", "train.warmup_steps=5000", "--set", "train.gan_steps=0",
           "--set", "train.log_every=1"]
    log = tmp_path / "driver.log"
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    history = tmp_path / "long" / "history.jsonl"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (history.exists() and history.read_text().strip()):
            assert driver.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        os.killpg(driver.pid, signal.SIGINT)
        assert driver.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert "interrupted" in log.read_text() and "--name long" in log.read_text()


@pytest.mark.slow
def test_divergence_on_one_rank_stops_every_rank(local_ray, data_root: Path, tmp_path: Path) -> None:
    """Rank 1's generator turns NaN after 3 steps: both ranks stop at the next collection with the same reason
    (the non-finite flag is all-reduced there), instead of rank 0 waiting forever in a collective."""
    from harness.run.train import fit
    from harness.run.worker import read_history

    cfg = tiny_config(data_root, steps=(3, 5))  # logs (collects) every step
    spec = prepare_run(RunSpec(cfg=cfg, run_dir=tmp_path / "nan-ddp", data_root=data_root, workers=2))
    started = time.time()
    fit(spec, loop=with_hook(PoisonRank(step=3, rank=1)))
    assert time.time() - started < 180
    history = read_history(spec.run_dir)
    diverged = [row for row in history if row.get("diverged")]
    assert len(diverged) == 1 and diverged[0]["step"] == 4
    assert "step 3" in diverged[0]["diverged_reason"] and "nan" in diverged[0]["diverged_reason"]
    assert max(row["step"] for row in history) == 4  # nobody trained on


@pytest.mark.slow
def test_a_sweep_whose_every_trial_failed_exits_non_zero(data_root: Path, tmp_path: Path) -> None:
    """v3 (single stage here) without VGG19 weights and without the opt-in: every trial fails; the sweep says
    so and exits 1."""
    out = tmp_path / "failing"
    cmd = [sys.executable, "-m", "harness.sweep", "--presets", "v3", "--grid", "loss.adv_weight=0.001",
           "--steps", "0", "--set", "train.warmup_steps=0", "--set", "train.gan_steps=2", "--datasets", "set5",
           "--scheduler", "none", "--out", str(out), "--data-root", str(data_root), "--no-report"]
    env = {"TORCH_HOME": str(tmp_path / "empty-torch-home")}
    import os

    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400, env={**os.environ, **env})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every trial of the sweep failed" in done.stderr
    import polars as pl

    trials = pl.read_parquet(out / "trials.parquet").filter(pl.col("status") != "baseline")
    assert trials["status"].to_list() and set(trials["status"]) == {"failed"}
    assert all("VGG19" in e or "vgg19" in e for e in trials["error"].to_list())


def test_a_patch_larger_than_every_training_image_fails_before_ray(capsys, data_root: Path, tmp_path: Path) -> None:
    code, err = _run(train.main, ["--preset", "v1-tiny", "--data-root", str(data_root), "--storage", str(tmp_path),
                                  "--set", f"data.train_dirs={data_root / 'Set5' / 'LRbicx4'}",
                                  "--set", "data.patch_size=400"], capsys)
    assert code == 2 and "400" in err and "LRbicx4" in err
    assert list(tmp_path.iterdir()) == []  # no run folder was made


def test_a_corrupt_config_in_the_run_folder_is_named(capsys, data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{half a config")
    code, err = _run(train.main, ["--preset", "v1-tiny", "--data-root", str(data_root), "--storage", str(tmp_path),
                                  "--name", "old"], capsys)
    assert code == 2 and str(tmp_path / "old") in err and "unreadable run" in err
    assert (tmp_path / "old" / "config.json").read_text() == "{half a config"
