"""The report's visual comparisons: per saved HR image, the most textured window cropped from the HR and from every
trial's SR output, written as PNG files beside index.html with each crop's PSNR.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reports.load import Results
from reports.text import fmt as _fmt
from results import metrics_np, schema

log = logging.getLogger(__name__)

BASELINE = schema.STATUS_BASELINE
MAX_IMAGES_PER_DATASET = 3  # visual comparisons per dataset; the per-image table lists them all
CROP_MAX = 64  # crop side in HR pixels
CROP_DISPLAY = 192  # crop side on the page, in CSS pixels (nearest-neighbour zoom)


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_name(text: str, limit: int = 40) -> str:
    """A file-name fragment made only of [A-Za-z0-9_-]; never empty."""
    return _UNSAFE.sub("_", text).strip("_")[:limit] or "x"


def _is_plain_component(name: str) -> bool:
    """A name that addresses one entry of a folder (no separators, no '..'): safe to join to a path."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\x00" not in name


def _crop_box(hr_u8: np.ndarray) -> tuple[int, int, int]:
    """(top, left, side) of the most textured square window — where SR methods differ the most."""
    h, w = hr_u8.shape[:2]
    side = max(1, min(CROP_MAX, max(16, min(h, w) // 2), h, w))
    y = metrics_np.y_channel(hr_u8)
    stride = max(1, side // 2)
    best = (-1.0, 0, 0)
    for top in range(0, h - side + 1, stride):
        for left in range(0, w - side + 1, stride):
            variance = float(y[top:top + side, left:left + side].var())
            if variance > best[0]:
                best = (variance, top, left)
    return best[1], best[2], side


def _load_rgb(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as error:
        log.warning("cannot read %s: %s", path, error)
        return None


@dataclass
class Crop:
    label: str
    src: str  # relative to index.html
    psnr: str
    kind: str  # "hr" | "baseline" | "trial"


@dataclass
class Comparison:
    dataset: str
    image: str
    box: str
    crops: list[Crop]
    notes: list[str]


class _CropWriter:
    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / "crops"
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.png"):
            stale.unlink()
        self.count = 0

    def save(self, crop_u8: np.ndarray, *parts: str) -> str:
        self.count += 1
        name = f"{self.count:04d}_" + "_".join(safe_name(p, 24) for p in parts) + ".png"
        Image.fromarray(crop_u8).save(self.folder / name, compress_level=1)
        return f"crops/{name}"


def visual_comparisons(results: Results, out_dir: Path) -> list[Comparison]:
    hr_root = results.root / schema.IMAGES_DIR / schema.HR_DIR
    if not hr_root.is_dir():
        return []
    writer = _CropWriter(out_dir)
    trial_rows = [t for t in results.trials.iter_rows(named=True) if t["status"] != "failed"]
    on_disk = sorted(p.name for p in hr_root.iterdir() if p.is_dir())
    datasets = [d for d in results.datasets if d in on_disk] + [d for d in on_disk if d not in results.datasets]
    comparisons = []
    for dataset in datasets:
        files = sorted(p for p in (hr_root / dataset).iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if len(files) > MAX_IMAGES_PER_DATASET:
            log.info("%s: showing %d of %d images", dataset, MAX_IMAGES_PER_DATASET, len(files))
        for hr_path in files[:MAX_IMAGES_PER_DATASET]:
            hr = _load_rgb(hr_path)
            if hr is None:
                continue
            top, left, side = _crop_box(hr)
            window = (slice(top, top + side), slice(left, left + side))
            crops = [Crop("HR", writer.save(hr[window], dataset, hr_path.stem, "hr"), "", "hr")]
            notes = []
            for trial in trial_rows:
                trial_id = trial["trial_id"]
                if not _is_plain_component(trial_id):
                    notes.append(f"{trial['label']}: trial id is not a plain folder name; skipped")
                    continue
                sr_path = results.root / schema.IMAGES_DIR / trial_id / dataset / hr_path.name
                if not sr_path.is_file():
                    if trial["status"] == BASELINE:
                        notes.append(f"{trial['label']}: no saved images, baseline crop skipped")
                    continue
                sr = _load_rgb(sr_path)
                if sr is None or sr.shape != hr.shape:
                    notes.append(f"{trial['label']}: image missing or not the HR size, skipped")
                    continue
                kind = "baseline" if trial["status"] == BASELINE else "trial"
                src = writer.save(sr[window], dataset, hr_path.stem, trial_id)
                psnr = metrics_np.psnr_y(sr[window], hr[window])
                crops.append(Crop(trial["label"] or trial_id, src, f"{_fmt(psnr, 'psnr')} dB", kind))
            box = f"{side}×{side} px at ({left}, {top}) of {hr.shape[1]}×{hr.shape[0]}"
            comparisons.append(Comparison(dataset, hr_path.stem, box, crops, notes))
    return comparisons
