"""The device-side batch stage (`srgan.batches`) gives the CPU path's samples; its parts against independent
references (per-sample `augment`, `imresize`); the training LR is on the 8-bit grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from srgan_helpers import micro, write_random_images

from srgan.batches import TrainingBatches
from srgan.data import FLIP_H, FLIP_V, ROT90, PatchDataset, augment, augment_batch, make_loader, make_lq
from srgan.resize import imresize, naive_downscale


@pytest.mark.parametrize(("name", "world"), [("v1", 1), ("v2", 1), ("v2", 2)])
def test_device_stage_gives_the_cpu_paths_samples(image_folder: Path, name: str, world: int) -> None:
    cfg = micro(name, data__batch_size=4)
    assert cfg.data.degradation == ("naive" if name == "v1" else "matlab") and cfg.data.augment
    dataset = PatchDataset([image_folder], scale=cfg.scale, patch_size=cfg.data.patch_size,
                           degradation=cfg.data.degradation, seed=cfg.train.seed)
    cpu = list(make_loader(dataset, global_batch=4, start_step=5, num_steps=4))
    shards = [list(TrainingBatches(cfg, [image_folder], device="cpu", start_step=5, num_steps=4, rank=r,
                                   world=world)) for r in range(world)]
    codes = set()
    for step, (lq_cpu, gt_cpu) in enumerate(cpu):
        lq = torch.cat([shard[step][0] for shard in shards])  # the ranks' shards make the global batch
        gt = torch.cat([shard[step][1] for shard in shards])
        assert lq.dtype == gt.dtype == torch.float32 and lq.shape == lq_cpu.shape and gt.shape == gt_cpu.shape
        torch.testing.assert_close(gt, gt_cpu, rtol=0, atol=0)  # the same pixels, flips and rotations
        torch.testing.assert_close(lq, lq_cpu, rtol=0, atol=1 / 255 + 1e-6)  # at most one 8-bit level apart
        assert (lq != lq_cpu).float().mean() < 0.01
        codes |= {dataset.draw(index)[1] for index in range((5 + step) * 4, (6 + step) * 4)}
    assert len(codes) >= 4  # several different augmentations were exercised


def test_sixteen_bit_images_take_the_wide_path(tmp_path: Path) -> None:
    folder = write_random_images(tmp_path / "train", count=2)
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (40, 44), dtype=np.uint16)
    Image.fromarray(arr).save(folder / "deep.png")  # 16-bit grayscale
    cfg = micro("v2", data__batch_size=8)
    dataset = PatchDataset([folder], scale=4, patch_size=24, seed=0)
    depths = {dataset.draw(i)[0].dtype for i in range(8, 16)}
    assert depths == {torch.uint8, torch.int32}  # batch 1 mixes 8- and 16-bit samples
    ((lq, gt),) = list(TrainingBatches(cfg, [folder], device="cpu", start_step=1, num_steps=1, dataset=dataset))
    lq_cpu, gt_cpu = next(iter(make_loader(dataset, global_batch=8, start_step=1, num_steps=1)))
    torch.testing.assert_close(gt, gt_cpu, rtol=0, atol=0)
    torch.testing.assert_close(lq, lq_cpu, rtol=0, atol=1 / 255 + 1e-6)


def test_augment_batch_applies_each_samples_transform() -> None:
    x = torch.arange(8 * 2 * 5 * 5, dtype=torch.int32).reshape(8, 2, 5, 5)
    codes = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    out = augment_batch(x, codes)
    for b, code in enumerate(codes.tolist()):
        (expected,) = augment(x[b], flip_h=bool(code & FLIP_H), flip_v=bool(code & FLIP_V), rot90=bool(code & ROT90))
        assert torch.equal(out[b], expected), code
    assert len({out[b].flatten()[:3].tolist().__repr__() for b in range(8)}) == 8  # the 8 symmetries differ


def test_training_lr_is_the_8_bit_matlab_bicubic() -> None:
    gt = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    lq = make_lq(gt, scale=4, degradation="matlab")
    reference = torch.stack([imresize(img.double(), scale=1 / 4) for img in gt])  # per image, in float64
    assert torch.equal(lq * 255, (lq * 255).round()) and lq.min() >= 0 and lq.max() <= 1
    assert (lq - reference).abs().max() <= 0.5 / 255 + 1e-6  # rounding to the grid, nothing else
    naive = make_lq(gt, scale=4, degradation="naive")
    assert torch.equal(naive * 255, (naive * 255).round())
    assert (naive - naive_downscale(gt, 4)).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="unknown degradation"):
        make_lq(gt, scale=4, degradation="blur")


def test_training_batches_length_and_placement(image_folder: Path) -> None:
    cfg = micro("v3")
    batches = TrainingBatches(cfg, [image_folder], device="cpu", start_step=0, num_steps=3)
    got = list(batches)
    assert len(batches) == len(got) == 3
    assert all(lq.device.type == "cpu" and lq.shape == (2, 3, 6, 6) and gt.shape == (2, 3, 24, 24)
               for lq, gt in got)
