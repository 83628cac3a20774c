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
and extracts zip/tar archives safely (`extract`: regular files and folders only, names checked lexically,
no link ever followed). Where a source publishes only a checksum of the extracted folder (deepinv's
folder md5 for Set5/Set14/BSD100), that folder is verified after extraction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from srgan.files import file_hash
from srgan.images import ImageError, list_images, load_image, modcrop
from srgan.resize import bicubic_downscale

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class DatasetError(FileNotFoundError):
    """A benchmark set that is missing or unusable; the message names the folder and how to get it."""


class ChecksumError(ValueError):
    """A downloaded archive whose checksum differs from the published one."""


class UnsafeArchiveError(ValueError):
    """An archive entry that could write outside the extraction folder (a link, a special file, an absolute or
    `..` name); the message names the entry."""


@dataclass(frozen=True)
class Archive:
    url: str
    checksum: str | None  # published checksum of the archive file (None: the source publishes none)
    checksum_type: str  # "sha256" | "md5"
    size: int | None = None  # bytes, when published
    # (folder the archive extracts to, its published deepinv folder md5; see `folder_md5`), checked after
    # extraction where the source publishes no checksum of the archive itself
    folder_md5: tuple[str, str] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the key users type: "set5"
    folder: str  # folder under the data root
    description: str
    archives: tuple[Archive, ...]  # what `fetch` downloads and extracts into the set's folder
    note: str = ""


# Addresses and checksums as published by the sources listed in ../shared/data/SOURCES.tsv. The Hugging Face
# archives of Set5/Set14/BSD100 have no published archive checksum; deepinv publishes the md5 of each extracted
# folder instead (deepinv/datasets/set5.py at 204d2c34, set14.py at 3f832a7c, bsd100.py at 1e6d0904), which
# `fetch` checks. The Set5 and Set14 values are verified against the shared data's `original/` folders (same
# files, tests/benchmarks/test_bench_archive_safety.py); the BSD100 value cannot be verified here, as the shared
# data holds only the renamed, mod-cropped image_SRF_4 copies. (An alternative source, the EDSR benchmark pack
# https://cv.snu.ac.kr/research/EDSR/benchmark.tar, publishes md5 4ace41d33c2384b97e6b320cd0afd6ba of the tar.)
_HF = "https://huggingface.co/datasets/eugenesiow"
_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K"

