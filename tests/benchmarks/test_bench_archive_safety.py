"""Archive extraction never writes outside its target (issue 9.1), and the published Set5/Set14 folder checksums.

Every hostile archive is built here. Each escape test first shows that the archive really escapes when its
links are honoured (a plain `tarfile` extraction into a sandbox beside the real target), then that
`benchmarks.scoring.datasets.extract` refuses it, names the entry, and leaves nothing behind, inside or outside.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.scoring import datasets as ds

# ------------------------------------------------------------------------------------------------ helpers


def _tar_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tf.addfile(info)


def _tar_link(tf: tarfile.TarFile, name: str, to: str, *, hard: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), to
    tf.addfile(info)


def _tar_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (links not followed) -> file bytes (None for folders and links)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            regular = stat.S_ISREG(os.lstat(path).st_mode)
            out[str(path.relative_to(root))] = path.read_bytes() if regular else None
    return out


def _world(base: Path) -> tuple[Path, Path]:
    """base/target (where extraction goes) and base/outside/secret.txt (what an escape would touch)."""
    (base / "outside").mkdir(parents=True)
    (base / "outside" / "secret.txt").write_text("secret")
    return base / "target", base / "outside"


def _escapes_when_links_are_followed(archive: Path, sandbox: Path) -> bool:
    """Extract with the standard library honouring links, into a sandbox laid out like the real test: did
    anything change outside the sandbox's target?"""
    target, outside = _world(sandbox)
    before = _tree(outside)
    with tarfile.open(archive) as tf:
        tf.extractall(target, filter="fully_trusted")
    return _tree(outside) != before


def _assert_refused_cleanly(archive: Path, base: Path, entry: str) -> None:
    target, outside = _world(base)
    before = _tree(base)
    with pytest.raises(ds.UnsafeArchiveError, match="refused") as err:
        ds.extract(archive, target)
    assert repr(entry) in str(err.value)  # names the entry
    assert _tree(base) == before  # nothing written anywhere: not outside, not even the target folder
    assert (outside / "secret.txt").read_text() == "secret"


# ------------------------------------------------------------------------------------------- tar escapes


