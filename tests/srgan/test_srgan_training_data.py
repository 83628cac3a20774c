"""PatchDataset over folders with bad files, 16-bit and grayscale images; duplicates; the step sampler."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan.data import PatchDataset, StepSampler, make_loader, scan_training_images
from srgan.images import load_image
from srgan.prepare import write_png


def rgb8(folder: Path, name: str, size: tuple[int, int] = (40, 56), seed: int = 0) -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(folder / name)
    return folder / name


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "messy"
    folder.mkdir()
    rgb8(folder, "good.png")
    good = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(rgb8(folder, "t.png", seed=1).read_bytes()[:300])
    (folder / "t.png").unlink()
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "fake.jpg").write_text("text with an image suffix\n")
    rgb8(folder, "small.png", size=(20, 60), seed=2)  # 20 px high: smaller than a 24-px patch
    gray = np.random.default_rng(3).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(folder / "gray.png")
    gray16 = np.full((30, 30), 40000, dtype=np.uint16)
    gray16[0, 0] = 65535
    Image.fromarray(gray16).save(folder / "gray16.png")  # PIL writes mode I;16 as a 16-bit grayscale PNG
    rgb16 = torch.zeros(3, 28, 28, dtype=torch.int32)
    rgb16[0], rgb16[1], rgb16[2] = 65535, 32768, 257
    write_png(rgb16, folder / "rgb16.png")
    assert (folder / "good.png").read_bytes() == good
    return folder


def test_bad_files_are_skipped_once_with_their_reason(messy_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="srgan.data"):
        ds = PatchDataset([messy_folder], scale=4, patch_size=24, seed=0)
    kept = sorted(p.name for p, _ in ds.images)
    assert kept == ["good.png", "gray.png", "gray16.png", "rgb16.png"]
    reasons = {s.path.name: s.reason for s in ds.skipped}
    assert set(reasons) == {"truncated.png", "empty.png", "notes.txt", "fake.jpg", "small.png"}
    assert "truncated" in reasons["truncated.png"] or "corrupt" in reasons["truncated.png"]
    assert "empty" in reasons["empty.png"] and "0 bytes" in reasons["empty.png"]
    assert "not an image" in reasons["notes.txt"]
    assert "not a readable image" in reasons["fake.jpg"]
    assert "too small" in reasons["small.png"] and "60x20" in reasons["small.png"]
    for name, reason in reasons.items():
        records = [r for r in caplog.records if name in r.getMessage()]
        assert len(records) == 1, f"{name} logged {len(records)} times"
        assert reason in records[0].getMessage() and records[0].levelno == logging.WARNING
    for name in kept:
        assert not any(name in r.getMessage() for r in caplog.records)
    lq, gt = ds[0]
    assert lq.shape == (3, 6, 6) and gt.shape == (3, 24, 24)


def test_16_bit_and_grayscale_images_are_scaled_correctly(messy_folder: Path) -> None:
    rgb16 = load_image(messy_folder / "rgb16.png")
    assert rgb16.shape == (3, 28, 28) and rgb16.dtype == torch.float32
    assert rgb16[0].eq(1.0).all()
    torch.testing.assert_close(rgb16[1], torch.full((28, 28), 32768 / 65535))
    torch.testing.assert_close(rgb16[2], torch.full((28, 28), 257 / 65535))  # = 1/255, not 257/255 clipped
    gray16 = load_image(messy_folder / "gray16.png")
    assert gray16.shape == (3, 30, 30)
    assert gray16[:, 0, 0].eq(1.0).all()
    torch.testing.assert_close(gray16[:, 1, 1], torch.full((3,), 40000 / 65535))
    gray = load_image(messy_folder / "gray.png")
    raw = np.asarray(Image.open(messy_folder / "gray.png"), dtype=np.float32) / 255
    for c in range(3):
        torch.testing.assert_close(gray[c], torch.from_numpy(raw))
    # patches of the 16-bit image keep its depth (40000/65535 is not on the 8-bit grid)
    ds = PatchDataset([messy_folder], scale=4, patch_size=24, augment=False, seed=0)
    values = set()
    for i in range(40):
        _, gt = ds[i]
        values |= set(torch.unique(gt).tolist())
    assert any(abs(v - 40000 / 65535) < 1e-6 for v in values)


def test_empty_or_all_bad_folder_is_a_clear_error_before_training(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no usable training images"):
        PatchDataset([empty], scale=4, patch_size=24)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    (bad / "b.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no usable training images .*2 file\(s\) skipped"):
        PatchDataset([bad], scale=4, patch_size=24)
    with pytest.raises(FileNotFoundError, match="training folder not found"):
        PatchDataset([tmp_path / "missing"], scale=4, patch_size=24)


def test_t91_duplicate_is_kept_once(data: Path) -> None:
    t91 = data / "train" / "T91"
    assert (t91 / "t36.bmp").read_bytes() == (t91 / "t65.bmp").read_bytes()
    images, skipped = scan_training_images([t91], min_size=1)
    assert len(images) == 90
    assert [(s.path.name, s.reason) for s in skipped] == [("t65.bmp", "byte-identical duplicate of t36.bmp")]


def test_samples_depend_only_on_seed_and_index(image_folder: Path) -> None:
    ds = PatchDataset([image_folder], scale=4, patch_size=24, seed=5)
    again = PatchDataset([image_folder], scale=4, patch_size=24, seed=5)
    other = PatchDataset([image_folder], scale=4, patch_size=24, seed=6)
    for i in (0, 7, 123456):
        assert all(torch.equal(a, b) for a, b in zip(ds[i], again[i], strict=True))
    assert not all(torch.equal(ds[i][1], other[i][1]) for i in range(4))
    # the LR of a matlab-degradation sample is the MATLAB-compatible bicubic downscale of its HR patch
    from srgan.images import quantize
    from srgan.resize import bicubic_downscale

    lq, gt = ds[3]
    torch.testing.assert_close(lq, quantize(bicubic_downscale(gt, 4)))  # on the 8-bit grid, as the papers' LR


def test_step_sampler_resumes_and_splits_global_batches() -> None:
    whole = list(StepSampler(global_batch=4, start_step=0, num_steps=5))
    assert whole == list(range(20))
    assert list(StepSampler(global_batch=4, start_step=3, num_steps=2)) == whole[12:20]
    ranks = [list(StepSampler(global_batch=4, start_step=0, num_steps=5, rank=r, world=2)) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == whole
    assert ranks[0][:2] == [0, 1] and ranks[1][:2] == [2, 3]
    with pytest.raises(ValueError, match="not divisible"):
        StepSampler(global_batch=5, num_steps=1, world=2)


def test_make_loader_batches_follow_the_global_stream(image_folder: Path) -> None:
    ds = PatchDataset([image_folder], scale=4, patch_size=24, seed=0)
    batches = list(make_loader(ds, global_batch=3, start_step=2, num_steps=2))
    assert len(batches) == 2
    lq, gt = batches[1]
    assert lq.shape == (3, 3, 6, 6) and gt.shape == (3, 3, 24, 24)
    assert torch.equal(gt[0], ds[9][1])  # step 3, first sample: index 3 * 3
