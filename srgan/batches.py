"""Training batches made on the training device: the loader ships raw HR patches, the device does the rest.

    batches = TrainingBatches(cfg, folders, device=device, start_step=engine.step,
                              num_steps=engine.total_steps - engine.step, rank=rank, world=world)
    for lq, gt in batches:        # float32 (B, 3, P/s, P/s) and (B, 3, P, P) in [0, 1], on `device`
        engine.train_step(lq, gt)

Why: making the LR on the CPU (a MATLAB bicubic per patch) and shipping float pairs cost the loader most of its
time and 4x the bytes; a GPU step that no longer waits on the host would starve on it (issue 10). So:
- the loader's workers only decode, crop and draw each sample's augmentation (`PatchDataset.draw`): uint8 HR
  patches (int32 for a batch holding a 16-bit image) plus one code per sample, in pinned memory on CUDA;
- the batch stage copies them with `non_blocking=True` and, on the device, applies each sample's flips and
  transpose (`augment_batch`: three selects over the batch), converts to float, builds the LR for the whole
  batch (`make_lq`: the batched MATLAB bicubic or v1's naive bicubic, then the 8-bit grid).

The samples are those of the CPU path (`PatchDataset.__getitem__`) for the same seed and index, to float
tolerance (the same code runs on a batch instead of one image), so resumed and DDP runs see the stream a single
uninterrupted process sees. Nothing here synchronises with the host after the first batch (the resize matrices
are copied to the device once).

kornia is not used, nor a dependency (the README's "GPUs" section says why): its resize is not MATLAB's
antialiased bicubic (the papers' LR, which `make_lq` must reproduce), and its random augmentations draw their
parameters from the global RNG, which would break "sample i depends only on (seed, i)"; the flips and transposes
are three torch ops.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import torch

from srgan.config import ExperimentConfig
from srgan.data import PatchDataset, augment_batch, make_loader, make_lq


def device_batch(pixels: torch.Tensor, peak: torch.Tensor, codes: torch.Tensor, *, scale: int, degradation: str,
                 device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """One loader batch (`srgan.data.collate_hr`) to (lq, gt) float tensors on `device`."""
    device = torch.device(device)
    pixels = pixels.to(device, non_blocking=True)
    peak = peak.to(device, non_blocking=True)
    codes = codes.to(device, non_blocking=True)
    gt = augment_batch(pixels, codes).float() / peak.view(-1, 1, 1, 1)  # (B, 3, P, P), as `to_float`
    lq = make_lq(gt, scale=scale, degradation=degradation)  # (B, 3, P/s, P/s), 8-bit grid
    return lq, gt


class TrainingBatches:
    """An iterable of (lq, gt) batches on the device for steps `start_step`... of rank `rank` of `world`.

    `folders` are the resolved training folders; `num_workers` defaults to `cfg.data.num_workers`; pass `dataset`
    to reuse an already scanned `PatchDataset`. `dataset` (with its `skipped` files) and `loader` are attributes
    for logging and benchmarks; `len()` is the number of batches. Files whose sha256 is in `exclude` never train
    (the run's validation images: `srgan.holdout.training_exclusions`)."""

    def __init__(self, cfg: ExperimentConfig, folders: Sequence[str | Path], *, device: torch.device | str,
                 start_step: int, num_steps: int, rank: int = 0, world: int = 1,
                 num_workers: int | None = None, dataset: PatchDataset | None = None,
                 exclude: Collection[str] = ()) -> None:
        self.cfg, self.device = cfg, torch.device(device)
        self.num_steps = num_steps
        self.dataset = dataset or PatchDataset(folders, scale=cfg.scale, patch_size=cfg.data.patch_size,
                                               augment=cfg.data.augment, degradation=cfg.data.degradation,
                                               seed=cfg.train.seed, exclude=exclude)
        self.loader = make_loader(self.dataset, global_batch=cfg.data.batch_size, start_step=start_step,
                                  num_steps=num_steps, rank=rank, world=world,
                                  num_workers=cfg.data.num_workers if num_workers is None else num_workers,
                                  raw=True, pin_memory=self.device.type == "cuda")

    def __len__(self) -> int:
        return self.num_steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for pixels, peak, codes in self.loader:
            yield device_batch(pixels, peak, codes, scale=self.cfg.scale, degradation=self.cfg.data.degradation,
                               device=self.device)