DATASETS: dict[str, DatasetSpec] = {
    "set5": DatasetSpec(
        "set5", "Set5", "Set5 (Bevilacqua et al. 2012), 5 images",
        (Archive(f"{_HF}/Set5/resolve/main/data/Set5_HR.tar.gz", None, "md5",
                 folder_md5=("Set5_HR", "e128ede786dabb7ebeee99e5fa1ad985")),),
    ),
    "set14": DatasetSpec(
        "set14", "Set14", "Set14 (Zeyde et al. 2010), 14 images (bridge is grayscale)",
        (Archive(f"{_HF}/Set14/resolve/main/data/Set14_HR.tar.gz", None, "md5",
                 folder_md5=("Set14_HR", "3fce01c3dfe9760194e8a22f6bc032c5")),),
    ),
    "bsd100": DatasetSpec(
        "bsd100", "BSD100", "BSD100 (Martin et al. 2001, test split), 100 images",
        (Archive(f"{_HF}/BSD100/resolve/main/data/BSD100_HR.tar.gz", None, "md5",
                 folder_md5=("BSD100_HR", "2288d442262c1c26343fda3b36f05b03")),),
        note="the published folder md5 is not verified on these machines (no copy of the original files here)",
    ),
    "urban100": DatasetSpec(
        "urban100", "Urban100", "Urban100 (Huang et al. 2015), 100 images",
        (Archive(f"{_HF}/Urban100/resolve/main/data/Urban100_HR.tar.gz", "65d9d84a34b72c6f7ca1e26a12df1e4c", "md5",
                 folder_md5=("Urban100_HR", "6e0640850d436a359e0a9baf5eabd27b")),),
        note="archive md5 as used by torchvision-style download scripts (repo not pinned in SOURCES.tsv); "
             "folder md5 from deepinv/datasets/urban100.py at 3f832a7c; neither verified here",
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


def parse_datasets(text: str, *, option: str = "--datasets") -> list[str]:
    """A comma-separated list of benchmark sets as keys of `DATASETS`: case and spaces ignored ("Set 5" is
    "set5"), duplicates dropped in order, each name known. An empty list is a ValueError naming `option`."""
    names: list[str] = []
    for part in text.split(","):
        key = "".join(part.split()).lower()
        if key and key not in names:
            spec(key)  # an unknown name is refused here, before anything runs
            names.append(key)
    if not names:
        raise ValueError(f"{option} {text!r} names no dataset; give a comma-separated list from: "
                         f"{', '.join(DATASETS)}")
    return names


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


def folder_md5(folder: Path) -> str:
    """The folder checksum deepinv publishes for extracted benchmark sets: the md5 of the concatenated hex md5
    digests of the folder's files, in sorted name order. The folder must hold only regular files."""
    digest = hashlib.md5()
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise ChecksumError(f"{path}: not a regular file; a published folder holds only files")
        digest.update(file_hash(path, "md5").encode())
    return digest.hexdigest()


def verify_folder(folder: Path, archive: Archive) -> None:
    """Raise `ChecksumError` when the folder `archive` extracted into `folder` differs from the published one."""
    if archive.folder_md5 is None:
        return
    sub, published = archive.folder_md5
    if not (folder / sub).is_dir():
        raise ChecksumError(f"{archive.url} did not extract to {folder / sub}, where its published folder md5 "
                            "applies; delete the download and fetch again")
    actual = folder_md5(folder / sub)
    if actual != published:
        raise ChecksumError(f"{folder / sub}: folder md5 {actual} != published {published} ({archive.url}); "
                            "delete it and its download and fetch again")


def verify(path: Path, archive: Archive) -> None:
    """Raise `ChecksumError` when the file's checksum differs from the published one (skip when none is)."""
    if archive.checksum is None:
        if archive.folder_md5 is None:
            log.warning("%s: the source publishes no checksum; not verified", path.name)
        else:
            log.info("%s: no published archive checksum; its extracted folder is verified instead", path.name)
        return
    actual = file_hash(path, archive.checksum_type)
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


# ------------------------------------------------------------------------------------------- safe extraction
#
# Benchmark archives hold only regular files and folders, so extraction accepts nothing else: every link,
# device and fifo entry is refused before anything is written. Member names are checked lexically (no
# absolute path, drive, `..` or empty name; `\` counts as a separator), never by resolving paths on disk.
# Folders are walked component by component and must be real folders (lstat); each file is written to a
# fresh temporary file (O_CREAT | O_EXCL | O_NOFOLLOW) and renamed over its name, so a link already in the
# target is replaced, never written through. Python's own `filter="data"` is not relied on: on 3.11.7 a
# chain of directory symlinks longer than PATH_MAX walks through it (CVE-2025-4517).

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # absent on Windows, where a plain file cannot be a link here
_O_BINARY = getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class _Entry:
    name: str  # the member's name as stored, for messages
    parts: tuple[str, ...]  # its lexically normalised path under the target
    is_dir: bool
    open: Callable[[], IO[bytes]] | None  # reads a file's bytes (None for a folder)


def member_parts(name: str, *, is_dir: bool = False) -> tuple[str, ...]:
    """The path components of archive member `name` under the extraction folder, checked lexically.

    Raises `UnsafeArchiveError` (naming the member) for an absolute path, a drive (`C:`), a `..` component,
    a NUL byte, or a file name that is empty once `.` and repeated separators are dropped (a folder entry
    such as `.` or `./` is the target itself)."""
    path = name.replace("\\", "/")
    if path.startswith("/") or (len(path) >= 2 and path[1] == ":" and path[0].isalpha()):
        raise UnsafeArchiveError(f"archive entry {name!r} is an absolute path; refused")
    if "\x00" in path:
        raise UnsafeArchiveError(f"archive entry {name!r} holds a NUL byte; refused")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"archive entry {name!r} has a '..' component and could be written outside "
                                 "the target; refused")
    if not parts and not is_dir:
        raise UnsafeArchiveError(f"archive entry {name!r} has an empty name; refused")
    return parts


def _refuse_link(name: str, what: str, linkname: str | None = None) -> UnsafeArchiveError:
    to = f" to {linkname!r}" if linkname is not None else ""
    return UnsafeArchiveError(f"archive entry {name!r} is a {what}{to}; refused (only regular files and folders "
                              "are extracted: links outside or inside the target could redirect later writes)")


def _zip_entries(zf: zipfile.ZipFile) -> list[_Entry]:
    entries = []
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no Unix mode
        is_dir = info.filename.endswith(("/", "\\")) or kind == stat.S_IFDIR
        if kind == stat.S_IFLNK:
            raise _refuse_link(info.filename, "symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refuse_link(info.filename, "device, fifo or socket")
        if kind == stat.S_IFREG and is_dir:
            raise UnsafeArchiveError(f"archive entry {info.filename!r} is both a file and a folder; refused")
        parts = member_parts(info.filename, is_dir=is_dir)
        entries.append(_Entry(info.filename, parts, is_dir, None if is_dir else (lambda i=info: zf.open(i))))
    return entries


def _tar_entries(tf: tarfile.TarFile) -> list[_Entry]:
    entries = []
    for m in tf.getmembers():
        if m.issym():
            raise _refuse_link(m.name, "symbolic link", m.linkname)
        if m.islnk():
            raise _refuse_link(m.name, "hard link", m.linkname)
        if not (m.isreg() or m.isdir()):
            raise _refuse_link(m.name, "device, fifo or other special file")
        parts = member_parts(m.name, is_dir=m.isdir())
        entries.append(_Entry(m.name, parts, m.isdir(), None if m.isdir() else (lambda m=m: tf.extractfile(m))))
    return entries


def _real_dir(path: Path, entry: _Entry) -> None:
    """Make `path` a real folder (never through or onto a link): create it, or check an existing one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o755)
        st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        what = "a link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise UnsafeArchiveError(f"archive entry {entry.name!r}: {path} is {what}; refused to write through it")


def _write_file(folder: Path, leaf: str, entry: _Entry) -> None:
    """Write `entry` as `folder/leaf`: a fresh temporary file (O_EXCL | O_NOFOLLOW) renamed over the name, so
    an existing link there is replaced, never followed."""
    final = folder / leaf
    if os.path.lexists(final) and stat.S_ISDIR(os.lstat(final).st_mode):
        raise UnsafeArchiveError(f"archive entry {entry.name!r}: {final} is a folder; refused")
    tmp = folder / f".{leaf}.{os.getpid()}.extracting"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_BINARY, 0o644)
    try:
        with os.fdopen(fd, "wb") as out, entry.open() as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, final)  # rename replaces a link at `final` itself, it does not write through it
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_entries(entries: list[_Entry], target: Path) -> None:
    for entry in entries:
        folder = target
        dirs = entry.parts if entry.is_dir else entry.parts[:-1]
        for part in dirs:
            folder = folder / part
            _real_dir(folder, entry)
        if not entry.is_dir:
            _write_file(folder, entry.parts[-1], entry)


def extract(archive_path: Path, target: Path) -> None:
    """Extract a zip or tar(.gz/.bz2/.xz) into `target`, writing nothing outside it.

    Every entry is checked before anything is written: only regular files and folders with relative names
    free of `..` are accepted; any other entry (symlink, hard link, device, fifo, absolute or escaping name)
    raises `UnsafeArchiveError` naming it, and the target is left untouched."""
    archive_path, target = Path(archive_path), Path(target)
    if zipfile.is_zipfile(archive_path):
        open_archive, entries_of = zipfile.ZipFile, _zip_entries
    elif tarfile.is_tarfile(archive_path):
        open_archive, entries_of = tarfile.open, _tar_entries
    else:
        raise ValueError(f"{archive_path}: neither a zip nor a tar archive")
    with open_archive(archive_path) as archive:
        entries = entries_of(archive)  # every entry checked before anything is written
        target.mkdir(parents=True, exist_ok=True)
        _write_entries(entries, target)


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
        verify_folder(folder, archive)
    _flatten_single_subfolder(folder, ds)
    return folder


def fetch_missing(names: Sequence[str], root: str | Path | None) -> None:
    """Download (from its public address, checksum verified) every benchmark set whose folder is missing (`--fetch`
    of `benchmarks.evaluate`, `harness.sweep` and `harness.study`)."""
    for name in names:
        folder = data_root(root) / spec(name).folder
        if not folder.is_dir():
            print(f"{name}: {folder} not found; downloading it (--fetch)")
            fetch(name, root)


def _flatten_single_subfolder(folder: Path, ds: DatasetSpec) -> None:
    """Archives such as Set5_HR.tar.gz unpack to <Set>_HR/ or a nested <Set>/ folder: make it readable here."""
    nested = folder / ds.folder
    if nested.is_dir():
        for child in nested.iterdir():
            if not (folder / child.name).exists():
                shutil.move(str(child), folder / child.name)