def _cve_2025_4517_tar(path: Path, target: Path) -> Path:
    """The shape of CVE-2025-4517: 16 nested directories, each reachable through a one-letter symlink, so the
    short path a/b/.../p resolves to a path close to PATH_MAX; a symlink below it makes the resolved path pass
    PATH_MAX (where Python 3.11.7's realpath gives up and the `data` filter checks the name lexically). Through
    that: a folder link to ../outside, a file written into it, and a hard link whose rewrite overwrites
    outside/secret.txt."""
    steps = "abcdefghijklmnop"
    comp = "d" * min(247, (4000 - len(str(target))) // len(steps) - 1)  # the deep path stays below PATH_MAX
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        deep = ""
        for letter in steps:
            _tar_dir(tf, os.path.join(deep, comp))
            _tar_link(tf, os.path.join(deep, letter), comp)
            deep = os.path.join(deep, comp)
        long_link = os.path.join(*steps, "l" * 254)  # resolved: past PATH_MAX
        _tar_link(tf, long_link, os.path.join(*[".."] * len(steps)))  # back to the top of the target
        _tar_link(tf, "escape", os.path.join(long_link, "..", "outside"))  # lexically inside, really ../outside
        _tar_file(tf, "escape/evil.txt", b"written outside the target")
        _tar_link(tf, "boom", "escape/secret.txt", hard=True)
        _tar_file(tf, "boom", b"overwritten through a hard link")
    return path


def test_cve_2025_4517_symlink_chain_past_path_max_is_refused(tmp_path: Path) -> None:
    archive = _cve_2025_4517_tar(tmp_path / "cve.tar", tmp_path / "real" / "target")
    sandbox = tmp_path / "sandbox"
    assert _escapes_when_links_are_followed(archive, sandbox)  # the archive is a real exploit ...
    assert (sandbox / "outside" / "evil.txt").is_file()
    assert (sandbox / "outside" / "secret.txt").read_text() == "overwritten through a hard link"
    _assert_refused_cleanly(archive, tmp_path / "real", "a")  # ... refused at its first link, before writing


def test_short_symlink_chain_is_refused(tmp_path: Path) -> None:
    """`q -> .` and `p -> q/..` pass a check that resolves names against a tree not yet written."""
    archive = tmp_path / "chain.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_file(tf, "ok.txt", b"fine")
        _tar_link(tf, "q", ".")
        _tar_link(tf, "p", "q/..")
        _tar_file(tf, "p/outside/evil.txt", b"evil")
    assert _escapes_when_links_are_followed(archive, tmp_path / "sandbox")
    _assert_refused_cleanly(archive, tmp_path / "real", "q")


def test_hard_link_to_an_outside_file_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "hard.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_link(tf, "h", "../outside/secret.txt", hard=True)
        _tar_file(tf, "h", b"overwritten")
    _assert_refused_cleanly(archive, tmp_path / "real", "h")


@pytest.mark.parametrize("kind,to", [(tarfile.SYMTYPE, "b.txt"), (tarfile.LNKTYPE, "b.txt")])
def test_every_link_is_refused_even_inside(tmp_path: Path, kind: bytes, to: str) -> None:
    """No benchmark archive needs a link, so none is accepted, however harmless it looks."""
    archive = tmp_path / "inner.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_file(tf, "b.txt", b"b")
        _tar_link(tf, "a.txt", to, hard=kind == tarfile.LNKTYPE)
    _assert_refused_cleanly(archive, tmp_path / "real", "a.txt")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_and_fifos_are_refused(tmp_path: Path, kind: bytes) -> None:
    archive = tmp_path / "dev.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("dev")
        info.type = kind
        tf.addfile(info)
    _assert_refused_cleanly(archive, tmp_path / "real", "dev")


@pytest.mark.parametrize("entry", ["../evil.txt", "a/../../evil.txt", "a/..", "/tmp/evil-abs.txt", "..\\evil.txt",
                                   "C:/evil.txt", "c:evil.txt"])
def test_tar_names_are_checked_lexically(tmp_path: Path, entry: str) -> None:
    archive = tmp_path / "names.tar"
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
        _tar_file(tf, "ok.txt", b"fine")
        _tar_file(tf, entry, b"evil")
    _assert_refused_cleanly(archive, tmp_path / "real", entry)


# ------------------------------------------------------------------------------------------- zip escapes


def _zip_with(path: Path, name: str, data: bytes = b"evil", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", "fine")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
            info.create_system = 3  # Unix
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("entry", ["../evil.txt", "a/../../evil.txt", "/tmp/evil-abs.txt", "..\\evil.txt",
                                   "C:\\evil.txt", "C:/evil.txt", "", "."])
def test_zip_names_are_checked_lexically(tmp_path: Path, entry: str) -> None:
    archive = _zip_with(tmp_path / "names.zip", entry)
    _assert_refused_cleanly(archive, tmp_path / "real", entry)


@pytest.mark.parametrize("mode,what", [(stat.S_IFLNK | 0o777, "symbolic link"), (stat.S_IFIFO | 0o644, "fifo"),
                                       (stat.S_IFCHR | 0o644, "device")])
def test_zip_links_and_special_files_are_refused(tmp_path: Path, mode: int, what: str) -> None:
    archive = _zip_with(tmp_path / "special.zip", "entry", b"../outside/secret.txt", mode)
    _assert_refused_cleanly(archive, tmp_path / "real", "entry")
    with pytest.raises(ds.UnsafeArchiveError, match=what):
        ds.extract(archive, tmp_path / "again")


# ------------------------------------------------------------------------- links already in the target


def test_an_existing_folder_link_in_the_target_is_not_followed(tmp_path: Path) -> None:
    target, outside = _world(tmp_path)
    target.mkdir()
    (target / "sub").symlink_to(outside, target_is_directory=True)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        _tar_file(tf, "sub/evil.txt", b"evil")
    with pytest.raises(ds.UnsafeArchiveError, match=r"'sub/evil.txt'.*is a link"):
        ds.extract(archive, target)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_an_existing_file_link_in_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    target, outside = _world(tmp_path)
    target.mkdir()
    (target / "x.txt").symlink_to(outside / "secret.txt")
    archive = _zip_with(tmp_path / "a.zip", "x.txt", b"new")
    ds.extract(archive, target)
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (target / "x.txt").is_symlink() and (target / "x.txt").read_bytes() == b"new"


# ----------------------------------------------------------------------------------- ordinary archives


def test_names_normalise_lexically() -> None:
    assert ds.member_parts("./a//b/./c.png") == ("a", "b", "c.png")
    assert ds.member_parts("a\\b.png") == ("a", "b.png")


def test_ordinary_archives_extract_and_re_extract(tmp_path: Path) -> None:
    """Folders (including a `.` entry, as `tar -C dir .` writes), nested files, and a second extraction over the
    first (fetch re-extracts) all work, in both formats."""
    tar = tmp_path / "ok.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        _tar_dir(tf, ".")
        _tar_dir(tf, "./Set5_HR")
        _tar_file(tf, "./Set5_HR/baby.png", b"png bytes")
        _tar_file(tf, "top.txt", b"top")
    zf_path = tmp_path / "ok.zip"
    with zipfile.ZipFile(zf_path, "w") as zf:
        zf.writestr("dir/", "")
        zf.writestr("dir/sub/file.bin", b"\x00\x01")
    for archive, expect in ((tar, {"Set5_HR": None, "Set5_HR/baby.png": b"png bytes", "top.txt": b"top"}),
                            (zf_path, {"dir": None, "dir/sub": None, "dir/sub/file.bin": b"\x00\x01"})):
        target = tmp_path / archive.name.replace(".", "_")
        for _ in range(2):
            ds.extract(archive, target)
            assert _tree(target) == expect


# --------------------------------------------------------------------------- published folder checksums


@pytest.mark.parametrize("name,folder", [("set5", "Set5"), ("set14", "Set14")])
def test_published_folder_md5_matches_the_real_set(data_root: Path, name: str, folder: str) -> None:
    """deepinv's published md5 of the extracted HF folder equals our `folder_md5` of the shared data's
    original images (the same files): the checksum and our implementation of it are both right."""
    (archive,) = ds.DATASETS[name].archives
    sub, published = archive.folder_md5
    assert sub == f"{folder}_HR"
    assert ds.folder_md5(data_root / folder / "original") == published


def test_fetch_verifies_the_extracted_folder(tmp_path: Path, data_root: Path, monkeypatch) -> None:
    source = tmp_path / "src" / "Set5_HR"
    shutil.copytree(data_root / "Set5" / "original", source)
    good = tmp_path / "good" / "Set5_HR.tar.gz"
    bad = tmp_path / "bad" / "Set5_HR.tar.gz"
    for archive in (good, bad):
        archive.parent.mkdir()
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(source, arcname="Set5_HR")
        (source / "baby.png").write_bytes((source / "baby.png").read_bytes() + b"\x00")  # tamper for `bad`
    (spec_archive,) = ds.DATASETS["set5"].archives
    for archive, ok in ((good, True), (bad, False)):
        fake = replace(spec_archive, url=f"https://example.invalid/{archive.parent.name}/Set5_HR.tar.gz")
        monkeypatch.setitem(ds.DATASETS, "set5", replace(ds.DATASETS["set5"], archives=(fake,)))
        root = tmp_path / f"root-{archive.parent.name}"

        def copy(url: str, dest: Path, archive: Path = archive) -> Path:
            dest.parent.mkdir(parents=True, exist_ok=True)
            return Path(shutil.copy(archive, dest))

        if ok:
            ds.fetch("set5", root, downloader=copy)
            assert [p.name for p in ds.load_pairs("set5", 4, root)] == ["baby", "bird", "butterfly", "head", "woman"]
        else:
            with pytest.raises(ds.ChecksumError, match=r"Set5_HR: folder md5 .* != published e128ede7"):
                ds.fetch("set5", root, downloader=copy)
