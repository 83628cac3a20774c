"""prefetch: weight files land where TORCH_HOME-based loaders look; failures are named, exit non-zero."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from benchmarks import prefetch
from benchmarks.scoring import weights
from srgan.losses import vgg19_cache_path

PUBLISHED = ("vgg19-dcbb9e9d.pth", "alexnet-owt-7be5be79.pth", "LPIPS_v0.1_alex-df73285e.pth",
             "niqe_modelparameters.mat")


def test_files_land_in_torch_home_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    urls: list[str] = []

    def fake_download(url: str, dest: str, *args, **kwargs) -> None:
        urls.append(url)
        Path(dest).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    cache = tmp_path / "cache"
    assert prefetch.main(["--cache", str(cache)]) == 0
    assert f"TORCH_HOME={cache.resolve()}" in capsys.readouterr().out
    # the published file names, written here: VGG19 and AlexNet from torchvision, the LPIPS heads and NIQE's model
    # from pyiqa's weights repository
    assert sorted(url.rsplit("/", 1)[1] for url in urls) == sorted(PUBLISHED)
    # where the project's loaders look once TORCH_HOME points at the cache
    monkeypatch.setenv("TORCH_HOME", str(cache))
    assert vgg19_cache_path().read_bytes() == b"weights"
    assert weights.ALEXNET.cache_path().read_bytes() == b"weights"
    assert weights.LPIPS_HEADS.cache_path() == cache / "hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth"
    assert weights.LPIPS_HEADS.cache_path().is_file()
    assert weights.NIQE_PYIQA.cache_path() == cache / "hub/pyiqa/niqe_modelparameters.mat"  # where pyiqa looks
    # a second run downloads nothing
    urls.clear()
    assert prefetch.main(["--cache", str(cache)]) == 0 and urls == []


def test_failed_download_is_named_and_exits_nonzero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    def no_network(url: str, dest: str, *args, **kwargs) -> None:
        if "huggingface" in url:
            raise urllib.error.URLError("Name or service not known")
        Path(dest).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert prefetch.main(["--cache", str(tmp_path / "c")]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "LPIPS_v0.1_alex-df73285e.pth" in captured.out
    assert "2 of 4" in captured.err and "Name or service not known" in captured.err  # the LPIPS heads, NIQE's model
