"""`python -m srgan.prepare`: overlapping sub-images covering each image, resumable, bad files skipped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan.images import load_image_u8
from srgan.prepare import MARKER_DIR, main, prepare, tile_starts


def num_tiles(height: int, width: int, *, tile: int = 480, step: int = 240) -> int:
    """How many tiles `prepare` cuts from an image: the product of the tile counts along both axes."""
    return len(tile_starts(height, tile, step)) * len(tile_starts(width, tile, step))


def write_rgb(path: Path, h: int, w: int, seed: int) -> torch.Tensor:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return torch.from_numpy(arr).permute(2, 0, 1)


def expected_count(length: int, tile: int, step: int) -> int:
    """Tiles along one axis: floor((L - T) / S) + 1, plus one edge-aligned tile if that leaves a remainder."""
    regular = (length - tile) // step + 1
    return regular + (1 if (length - tile) % step else 0)


@pytest.mark.parametrize("length", [480, 481, 719, 720, 721, 960, 2040, 1356])
def test_tile_starts_follow_the_subimage_convention(length: int) -> None:
    starts = tile_starts(length, 480, 240)
    assert starts[0] == 0 and starts[-1] == length - 480  # first at the origin, last flush with the edge
    assert len(starts) == expected_count(length, 480, 240)
    assert all(0 < b - a <= 240 for a, b in zip(starts, starts[1:], strict=False))
    assert starts[:-1] == list(range(0, 240 * (len(starts) - 1), 240))
    # DIV2K's 2040 x 1356 image gives the well-known 8 x 5 = 40 sub-images of BasicSR's DIV2K_train_HR_sub
    assert num_tiles(1356, 2040) == 40


def test_tiles_cover_the_image_and_equal_its_crops(tmp_path: Path) -> None:
    src, dst = tmp_path / "hr", tmp_path / "sub"
    src.mkdir()
    h, w, tile, step = 70, 101, 32, 16
    img = write_rgb(src / "0001.png", h, w, seed=0)
    report = prepare(src, dst, tile=tile, step=step, progress=False)
    count = expected_count(h, tile, step) * expected_count(w, tile, step)
    # rows at 0, 16, 32, 38; columns at 0, 16, 32, 48, 64, 69
    assert count == num_tiles(h, w, tile=tile, step=step) == 4 * 6
    names = sorted(p.name for p in dst.glob("*.png"))
    assert names == [f"0001_s{i:03d}.png" for i in range(1, count + 1)] and report.tiles == count
    covered = torch.zeros(h, w, dtype=torch.bool)
    index = 0
    for top in tile_starts(h, tile, step):
        for left in tile_starts(w, tile, step):  # row-major numbering
            index += 1
            sub = load_image_u8(dst / f"0001_s{index:03d}.png")
            assert torch.equal(sub, img[:, top : top + tile, left : left + tile])
            covered[top : top + tile, left : left + tile] = True
    assert covered.all()


def test_resume_skips_finished_images_and_redoes_unfinished(tmp_path: Path) -> None:
    src, dst = tmp_path / "hr", tmp_path / "sub"
    src.mkdir()
    for i in range(3):
        write_rgb(src / f"{i:04d}.png", 40, 50, seed=i)
    first = prepare(src, dst, tile=32, step=16, progress=False)
    # 2 rows (0, 8) x 3 columns (0, 16, 18) per image
    assert first.done == ["0000.png", "0001.png", "0002.png"] and first.tiles == 3 * 6
    # simulate a run killed while writing 0001: its marker is gone and one tile is missing
    (dst / MARKER_DIR / "0001.json").unlink()
    (dst / "0001_s004.png").unlink()
    finished_tile = dst / "0000_s001.png"
    mtime = finished_tile.stat().st_mtime_ns
    second = prepare(src, dst, tile=32, step=16, progress=False)
    assert second.resumed == ["0000.png", "0002.png"] and second.done == ["0001.png"] and second.tiles == 6
    assert finished_tile.stat().st_mtime_ns == mtime  # finished images are not rewritten
    assert (dst / "0001_s004.png").exists()
    # a finished image whose tile was deleted afterwards is redone too; so is a change of tiling
    (dst / "0002_s002.png").unlink()
    assert prepare(src, dst, tile=32, step=16, progress=False).done == ["0002.png"]
    assert prepare(src, dst, tile=32, step=8, progress=False).done == ["0000.png", "0001.png", "0002.png"]
    marker = json.loads((dst / MARKER_DIR / "0000.json").read_text())
    assert marker["step"] == 8 and len(marker["tiles"]) == num_tiles(40, 50, tile=32, step=8)
    assert not list(dst.glob("*.tmp")) and not list(dst.glob(".*.tmp"))


def test_unreadable_and_small_files_are_skipped_with_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src, dst = tmp_path / "hr", tmp_path / "sub"
    src.mkdir()
    write_rgb(src / "good.png", 40, 40, seed=0)
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (src / "empty.jpg").write_bytes(b"")
    write_rgb(src / "small.png", 20, 60, seed=1)
    (src / "readme.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING, logger="srgan.prepare"):
        report = prepare(src, dst, tile=32, step=16, progress=False)
    assert report.done == ["good.png"]
    assert [name for name, _ in report.skipped] == ["corrupt.png", "empty.jpg", "small.png"]
    for name, reason in report.skipped:
        assert sum(name in r.getMessage() and reason in r.getMessage() for r in caplog.records) == 1
    assert sorted(p.name for p in dst.glob("*.png")) == [f"good_s{i:03d}.png" for i in range(1, 5)]


def test_min_size_keeps_narrow_images_as_whole_side_tiles(tmp_path: Path) -> None:
    src, dst = tmp_path / "hr", tmp_path / "sub"
    src.mkdir()
    img = write_rgb(src / "wide.png", 20, 60, seed=1)
    report = prepare(src, dst, tile=32, step=16, min_size=16, progress=False)
    assert report.tiles == 3  # one row of 20-px-high tiles at x = 0, 16, 28
    assert torch.equal(load_image_u8(dst / "wide_s003.png"), img[:, :, 28:60])


def test_16_bit_sources_keep_their_depth(tmp_path: Path) -> None:
    from srgan.prepare import write_png

    src, dst = tmp_path / "hr", tmp_path / "sub"
    src.mkdir()
    img = torch.randint(0, 65536, (3, 40, 40), dtype=torch.int32)
    write_png(img, src / "deep.png")
    prepare(src, dst, tile=32, step=16, progress=False)
    assert torch.equal(load_image_u8(dst / "deep_s004.png"), img[:, 8:40, 8:40])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "hr"
    src.mkdir()
    write_rgb(src / "a.png", 40, 40, seed=0)
    assert main([str(src), str(tmp_path / "sub"), "--tile", "32", "--step", "16"]) == 0
    assert len(list((tmp_path / "sub").glob("a_s*.png"))) == 4
    assert main([str(tmp_path / "missing"), str(tmp_path / "sub")]) == 2
