"""Bad input reaches the user as a clear error before Ray starts any worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness import sweep, train


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
