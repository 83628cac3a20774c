"""Training data: scanning the training folders, the paired patch dataset (HR patches with their LR made on the
fly) and its loader.

Images are float tensors in [0, 1], (3, H, W) RGB, unless a name says otherwise (`*_u8`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from srgan.files import file_hash
from srgan.images import IMAGE_SUFFIXES, ImageError, image_size, load_image_u8, pixel_limit, quantize, to_float
from srgan.resize import matlab_downscale_batch, naive_downscale

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------- scanning a training folder


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


def scan_training_images(
    folders: Iterable[str | Path], *, min_size: int, decode: bool = True, max_pixels: int | None = None,
    exclude: Collection[str] = (),
) -> tuple[list[tuple[Path, torch.Tensor | None]], list[SkippedFile]]:
    """Check every image of `folders`; keep those at least `min_size` px on both sides.

    Returns the kept images and the skipped files with their reason; each skipped file is logged once here.
    Byte-identical duplicates are kept once. Files whose sha256 is in `exclude` (the run's validation images:
    `srgan.holdout.training_exclusions`) are left out, counted in one log line, not listed as skipped. An image
    whose header declares more than `pixel_limit(max_pixels)` pixels is skipped undecoded (a decompression bomb).
    With `decode=True` each kept image comes decoded (native depth, see `load_image_u8`); with `decode=False` only
    its header is read (the tensor is None) and a file that turns out corrupt later is handled where it is decoded."""
    max_pixels = pixel_limit(max_pixels)  # a bad $ENHANCE_MAX_PIXELS is an error here, not a skip per file
    images: list[tuple[Path, torch.Tensor]] = []
    skipped: list[SkippedFile] = []
    seen: dict[str, Path] = {}
    held_out = 0
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"training folder not found: {folder}")
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            reason = None
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                reason = f"not an image file (suffix {path.suffix or 'none'!r})"
            else:
                digest = file_hash(path)
                if digest in exclude:
                    held_out += 1
                    continue
                if digest in seen:
                    reason = f"byte-identical duplicate of {seen[digest].name}"
                else:
                    try:
                        img = load_image_u8(path, max_pixels=max_pixels) if decode else None
                        h, w = img.shape[-2:] if decode else image_size(path, max_pixels=max_pixels)
                    except ImageError as err:
                        reason = str(err).removeprefix(f"{path}: ")
                    else:
                        if min(h, w) < min_size:
                            reason = f"too small ({w}x{h} px) for {min_size}-px patches"
                        else:
                            seen[digest] = path
                            images.append((path, img))
            if reason is not None:
                log.warning("skipping %s: %s", path, reason)
                skipped.append(SkippedFile(path, reason))
    if held_out:
        log.info("%d file(s) held out of training for validation", held_out)
    if not images:
        names = ", ".join(str(Path(f)) for f in folders)
        reasons = "; ".join(sorted({s.reason.split(":")[0] for s in skipped}))
        kept_out = f", {held_out} held out for validation" if held_out else ""
        raise ValueError(f"no usable training images in {names} for {min_size}-px patches "
                         f"({len(skipped)} file(s) skipped{': ' + reasons if reasons else ''}{kept_out})")
    return images, skipped


# ---------------------------------------------------------------------------------------- patch dataset


def augment(*imgs: torch.Tensor, flip_h: bool, flip_v: bool, rot90: bool) -> list[torch.Tensor]:
    out = []
    for img in imgs:
        if flip_h:
            img = img.flip(-1)
        if flip_v:
            img = img.flip(-2)
        if rot90:
            img = img.transpose(-1, -2)
        out.append(img)
    return out


# A sample's augmentation as one small integer: bit 0 flips horizontally, bit 1 vertically, bit 2 transposes
# (with the flips, the 8 symmetries of the square), applied in that order as `augment` does.
FLIP_H, FLIP_V, ROT90 = 1, 2, 4


def augment_batch(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """`augment` per sample on a batch of square patches (B, C, P, P), any dtype and device: sample b gets the
    transforms of `codes[b]` (see FLIP_H...). Three selects over the batch, no grouping, no host sync."""
    m = codes.view(-1, 1, 1, 1)
    x = torch.where((m & FLIP_H) > 0, x.flip(-1), x)
    x = torch.where((m & FLIP_V) > 0, x.flip(-2), x)
    return torch.where((m & ROT90) > 0, x.transpose(-1, -2), x)


def make_lq(gt: torch.Tensor, *, scale: int, degradation: str) -> torch.Tensor:
    """The training LR of HR images (..., 3, H, W): "matlab" (antialiased MATLAB bicubic, the papers' pairs)
    or "naive" (torch bicubic without antialiasing, v1), then clamped and rounded to the 8-bit grid, as the
    papers' LR files are 8-bit images (ESRGAN/BasicSR train on LR PNGs; the evaluation LR is 8-bit too)."""
    if degradation == "matlab":
        lq = matlab_downscale_batch(gt, scale)
    elif degradation == "naive":
        lq = naive_downscale(gt, scale)
    else:
        raise ValueError(f"unknown degradation {degradation!r}")
    return quantize(lq)


class PatchDataset(torch.utils.data.Dataset):
    """Random HR patches with their LR made on the fly, addressed by a global sample index.

    Sample `i` depends only on (seed, i): any process can draw any sample, so training resumes exactly and
    DDP ranks share one global stream (see `StepSampler`). The dataset has no natural length; `__len__` is
    the number of source images (for information).

    Small folders (T91, BSD200: tens of MB) are decoded once and kept in memory. Large ones (DIV2K cut into
    sub-images by `python -m srgan.prepare`) are decoded per sample instead, since every DDP rank would hold
    its own copy (`in_memory=None` decides by the folders' size on disk)."""

    IN_MEMORY_LIMIT = 512 * 2**20  # bytes on disk

    def __init__(self, folders: Sequence[str | Path], *, scale: int, patch_size: int, augment: bool = True,
                 degradation: str = "matlab", seed: int = 0, in_memory: bool | None = None,
                 exclude: Collection[str] = ()) -> None:
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}")
        if in_memory is None:
            on_disk = sum(p.stat().st_size for f in folders if Path(f).is_dir() for p in Path(f).iterdir()
                          if p.is_file())
            in_memory = on_disk <= self.IN_MEMORY_LIMIT
        self.images, self.skipped = scan_training_images(folders, min_size=patch_size, decode=in_memory,
                                                         exclude=exclude)  # validation images never train
        self.sizes = [img.shape[-2:] if img is not None else image_size(path) for path, img in self.images]
        self.broken: set[int] = set()
        self.scale, self.patch_size, self.augment = scale, patch_size, augment
        self.degradation, self.seed = degradation, seed
        # sample source images in proportion to their area, so big images are not under-used
        areas = torch.tensor([h * w for h, w in self.sizes], dtype=torch.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lq, gt) floats made on the CPU: the host path. `srgan.batches` makes the same pairs on the
        training device from `draw`."""
        patch, code = self.draw(index)
        (gt,) = augment(to_float(patch), flip_h=bool(code & FLIP_H), flip_v=bool(code & FLIP_V),
                        rot90=bool(code & ROT90))
        lq = make_lq(gt[None], scale=self.scale, degradation=self.degradation)[0]
        return lq.contiguous(), gt.contiguous()

    def draw(self, index: int) -> tuple[torch.Tensor, int]:
        """Sample `index`'s HR patch before augmentation, at its image's depth (uint8, or int32 holding 16-bit
        values; see `to_float`), and its augmentation code (see FLIP_H; 0 without augmentation)."""
        gen = torch.Generator().manual_seed(hash((self.seed, int(index))) & 0x7FFF_FFFF_FFFF_FFFF)
        img = None
        for _attempt in range(16):  # a file that fails to decode (lazy mode) is skipped deterministically
            which = int(torch.multinomial(self.weights, 1, generator=gen))
            img = self._pixels(which)
            if img is not None:
                break
        if img is None:
            raise ImageError(f"16 training images in a row failed to decode (last: {self.images[which][0]})")
        h, w = img.shape[-2:]
        p = self.patch_size
        top = int(torch.randint(0, h - p + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - p + 1, (1,), generator=gen))
        patch = img[:, top : top + p, left : left + p].clone()  # not a view: workers would ship the whole image
        code = 0
        if self.augment:
            flips = torch.randint(0, 2, (3,), generator=gen).tolist()
            code = flips[0] * FLIP_H + flips[1] * FLIP_V + flips[2] * ROT90
        return patch, code

    def _pixels(self, which: int) -> torch.Tensor | None:
        path, img = self.images[which]
        if img is not None or which in self.broken:
            return img
        try:
            return load_image_u8(path)
        except ImageError as err:
            log.warning("skipping %s from now on: %s", path, str(err).removeprefix(f"{path}: "))
            self.broken.add(which)
            return None


class StepSampler(torch.utils.data.Sampler[int]):
    """Global sample indices for steps `start_step`, `start_step + 1`, ...: rank r of `world` takes its
    contiguous share of every global batch, so W workers see exactly the samples of one process."""

    def __init__(self, *, global_batch: int, start_step: int = 0, num_steps: int, rank: int = 0,
                 world: int = 1) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by {world} workers")
        self.global_batch, self.start_step, self.num_steps = global_batch, start_step, num_steps
        self.rank, self.world = rank, world
        self.local_batch = global_batch // world

    def __len__(self) -> int:
        return self.num_steps * self.local_batch

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.start_step + self.num_steps):
            first = step * self.global_batch + self.rank * self.local_batch
            yield from range(first, first + self.local_batch)


class HRPatches(torch.utils.data.Dataset):
    """A `PatchDataset`'s samples as `draw` gives them (HR patch at native depth, augmentation code): what the
    loader ships to the device-side batch stage (`srgan.batches`), 1 byte per pixel instead of 4 + LR."""

    def __init__(self, dataset: PatchDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.dataset.draw(index)


def collate_hr(samples: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch `draw` samples: (pixels (B, 3, P, P) uint8, or int32 when any sample is 16-bit; peak (B,) float32,
    the value of white per sample (255 or 65535); codes (B,) int64)."""
    patches = [patch for patch, _ in samples]
    wide = any(patch.dtype != torch.uint8 for patch in patches)
    pixels = torch.stack([patch.to(torch.int32) for patch in patches]) if wide else torch.stack(patches)
    peak = torch.tensor([255.0 if patch.dtype == torch.uint8 else 65535.0 for patch in patches])
    codes = torch.tensor([code for _, code in samples], dtype=torch.int64)
    return pixels, peak, codes


def make_loader(dataset: PatchDataset, *, global_batch: int, start_step: int, num_steps: int, rank: int = 0,
                world: int = 1, num_workers: int = 0, raw: bool = False,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """Batches of rank `rank`'s share of steps `start_step`... (see `StepSampler`): (lq, gt) float pairs made on
    the CPU, or with `raw=True` the un-augmented HR patches (`collate_hr`) for `srgan.batches`' device stage.
    `pin_memory` for asynchronous copies to a GPU."""
    sampler = StepSampler(global_batch=global_batch, start_step=start_step, num_steps=num_steps, rank=rank,
                          world=world)
    return torch.utils.data.DataLoader(HRPatches(dataset) if raw else dataset, batch_size=global_batch // world,
                                       sampler=sampler, num_workers=num_workers, persistent_workers=False,
                                       drop_last=False, collate_fn=collate_hr if raw else None,
                                       pin_memory=pin_memory)
