"""Benchmark set layouts, clear errors, and fetch / verify / safe extraction without the network."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks.scoring import datasets as ds
from srgan.images import ImageError, save_image
from srgan.resize import bicubic_downscale


def _png(path: Path, h: int, w: int, seed: int = 0) -> torch.Tensor:
    img = torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)).mul(255).round().div(255)
    save_image(img, path)
    return img


def _div2k(root: Path, *, lq_for: tuple[str, ...] = ("0801",)) -> Path:
    """A tiny DIV2K in its published layout: HR 0801/0802, LR X4 for some of them."""
    folder = root / "DIV2K"
    for i, name in enumerate(["0801", "0802"]):
        gt = _png(folder / "DIV2K_valid_HR" / f"{name}.png", 48, 40, seed=i)
        if name in lq_for:
            save_image(bicubic_downscale(gt, 4).clamp(0, 1), folder / "DIV2K_valid_LR_bicubic/X4" / f"{name}x4.png")
    return folder


def test_set5_default_layout_is_gtmod12_with_matlab_lr(data_root: Path) -> None:
    pairs = ds.load_pairs("set5", 4)
    assert [p.name for p in pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    assert all(p.lq_path is not None and p.lq_path.parent.name == "LRbicx4" for p in pairs)
    assert all(p.gt.shape[-2:] == (p.lq.shape[-2] * 4, p.lq.shape[-1] * 4) for p in pairs)


def test_srf_layout_for_x3_and_bsd100(data_root: Path) -> None:
    pairs = ds.load_pairs("set5", 3)
    assert [p.name for p in pairs][:2] == ["img_001", "img_002"]
    assert pairs[0].lq_path.parent.name == "image_SRF_3"
    with pytest.raises(ds.DatasetError, match=r"BSD100.*x2"):
        ds.load_pairs("bsd100", 2)  # only image_SRF_4 exists


def test_div2k_layout(tmp_path: Path) -> None:
    _div2k(tmp_path)
    pairs = ds.load_pairs("div2k", 4, tmp_path)
    assert [p.name for p in pairs] == ["0801", "0802"]
    assert pairs[0].lq_path.name == "0801x4.png"
    assert pairs[1].lq_path is None  # no LR file: made here with the MATLAB-compatible bicubic
    assert pairs[1].lq.shape == (3, 12, 10) and pairs[1].gt.shape == (3, 48, 40)


def test_data_root_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _div2k(tmp_path)
    monkeypatch.setenv("ENHANCE_DATA", str(tmp_path))
    assert ds.data_root() == tmp_path
    assert len(ds.load_pairs("div2k", 4)) == 2


def test_unknown_dataset_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'set6'.*set5.*set14.*bsd100.*urban100.*div2k"):
        ds.load_pairs("set6", 4)


def test_missing_folder_names_it_and_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ds.DatasetError) as err:
        ds.load_pairs("urban100", 4, tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "Urban100") in msg and "ENHANCE_DATA" in msg and "--fetch" in msg


def test_mismatched_pair_names_both_files(tmp_path: Path) -> None:
    folder = _div2k(tmp_path)
    bad_lq = folder / "DIV2K_valid_LR_bicubic/X4/0801x4.png"
    _png(bad_lq, 11, 10)
    with pytest.raises(ImageError, match="mismatched size") as err:
        ds.load_pairs("div2k", 4, tmp_path)
    assert str(bad_lq) in str(err.value) and str(folder / "DIV2K_valid_HR/0801.png") in str(err.value)


def test_corrupt_image_names_file(tmp_path: Path) -> None:
    folder = _div2k(tmp_path)
    broken = folder / "DIV2K_valid_HR/0802.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated PNG
    with pytest.raises(ImageError, match="0802.png"):
        ds.load_pairs("div2k", 4, tmp_path)


# ---------------------------------------------------------------------------------- fetch and extraction


def _zip_of(folder: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + str(path.relative_to(folder)))
    return dest


def test_fetch_verifies_and_extracts_div2k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _div2k(tmp_path / "source")
    hr_zip = _zip_of(source / "DIV2K_valid_HR", tmp_path / "DIV2K_valid_HR.zip", "DIV2K_valid_HR/")
    lq_zip = _zip_of(source / "DIV2K_valid_LR_bicubic", tmp_path / "DIV2K_valid_LR_bicubic_X4.zip",
                     "DIV2K_valid_LR_bicubic/")
    archives = tuple(
        ds.Archive(f"https://example.invalid/{z.name}", hashlib.sha256(z.read_bytes()).hexdigest(), "sha256")
        for z in (hr_zip, lq_zip)
    )
    monkeypatch.setitem(ds.DATASETS, "div2k", replace(ds.DATASETS["div2k"], archives=archives))
    fetched: list[str] = []

    def fake_download(url: str, dest: Path) -> Path:  # what `download` does, from a local file
        fetched.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / url.rsplit("/", 1)[-1], dest)
        return dest

    root = tmp_path / "root"
    assert ds.fetch("div2k", root, downloader=fake_download) == root / "DIV2K"
    assert len(fetched) == 2
    pairs = ds.load_pairs("div2k", 4, root)
    assert [p.name for p in pairs] == ["0801", "0802"] and pairs[0].lq_path is not None


def test_download_streams_a_file_url(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 3000)
    dest = ds.download(src.as_uri(), tmp_path / "out" / "a.bin")
    assert dest.read_bytes() == src.read_bytes() and not (tmp_path / "out" / "a.bin.part").exists()


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "x.zip"
    f.write_bytes(b"not what was published")
    with pytest.raises(ds.ChecksumError, match="x.zip"):
        ds.verify(f, ds.Archive("https://example.invalid/x.zip", "0" * 64, "sha256"))
    md5 = hashlib.md5(f.read_bytes()).hexdigest()
    ds.verify(f, ds.Archive("https://example.invalid/x.zip", md5, "md5"))  # the right one passes


@pytest.mark.parametrize("entry", ["../evil.txt", "a/../../evil.txt", "/tmp/evil-abs.txt"])
def test_zip_escape_refused(tmp_path: Path, entry: str) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(entry, "evil")
    target = tmp_path / "target"
    with pytest.raises(ds.UnsafeArchiveError, match="refused"):
        ds.extract(archive, target)
    assert not (tmp_path / "evil.txt").exists() and not (target / "ok.txt").exists()  # nothing written


@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/evil-abs.txt"])
def test_tar_escape_refused(tmp_path: Path, entry: str) -> None:
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"evil"
        info = tarfile.TarInfo(entry)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(ds.UnsafeArchiveError, match="refused"):
        ds.extract(archive, tmp_path / "target")
    assert not (tmp_path / "evil.txt").exists()


def test_tar_symlink_out_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tf.addfile(info)
    with pytest.raises(ds.UnsafeArchiveError, match="links outside"):
        ds.extract(archive, tmp_path / "target")


def test_tar_extracts_normal_archive(tmp_path: Path) -> None:
    src = tmp_path / "Set5_HR"
    _png(src / "baby.png", 24, 24)
    archive = tmp_path / "Set5_HR.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="Set5_HR")
    ds.extract(archive, tmp_path / "Set5")
    pairs = ds.load_pairs("set5", 4, tmp_path)  # the <Set>_HR folder is read, LR made here
    assert [p.name for p in pairs] == ["baby"] and pairs[0].lq.shape == (3, 6, 6)


def test_parse_datasets_normalises_and_deduplicates() -> None:
    assert ds.parse_datasets("set5,Set5, set5") == ["set5"]
    assert ds.parse_datasets(" Set14 ,SET5,set 14, div2k-train") == ["set14", "set5", "div2k-train"]
    for empty in (",", "", " , ,"):
        with pytest.raises(ValueError, match=r"--datasets .* names no dataset"):
            ds.parse_datasets(empty)
    with pytest.raises(ValueError, match=r"--val-datasets ',' names no dataset"):
        ds.parse_datasets(",", option="--val-datasets")
    with pytest.raises(ValueError, match="unknown dataset 'set6'"):
        ds.parse_datasets("set5,set6")
