"""The benchmark sets: where they come from, how they lie on disk, and how to read them as (gt, lq) pairs.

Root folder: `--data-root`, else `$ENHANCE_DATA`, else `../shared/data` beside the repository. Inside it:

    Set5/ Set14/ BSD100/ Urban100/          one folder per set, in any of these layouts (first match wins):
        GTmod12/<name>.png + LRbicx{s}/<name>.png    HR cropped to a multiple of 12 + MATLAB's own LR
        image_SRF_{s}/img_NNN_SRF_{s}_HR.png + ..._LR.png   the SelfExSR pairs (HR cropped to a multiple of s)
        GTmod12/ | HR/ | original/ | <Set>_HR/        HR only: LR made here with the MATLAB-compatible bicubic
    DIV2K/DIV2K_valid_HR/0801.png + DIV2K/DIV2K_valid_LR_bicubic/X{s}/0801x{s}.png   (LR optional)

MATLAB's own LR files are the ground truth of the papers' protocol, so they are preferred: Set5 x4 reads
GTmod12 + LRbicx4. Where a set provides no LR for the scale, LR = `bicubic_downscale(modcrop(HR, s))`.

Fetching (`fetch`) downloads the published archives with a progress bar, verifies the published checksum,
and extracts zip/tar archives, refusing entries that would land outside the target folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from srgan.data import ImageError, bicubic_downscale, list_images, load_image, modcrop

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


class DatasetError(FileNotFoundError):
    """A benchmark set that is missing or unusable; the message names the folder and how to get it."""


class ChecksumError(ValueError):
    """A downloaded archive whose checksum differs from the published one."""


class UnsafeArchiveError(ValueError):
    """An archive entry that would be written outside the extraction folder."""


@dataclass(frozen=True)
class Archive:
    url: str
    checksum: str | None  # published checksum of the archive file (None: the source publishes none)
    checksum_type: str  # "sha256" | "md5"
    size: int | None = None  # bytes, when published


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the key users type: "set5"
    folder: str  # folder under the data root
    description: str
    archives: tuple[Archive, ...]  # what `fetch` downloads and extracts into the set's folder
    note: str = ""


# Addresses and checksums as published by the sources listed in ../shared/data/SOURCES.tsv.
_EDSR_BENCHMARK = Archive("https://cv.snu.ac.kr/research/EDSR/benchmark.tar", "4ace41d33c2384b97e6b320cd0afd6ba", "md5")
_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K"

DATASETS: dict[str, DatasetSpec] = {
    "set5": DatasetSpec(
        "set5", "Set5", "Set5 (Bevilacqua et al. 2012), 5 images",
        (Archive("https://huggingface.co/datasets/eugenesiow/Set5/resolve/main/data/Set5_HR.tar.gz", None, "md5"),),
        note="deepinv publishes folder md5 e128ede786dabb7ebeee99e5fa1ad985 of the extracted Set5_HR, not the archive",
    ),
    "set14": DatasetSpec(
        "set14", "Set14", "Set14 (Zeyde et al. 2010), 14 images (bridge is grayscale)",
        (Archive("https://huggingface.co/datasets/eugenesiow/Set14/resolve/main/data/Set14_HR.tar.gz", None, "md5"),),
        note="deepinv publishes folder md5 3fce01c3dfe9760194e8a22f6bc032c5 of the extracted Set14_HR",
    ),
    "bsd100": DatasetSpec(
        "bsd100", "BSD100", "BSD100 (Martin et al. 2001, test split), 100 images",
        (Archive("https://huggingface.co/datasets/eugenesiow/BSD100/resolve/main/data/BSD100_HR.tar.gz", None, "md5"),),
        note="deepinv publishes folder md5 2288d442262c1c26343fda3b36f05b03 of the extracted BSD100_HR",
    ),
    "urban100": DatasetSpec(
        "urban100", "Urban100", "Urban100 (Huang et al. 2015), 100 images",
        (Archive("https://huggingface.co/datasets/eugenesiow/Urban100/resolve/main/data/Urban100_HR.tar.gz",
                 "65d9d84a34b72c6f7ca1e26a12df1e4c", "md5"),),
        note="archive md5 as used by torchvision-style download scripts (repo not pinned in SOURCES.tsv)",
    ),
    "div2k": DatasetSpec(
        "div2k", "DIV2K", "DIV2K validation (Agustsson & Timofte 2017), 100 images 0801-0900",
        (
            Archive(f"{_DIV2K}/DIV2K_valid_HR.zip",
                    "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", "sha256", 448993893),
            Archive(f"{_DIV2K}/DIV2K_valid_LR_bicubic_X2.zip",
                    "60eed9875c697df51204aa579e2a699e1d5215095788a097ff54dd17e2664d57", "sha256", 117763600),
            Archive(f"{_DIV2K}/DIV2K_valid_LR_bicubic_X3.zip",
                    "04b9a2ed3b4a0715d3924d3ae8514830c3328fac8d30512ce716d6f419e052a3", "sha256", 54513392),
            Archive(f"{_DIV2K}/DIV2K_valid_LR_bicubic_X4.zip",
                    "a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553", "sha256", 31505881),
        ),
    ),
    "div2k-train": DatasetSpec(
        "div2k-train", "DIV2K", "DIV2K training HR (800 images, for training, not scored by default)",
        (Archive(f"{_DIV2K}/DIV2K_train_HR.zip",
                 "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", "sha256", 3530603713),),
    ),
}
# The EDSR pack (Set5, Set14, B100, Urban100 with LR) is an alternative source with a published md5.
EDSR_BENCHMARK_PACK = _EDSR_BENCHMARK


@dataclass(frozen=True)
class Pair:
    """One benchmark image: its name, HR (3, H, W) and LR (3, H/s, W/s), float in [0, 1], and their files."""

    name: str
    gt: torch.Tensor
    lq: torch.Tensor
    gt_path: Path
    lq_path: Path | None  # None when the LR was made here from the HR


# ------------------------------------------------------------------------------------------------- root


def data_root(root: str | Path | None = None) -> Path:
    """The data root: the argument, else $ENHANCE_DATA, else ../shared/data beside the repository."""
    if root is not None:
        return Path(root)
    env = os.environ.get("ENHANCE_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def spec(name: str) -> DatasetSpec:
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[key]


# ------------------------------------------------------------------------------------------------ pairs


def _missing(ds: DatasetSpec, folder: Path, what: str) -> DatasetError:
    return DatasetError(
        f"{ds.description}: {what} in {folder}. Fetch it with `python -m benchmarks.evaluate --fetch ...` "
        f"(downloads {', '.join(a.url for a in ds.archives)}), or point ENHANCE_DATA / --data-root at a folder "
        f"holding {ds.folder}/"
    )


def _load(path: Path) -> torch.Tensor:
    return load_image(path)  # raises ImageError naming the file


def _checked(name: str, gt: torch.Tensor, lq: torch.Tensor, scale: int, gt_path: Path,
             lq_path: Path | None) -> Pair:
    gt = modcrop(gt, scale)
    if tuple(lq.shape[-2:]) != (gt.shape[-2] // scale, gt.shape[-1] // scale) or min(lq.shape[-2:]) == 0:
        raise ImageError(
            f"HR/LR pair of mismatched size for x{scale}: {gt_path} is {gt.shape[-1]}x{gt.shape[-2]} (mod-cropped), "
            f"{lq_path} is {lq.shape[-1]}x{lq.shape[-2]}"
        )
    return Pair(name, gt, lq, gt_path, lq_path)


def _from_hr(name: str, gt_path: Path, scale: int) -> Pair:
    gt = modcrop(_load(gt_path), scale)
    lq = bicubic_downscale(gt, scale).clamp(0, 1)
    # 8-bit LR, as the papers' LR files are saved (MATLAB writes uint8 PNGs)
    lq = lq.mul(255).round().div(255)
    return Pair(name, gt, lq, gt_path, None)


def _set_pairs(ds: DatasetSpec, folder: Path, scale: int) -> list[Pair]:
    gt_dir, lq_dir = folder / "GTmod12", folder / f"LRbicx{scale}"
    if gt_dir.is_dir() and lq_dir.is_dir():
        pairs = []
        for gt_path in list_images(gt_dir):
            lq_path = lq_dir / gt_path.name
            if not lq_path.is_file():
                raise ImageError(f"{gt_path}: no matching LR file {lq_path}")
            pairs.append(_checked(gt_path.stem, _load(gt_path), _load(lq_path), scale, gt_path, lq_path))
        return pairs
    srf_dir = folder / f"image_SRF_{scale}"
    if srf_dir.is_dir():
        pairs = []
        for gt_path in sorted(srf_dir.glob(f"*_SRF_{scale}_HR.*")):
            lq_path = gt_path.with_name(gt_path.name.replace("_HR.", "_LR."))
            if not lq_path.is_file():
                raise ImageError(f"{gt_path}: no matching LR file {lq_path}")
            name = gt_path.name.split(f"_SRF_{scale}_")[0]  # img_001
            pairs.append(_checked(name, _load(gt_path), _load(lq_path), scale, gt_path, lq_path))
        return pairs
    for hr_name in ("GTmod12", "HR", "original", f"{ds.folder}_HR"):
        if (folder / hr_name).is_dir():
            return [_from_hr(p.stem, p, scale) for p in list_images(folder / hr_name)]
    raise _missing(ds, folder, f"no x{scale} images (looked for GTmod12 + LRbicx{scale}, image_SRF_{scale}, HR/)")


def _div2k_pairs(ds: DatasetSpec, folder: Path, scale: int) -> list[Pair]:
    gt_dir = folder / "DIV2K_valid_HR"
    if not gt_dir.is_dir():
        raise _missing(ds, gt_dir, "no HR folder")
    lq_dir = folder / "DIV2K_valid_LR_bicubic" / f"X{scale}"
    pairs = []
    for gt_path in list_images(gt_dir):
        lq_path = lq_dir / f"{gt_path.stem}x{scale}.png"
        if lq_path.is_file():
            pairs.append(_checked(gt_path.stem, _load(gt_path), _load(lq_path), scale, gt_path, lq_path))
        else:
            pairs.append(_from_hr(gt_path.stem, gt_path, scale))
    return pairs


def load_pairs(name: str, scale: int, root: str | Path | None = None) -> list[Pair]:
    """All (gt, lq) pairs of a benchmark set at `scale`, sorted by image name."""
    ds = spec(name)
    folder = data_root(root) / ds.folder
    if not folder.is_dir():
        raise _missing(ds, folder, "dataset folder not found")
    pairs = _div2k_pairs(ds, folder, scale) if ds.folder == "DIV2K" else _set_pairs(ds, folder, scale)
    if not pairs:
        raise _missing(ds, folder, "no images")
    log.info("%s x%d: %d images from %s", ds.name, scale, len(pairs), folder)
    return pairs


# -------------------------------------------------------------------------------------- fetch and verify


def file_checksum(path: Path, kind: str) -> str:
    digest = hashlib.new(kind)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, archive: Archive) -> None:
    """Raise `ChecksumError` when the file's checksum differs from the published one (skip when none is)."""
    if archive.checksum is None:
        log.warning("%s: the source publishes no archive checksum; not verified", path.name)
        return
    actual = file_checksum(path, archive.checksum_type)
    if actual != archive.checksum:
        raise ChecksumError(f"{path}: {archive.checksum_type} {actual} != published {archive.checksum} "
                            f"({archive.url}); delete it and fetch again")


