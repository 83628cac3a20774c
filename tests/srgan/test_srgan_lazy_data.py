"""Large training folders are decoded per sample: same samples as in memory; a file whose header reads but
whose pixels do not is skipped at sample time with a log line."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from srgan_helpers import write_random_images

from srgan.data import PatchDataset


def test_lazy_decoding_gives_the_same_samples(tmp_path: Path) -> None:
    folder = write_random_images(tmp_path / "train", count=4)
    cached = PatchDataset([folder], scale=4, patch_size=24, seed=3, in_memory=True)
    lazy = PatchDataset([folder], scale=4, patch_size=24, seed=3, in_memory=False)
    assert all(img is None for _, img in lazy.images)  # nothing decoded up front
    for i in (0, 5, 99):
        assert all(torch.equal(a, b) for a, b in zip(cached[i], lazy[i], strict=True))


def test_lazy_mode_skips_a_file_that_fails_to_decode(tmp_path: Path, caplog) -> None:
    folder = write_random_images(tmp_path / "train", count=3)
    victim = sorted(folder.iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # the PNG header (size) still reads; the pixels do not
    lazy = PatchDataset([folder], scale=4, patch_size=24, seed=0, in_memory=False)
    assert len(lazy.images) == 3  # header-only scan cannot see the truncation
    with caplog.at_level(logging.WARNING, logger="srgan.data"):
        samples = [lazy[i] for i in range(40)]
    assert all(gt.shape == (3, 24, 24) for _, gt in samples)
    assert [r.getMessage() for r in caplog.records if victim.name in r.getMessage()][:1]
    assert sum(victim.name in r.getMessage() for r in caplog.records) == 1  # logged once
