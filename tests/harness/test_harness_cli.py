"""Bad input reaches the user as a clear error before Ray starts any worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.run import runs, train
from harness.sweeps import cli, study, sweep


@pytest.fixture(autouse=True)
def _no_ray_no_network(monkeypatch, tmp_path: Path):
    # an empty hub cache and no downloads: the VGG19 check must fail fast and clearly
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*_args, **_kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    yield
    import ray

    assert not ray.is_initialized(), "Ray was started although the input was bad"


def _run(main, argv: list[str], capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_unknown_preset(capsys, data_root: Path) -> None:
    err = _run(train.main, ["--preset", "v9", "--data-root", str(data_root)], capsys)
    assert "unknown preset 'v9'" in err and "v1" in err


def test_unknown_config_key(capsys, data_root: Path) -> None:
    err = _run(train.main, ["--preset", "v1-tiny", "--set", "loss.adv_wieght=1e-3", "--data-root", str(data_root)],
               capsys)
    assert "unknown config key: loss.adv_wieght" in err


def test_bad_literal_value(capsys, data_root: Path) -> None:
    err = _run(train.main, ["--preset", "v1-tiny", "--set", "loss.adv_type=wgan", "--data-root", str(data_root)],
               capsys)
    assert "loss.adv_type" in err and "'relativistic'" in err


def test_more_workers_than_cpus(capsys, data_root: Path) -> None:
    err = _run(train.main, ["--preset", "v1-tiny", "--workers", "64", "--data-root", str(data_root)], capsys)
    assert "impossible resource request" in err and "64 worker(s)" in err


def test_missing_training_folder(capsys, data_root: Path, tmp_path: Path) -> None:
    err = _run(train.main, ["--preset", "v1-tiny", "--data-root", str(data_root), "--set",
                            f"data.train_dirs={tmp_path / 'nowhere'}"], capsys)
    assert "training folder not found" in err and str(tmp_path / "nowhere") in err


def test_missing_data_root(capsys, tmp_path: Path) -> None:
    err = _run(train.main, ["--preset", "v1-tiny", "--data-root", str(tmp_path / "empty")], capsys)
    assert str(tmp_path / "empty") in err


def test_missing_vgg_weights_without_opt_in(capsys, data_root: Path, tmp_path: Path) -> None:
    err = _run(train.main, ["--preset", "v3-tiny", "--data-root", str(data_root)], capsys)
    assert "VGG19 ImageNet weights not found" in err
    assert str(tmp_path / "torch") in err  # names the cache path to seed


def test_vgg_opt_in_is_recorded(data_root: Path) -> None:
    args = train.build_parser().parse_args(["--preset", "v3-tiny", "--vgg-fallback", "untrained",
                                            "--data-root", str(data_root)])
    spec = train.make_spec(args)
    assert spec.cfg.loss.perceptual_weights == "untrained"
    from srgan.checkpoint import run_flags

    assert run_flags(spec.cfg) == ["untrained-perceptual-vgg19"]


def test_sweep_unknown_preset_and_key(capsys, data_root: Path, tmp_path: Path) -> None:
    err = _run(sweep.main, ["--presets", "v1,v7", "--data-root", str(data_root), "--out", str(tmp_path / "s")],
               capsys)
    assert "unknown preset 'v7'" in err
    err = _run(sweep.main, ["--grid", "loss.bogus=1,2", "--data-root", str(data_root), "--out", str(tmp_path / "s")],
               capsys)
    assert "unknown config key: loss.bogus" in err


def test_sweep_impossible_resources(capsys, data_root: Path, tmp_path: Path) -> None:
    err = _run(sweep.main, ["--workers-per-trial", "3", "--presets", "v1", "--data-root", str(data_root),
                            "--out", str(tmp_path / "s")], capsys)
    assert "impossible resource request" in err


def test_sweep_unknown_dataset(capsys, data_root: Path, tmp_path: Path) -> None:
    err = _run(sweep.main, ["--presets", "v1", "--datasets", "set5,set99", "--data-root", str(data_root),
                            "--out", str(tmp_path / "s")], capsys)
    assert "set99" in err


def test_resume_of_a_folder_that_is_no_sweep(capsys, tmp_path: Path) -> None:
    err = _run(sweep.main, ["--resume", str(tmp_path)], capsys)
    assert "not a sweep folder" in err


# ------------------------------------------------------------------------ issue 18: checks before anything runs


def _refused(main, argv: list[str], capsys) -> tuple[str, str]:
    assert main(argv) == 2
    captured = capsys.readouterr()
    return captured.out, captured.err


def _cut_off(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _gan_args(init: Path, data_root: Path, storage: Path, *extra: str) -> list[str]:
    return ["--preset", "v3-tiny", "--init-from", str(init), "--vgg-fallback", "untrained", "--storage", str(storage),
            "--name", "gan", "--data-root", str(data_root), *extra]


def test_init_from_missing_is_refused_before_the_plan(capsys, data_root: Path, tmp_path: Path) -> None:
    """18.4: a missing --init-from passed --dry-run and failed in the worker ~38 s later."""
    out, err = _refused(train.main, _gan_args(tmp_path / "nowhere", data_root, tmp_path / "runs", "--dry-run"), capsys)
    assert str(tmp_path / "nowhere") in err and "not found" in err
    assert "plan:" not in out  # refused before the dry run's plan
    assert not (tmp_path / "runs").exists()


def test_init_from_checked_in_the_driver(capsys, data_root: Path, tmp_path: Path, make_checkpoint) -> None:
    """An intact source of the right network passes the dry run; the same file cut off, a source of another scale
    and one of another generator are refused naming the file and what differs. Nothing is written."""
    good = make_checkpoint(scale=4, name="good")
    assert train.main(_gan_args(good, data_root, tmp_path / "runs", "--dry-run")) == 0
    assert f"from {good}" in capsys.readouterr().out
    cut = make_checkpoint(scale=4, name="cut")
    _cut_off(cut / "generator.safetensors")
    _, err = _refused(train.main, _gan_args(cut, data_root, tmp_path / "runs", "--dry-run"), capsys)
    assert str(cut / "generator.safetensors") in err and "not a valid safetensors file" in err
    x2 = make_checkpoint(scale=2, name="x2")
    _, err = _refused(train.main, _gan_args(x2, data_root, tmp_path / "runs", "--dry-run"), capsys)
    assert "scale: source 2, config 4" in err
    # an RRDB network cannot start from an SRResNet checkpoint
    _, err = _refused(train.main, ["--preset", "esrgan-tiny", "--init-from", str(good), "--vgg-fallback", "untrained",
                                   "--storage", str(tmp_path / "runs"), "--data-root", str(data_root), "--dry-run"],
                      capsys)
    assert str(good) in err and "generator.arch" in err
    # without --dry-run too: refused before any folder is made or Ray starts
    _, err = _refused(train.main, _gan_args(cut, data_root, tmp_path / "runs"), capsys)
    assert "not a valid safetensors file" in err
    assert not (tmp_path / "runs").exists()


def test_init_from_outside_a_gan_stage(capsys, data_root: Path, tmp_path: Path, make_checkpoint) -> None:
    _, err = _refused(train.main, _gan_args(make_checkpoint(), data_root, tmp_path, "--stage", "pretrain"), capsys)
    assert "--init-from" in err and "--stage pretrain" in err


@pytest.mark.parametrize("main", [sweep.main, study.main])
@pytest.mark.parametrize("datasets", [",", " , ", ""])
def test_datasets_naming_nothing_are_refused(capsys, data_root: Path, tmp_path: Path, main, datasets) -> None:
    """18.5: `--datasets ,` trained the whole study, scored nothing and exited 0."""
    _, err = _refused(main, ["--datasets", datasets, "--data-root", str(data_root), "--out", str(tmp_path / "s")],
                      capsys)
    assert "--datasets" in err and "names no dataset" in err
    assert not (tmp_path / "s").exists()


def test_datasets_are_normalised_and_deduplicated(data_root: Path) -> None:
    """18.5: "set5,Set5, set5" scored set5 three times and listed set5 and Set5 apart."""
    args = cli.sweep_parser().parse_args(["--datasets", "set5,Set5, set5,SET14"])
    assert cli.request_from_args(args).datasets == ("set5", "set14")
    args = study.build_parser().parse_args(["--datasets", "set5,Set5, set5"])
    assert study.study_request(args).datasets == ("set5",)


@pytest.mark.parametrize("entry", ["train", "sweep", "study"])
def test_results_root_that_is_a_file(capsys, monkeypatch, data_root: Path, tmp_path: Path, entry: str) -> None:
    """18.9: ENHANCE_RESULTS pointing at a file gave a traceback, even with --dry-run."""
    target = tmp_path / "results-file"
    target.write_text("x")
    monkeypatch.setenv("ENHANCE_RESULTS", str(target))
    main = {"train": train.main, "sweep": sweep.main, "study": study.main}[entry]
    argv = ["--preset", "v1-tiny"] if entry == "train" else ["--presets", "v1"] if entry == "sweep" else []
    _, err = _refused(main, [*argv, "--data-root", str(data_root), "--dry-run"], capsys)
    assert "ENHANCE_RESULTS" in err and str(target) in err and "is a file" in err
    assert target.read_text() == "x"


def test_a_name_too_long_for_the_file_system(capsys, data_root: Path, tmp_path: Path) -> None:
    """18.9: a 300-character --name gave a traceback, even with --dry-run."""
    _, err = _refused(train.main, ["--preset", "v1-tiny", "--name", "n" * 300, "--storage", str(tmp_path),
                                   "--data-root", str(data_root), "--dry-run"], capsys)
    assert "--name" in err and "300 bytes" in err
    _, err = _refused(sweep.main, ["--presets", "v1", "--out", str(tmp_path / ("o" * 300)), "--data-root",
                                   str(data_root), "--dry-run"], capsys)
    assert "--out" in err and "300 bytes" in err
    assert list(tmp_path.iterdir()) == []


def test_results_inside_the_data_root_are_refused(capsys, data_root: Path) -> None:
    """18.9: --out inside the data root was accepted (results mixed with the data a training scan reads)."""
    inside = data_root / "train" / "results"
    _, err = _refused(sweep.main, ["--presets", "v1", "--out", str(inside), "--data-root", str(data_root)], capsys)
    assert "inside the data root" in err and str(inside.resolve()) in err
    _, err = _refused(study.main, ["--size", "tiny", "--out", str(data_root), "--data-root", str(data_root)], capsys)
    assert "inside the data root" in err
    _, err = _refused(train.main, ["--preset", "v1-tiny", "--storage", str(data_root), "--data-root", str(data_root)],
                      capsys)
    assert "inside the data root" in err
    assert not inside.exists()


def test_a_dry_run_writes_nothing(capsys, monkeypatch, data_root: Path, tmp_path: Path) -> None:
    """18.9: --dry-run wrote step_times.json into --out. It still reads a cache that is there."""
    monkeypatch.delenv("ENHANCE_STEP_TIMES")  # the default: each results folder's own cache
    out = tmp_path / "sweep"
    assert sweep.main(["--presets", "v1", "--grid", "none", "--steps", "4", "--datasets", "set5", "--out", str(out),
                       "--data-root", str(data_root), "--dry-run"]) == 0
    assert "(measured)" in capsys.readouterr().out
    assert not out.exists()
    storage = tmp_path / "train"
    assert train.main(["--preset", "v1-tiny", "--storage", str(storage), "--data-root", str(data_root),
                       "--dry-run"]) == 0
    assert "cost estimate" in capsys.readouterr().out
    assert not storage.exists()
    # a cache a real launch left in the results root is used, and left as it was
    argv = ["--preset", "v1-tiny", "--storage", str(storage), "--data-root", str(data_root)]
    runs.run_plan(train.make_spec(train.build_parser().parse_args(argv)))
    cache = storage / "step_times.json"
    before = cache.read_bytes()
    assert train.main([*argv, "--dry-run"]) == 0
    assert "(cached)" in capsys.readouterr().out
    assert cache.read_bytes() == before and [p.name for p in storage.iterdir()] == ["step_times.json"]


def test_a_size_trains_its_own_steps_in_a_sweep_and_in_a_study(tmp_path: Path) -> None:
    """One size, one schedule: `harness.sweep --size cpu` and `harness.study --size cpu` both train v2 for the cpu
    size's own pretraining and GAN steps (srgan.versions' v2-cpu), unless --steps says otherwise."""
    from harness.sweeps import plan
    from srgan.versions import preset

    own = preset("v2-cpu").train
    sweep_request = cli.request_from_args(cli.sweep_parser().parse_args(
        ["--presets", "v2", "--size", "cpu", "--grid", "none"]))
    study_request = study.study_request(study.build_parser().parse_args(["--size", "cpu", "--ladder", "none"]))
    for request in (sweep_request, study_request):
        settings = plan.settings_from(request, tmp_path)
        cfg = plan._recipe(settings, {"preset": "v2"})
        assert (cfg.train.warmup_steps, cfg.train.gan_steps) == (own.warmup_steps, own.gan_steps)
    chosen = cli.request_from_args(cli.sweep_parser().parse_args(["--presets", "v2", "--size", "cpu",
                                                                  "--steps", "100"]))
    cfg = plan._recipe(plan.settings_from(chosen, tmp_path), {"preset": "v2"})
    assert cfg.train.total_steps == 100 and cfg.train.warmup_steps > 0  # the preset's warmup share kept


def test_a_planned_trial_config_is_resolved_once_and_carried(tmp_path: Path, monkeypatch) -> None:
    """The study's plan resolves every trial's config (GAN trials, controls, ladder arms, v1's equal budget) and the
    trial reads it from the settings it is given: no resolution at trial time, and the same config a resolution
    from scratch gives."""
    from dataclasses import replace

    from harness.sweeps import plan
    from harness.sweeps.recovery import params_key

    request = study.study_request(study.build_parser().parse_args(["--size", "cpu", "--vgg-fallback", "untrained"]))
    sweep_plan = plan.plan_sweep(request, tmp_path)
    params = [p for p, _ in sweep_plan.trials]
    assert {params_key(p) for p in params} == set(sweep_plan.settings.configs)  # every trial's config carried
    fresh = [plan.run_config(replace(sweep_plan.settings, configs={}), p) for p in params]
    assert fresh == sweep_plan.runs  # what the trial would resolve itself

    def no_resolving(*_a, **_k):
        raise AssertionError("a planned trial's config was resolved again")

    monkeypatch.setattr(plan, "_recipe", no_resolving)
    assert [plan.run_config(sweep_plan.settings, p) for p in params] == sweep_plan.runs


def test_harness_train_checks_a_run_once_before_it_trains(tmp_path: Path, monkeypatch, data_root: Path) -> None:
    """`harness.train` checks the run's inputs (data, validation images, init source) once, before it claims the
    folder; after the claim only the run folder is checked again. Ray is not started (`_train` is replaced)."""
    calls = {"inputs": 0, "folder": 0}
    for name in calls:
        real = getattr(runs, "check_inputs" if name == "inputs" else "check_run_folder")

        def counted(spec, _real=real, _name=name):
            calls[_name] += 1
            return _real(spec)

        monkeypatch.setattr(runs, "check_inputs" if name == "inputs" else "check_run_folder", counted)
    monkeypatch.setattr(train, "_train", lambda spec, args: 0)
    assert train.main(["--preset", "v1-tiny", "--storage", str(tmp_path), "--data-root", str(data_root),
                       "--name", "once"]) == 0
    assert calls == {"inputs": 1, "folder": 2}  # the folder: before the claim and once held
    assert (tmp_path / "once" / "config.json").is_file()