def download(url: str, dest: Path, *, timeout: float = 30.0) -> Path:
    """Stream `url` into `dest` with a tqdm progress bar (written to a .part file, renamed when complete)."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))
    os.replace(part, dest)
    return dest


def _inside(target: Path, member: str) -> Path:
    """The path `member` extracts to, or `UnsafeArchiveError` if it would escape `target`."""
    if member.startswith(("/", "\\")) or (len(member) > 1 and member[1] == ":"):
        raise UnsafeArchiveError(f"archive entry {member!r} is an absolute path; refused")
    dest = (target / member).resolve()
    if not dest.is_relative_to(target.resolve()):
        raise UnsafeArchiveError(f"archive entry {member!r} would be written outside {target}; refused")
    return dest


def extract(archive_path: Path, target: Path) -> None:
    """Extract a zip or tar(.gz/.bz2/.xz) into `target`; every entry is checked before anything is written."""
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as zf:
            for info in zf.infolist():
                _inside(target, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UnsafeArchiveError(f"archive entry {info.filename!r} is a symlink; refused")
            zf.extractall(target)
        return
    if tarfile.is_tarfile(archive_path):
        with tarfile.open(archive_path) as tf:
            members = tf.getmembers()
            for m in members:
                _inside(target, m.name)
                if m.issym() or m.islnk():
                    # a link is only allowed when what it points to stays inside the target too
                    link_base = (target / m.name).parent if m.issym() else target
                    if not (link_base / m.linkname).resolve().is_relative_to(target.resolve()):
                        raise UnsafeArchiveError(f"archive entry {m.name!r} links outside {target}; refused")
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"archive entry {m.name!r} is a device or fifo; refused")
            tf.extractall(target, members=members, filter="data")  # the stdlib's own guard as a second check
        return
    raise ValueError(f"{archive_path}: neither a zip nor a tar archive")


def fetch(name: str, root: str | Path | None = None, *,
          downloader: Callable[[str, Path], Path] = download) -> Path:
    """Download, verify and extract a set's archives into `<root>/<folder>`; returns that folder."""
    ds = spec(name)
    folder = data_root(root) / ds.folder
    downloads = folder / ".downloads"
    for archive in ds.archives:
        dest = downloads / archive.url.rsplit("/", 1)[-1]
        if not dest.is_file():
            log.info("fetching %s -> %s", archive.url, dest)
            downloader(archive.url, dest)
        verify(dest, archive)
        extract(dest, folder)
    _flatten_single_subfolder(folder, ds)
    return folder


def _flatten_single_subfolder(folder: Path, ds: DatasetSpec) -> None:
    """Archives such as Set5_HR.tar.gz unpack to <Set>_HR/ or a nested <Set>/ folder: make it readable here."""
    nested = folder / ds.folder
    if nested.is_dir():
        for child in nested.iterdir():
            if not (folder / child.name).exists():
                shutil.move(str(child), folder / child.name)
