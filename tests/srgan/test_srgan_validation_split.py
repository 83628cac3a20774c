"""The held-out validation split (srgan.holdout): fixed by content, the same in every process, and never trained
on. The expected split is recomputed here with hashlib, independently of the module."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from srgan_helpers import REPO_ROOT, micro, write_random_images

from srgan.config import override
from srgan.data import PatchDataset, scan_training_images
from srgan.holdout import MAX_SHARE, dirs_split, holdout_split, training_exclusions


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_t91_holds_out_the_ten_smallest_hashes_and_trains_on_none_of_them(data: Path) -> None:
    t91 = data / "train" / "T91"
    split = holdout_split(t91, count=10)
    first = {}  # sha256 -> the first file of those bytes (T91 holds one byte-identical pair: one image)
    for path in sorted(p for p in t91.iterdir() if p.is_file()):  # every T91 image is >= 78 px
        first.setdefault(_sha(path), path.name)
    smallest = sorted(first)[:10]
    assert [h.sha256 for h in split.images] == smallest
    assert [h.path.name for h in split.images] == [first[d] for d in smallest]
    assert split.sources == len(first) == 90 and split.excluded == set(smallest)
    folders = [t91, data / "train" / "BSD200"]
    kept, _ = scan_training_images(folders, min_size=24, decode=False, exclude=split.excluded)
    trained = {_sha(p) for p, _ in kept}
    assert not {p.name for p, _ in kept} & {h.path.name for h in split.images}
    assert not trained & split.excluded  # no byte-identical copy either
    every = {_sha(p) for folder in folders for p in folder.iterdir() if p.is_file()}
    assert trained == every - split.excluded


def test_the_split_is_the_same_in_another_process_and_by_content_not_name(data: Path, tmp_path: Path) -> None:
    t91 = data / "train" / "T91"
    here = [(h.path.name, h.sha256) for h in holdout_split(t91, count=4).images]
    code = ("import json, sys; from srgan.holdout import holdout_split; "
            "print(json.dumps([[h.path.name, h.sha256] for h in holdout_split(sys.argv[1], count=4).images]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # nothing may depend on Python's per-process hash seed
    done = subprocess.run([sys.executable, "-c", code, str(t91)], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True, env=env)
    assert [tuple(x) for x in json.loads(done.stdout)] == here
    renamed = tmp_path / "renamed"  # the same bytes under other names, in another order
    renamed.mkdir()
    for i, path in enumerate(sorted(t91.iterdir(), reverse=True)):
        shutil.copyfile(path, renamed / f"z{i:03d}{path.suffix}")
    assert [h.sha256 for h in holdout_split(renamed, count=4).images] == [d for _, d in here]


def test_sub_images_of_one_source_are_held_out_together(tmp_path: Path) -> None:
    folder = tmp_path / "sub"
    write_random_images(folder, count=10, size=(48, 48))
    for i in range(10):  # srgan.prepare's names: <stem>_s001.png ...
        source = folder / f"img{i:02d}.png"
        for t in range(3):
            write_random_images(tmp_path / "tile", count=1, size=(48, 48), seed=100 * i + t)
            shutil.move(tmp_path / "tile" / "img00.png", folder / f"photo{i:02d}_s{t + 1:03d}.png")
        source.unlink()
    split = holdout_split(folder, count=1)
    (held,) = split.images
    group = held.path.stem.rsplit("_s", 1)[0]
    members = sorted(folder.glob(f"{group}_s*.png"))
    assert len(members) == 3 and held.sha256 == min(_sha(p) for p in members)  # the group's smallest hash
    assert split.excluded == {_sha(p) for p in members} and split.sources == 10
    first_of_each = min(min(_sha(p) for p in folder.glob(f"photo{i:02d}_s*.png")) for i in range(10))
    assert held.sha256 == first_of_each  # the group with the smallest hash among the groups
    kept, _ = scan_training_images([folder], min_size=24, decode=False, exclude=split.excluded)
    assert len(kept) == 27 and not {p for p, _ in kept} & set(members)


def test_a_small_folder_keeps_most_of_its_images_and_one_image_is_refused(tmp_path: Path) -> None:
    five = write_random_images(tmp_path / "five", count=5, size=(40, 40))
    write_random_images(tmp_path / "tiny", count=1, size=(16, 16))
    shutil.copyfile(tmp_path / "tiny" / "img00.png", five / "small.png")  # under 32 px: never a candidate
    split = holdout_split(five, count=10)
    assert len(split.images) == max(1, 5 // MAX_SHARE) == 1 and split.sources == 5
    assert split.images[0].path.name != "small.png"
    one = write_random_images(tmp_path / "one", count=1, size=(40, 40))
    with pytest.raises(ValueError, match=rf"{one}: 1 usable image.*too few to hold out.*data.val_dirs"):
        holdout_split(one, count=10)


def test_training_leaves_out_the_validation_images_of_dirs_and_of_the_holdout(tmp_path: Path) -> None:
    train = write_random_images(tmp_path / "train", count=6, size=(40, 40))
    val = write_random_images(tmp_path / "val", count=2, size=(40, 40), seed=7)
    shutil.copyfile(val / "img01.png", train / "copy_of_val.png")  # a validation image inside the training folder
    cfg = override(micro("v2"), {"data.val_set": "dirs", "data.val_dirs": [str(val)]})
    exclude = training_exclusions(cfg, [train], tmp_path)
    assert exclude == {_sha(p) for p in val.iterdir()} == dirs_split([val]).excluded
    dataset = PatchDataset([train], scale=4, patch_size=24, exclude=exclude)
    assert sorted(p.name for p, _ in dataset.images) == [f"img{i:02d}.png" for i in range(6)]
    holdout = micro("v2")
    assert holdout.data.val_set == "holdout"
    held = {h.path for h in holdout_split(train, count=holdout.data.val_count).images}
    dataset = PatchDataset([train], scale=4, patch_size=24, exclude=training_exclusions(holdout, [train], tmp_path))
    assert len(held) == 1 and not held & {p for p, _ in dataset.images} and len(dataset) == 6
    on_benchmark = override(micro("v2"), {"data.val_set": "set14"})
    assert training_exclusions(on_benchmark, [train], tmp_path) == frozenset()
