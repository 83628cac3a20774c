"""The pretraining cache's key and paths (issue 27.2 and 27.3): the key covers the training files' contents, the
validation split, the code and the torch version; `store` files a pretraining under the key it recorded when it
trained; an entry under the old key (names and sizes) is refused, not reused; every manifest path stays inside
the entry and the trial folder, and links inside an entry are refused. Small synthetic data folders, no training."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from cache_synthetic import TRAIN_DIRS, finished, pretraining, rewrite_in_place, synthetic_root, trained_file

from harness.run import validation
from harness.sweeps import cache
from srgan.config import to_dict
from srgan.holdout import holdout_split
from srgan.versions import pretrain_key

# ----------------------------------------------------------------------------------------------- 27.2 the key


def test_a_training_image_rewritten_in_place_with_its_size_and_mtime_is_other_data(tmp_path: Path, caplog) -> None:
    root = synthetic_root(tmp_path / "data")
    cfg = pretraining(root)
    entry = cache.store(finished(cfg, tmp_path / "run" / cfg.name, root), cfg, source_run=tmp_path / "run",
                        root=tmp_path / "cache")
    assert cache.lookup(cfg, root, root=tmp_path / "cache") == entry
    rewrite_in_place(trained_file(root))
    with caplog.at_level("INFO"):
        assert cache.lookup(cfg, root, root=tmp_path / "cache") is None  # names and sizes alone kept the digest
    assert f"{entry.path} holds {cfg.name} trained with other training images" in caplog.text
    assert entry.path.is_dir()  # kept: it fits the data it was trained on


def test_the_key_covers_the_validation_split_code_and_torch_versions(tmp_path: Path, monkeypatch, caplog) -> None:
    root = synthetic_root(tmp_path / "data")
    cfg = pretraining(root)
    parts = cache.key_parts(cfg, root)
    # the code version, computed here independently: every source file of srgan/ by name and sha256
    src = Path(cache.__file__).resolve().parents[2] / "srgan"
    listing = [[p.relative_to(src).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()]
               for p in sorted(src.rglob("*.py"))]
    assert parts["code"] == hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()
    assert parts["torch"] == torch.__version__
    held = holdout_split(root / TRAIN_DIRS[0], count=10).images
    assert [img["sha256"] for img in validation.record(cfg, root)["images"]] == [h.sha256 for h in held]
    cache.store(finished(cfg, tmp_path / "run" / cfg.name, root), cfg, source_run=tmp_path / "run",
                root=tmp_path / "cache")
    for part, change in (("code version", lambda: monkeypatch.setattr(cache, "code_version", lambda: "other")),
                         ("torch version", lambda: monkeypatch.setattr(torch, "__version__", "9.9.9"))):
        change()
        caplog.clear()
        with caplog.at_level("INFO"):
            assert cache.lookup(cfg, root, root=tmp_path / "cache") is None
        assert f"trained with other {part}" in caplog.text
        monkeypatch.undo()
    assert cache.lookup(cfg, root, root=tmp_path / "cache") is not None


def test_store_files_a_pretraining_under_the_key_it_recorded_when_it_trained(tmp_path: Path) -> None:
    root = synthetic_root(tmp_path / "data")
    cfg = pretraining(root)
    run = finished(cfg, tmp_path / "run" / cfg.name, root)  # trained on the data as it is now
    recorded = json.loads((run / cache.KEY_FILE).read_text())
    changed = trained_file(root)
    old = rewrite_in_place(changed)  # the data changes before the run stores it (the resume of issue 27.1)
    entry = cache.store(run, cfg, source_run=tmp_path / "run", root=tmp_path / "cache")
    assert entry.digest == recorded["config_digest"] != cache.config_digest(cfg, root)
    assert cache.lookup(cfg, root, root=tmp_path / "cache") is None  # not under the new data's key
    changed.write_bytes(old)  # the data it trained on again: found
    assert cache.lookup(cfg, root, root=tmp_path / "cache") == entry
    # a pretraining restarted on other data than its first start trained on both: never stored
    other = finished(cfg, tmp_path / "mixed" / cfg.name, root)
    rewrite_in_place(changed)
    cache.record_key(other, cfg, root)
    with pytest.raises(cache.CacheError, match="training images changed between its attempts"):
        cache.store(other, cfg, source_run=tmp_path / "mixed", root=tmp_path / "cache2")
    (other / cache.KEY_FILE).unlink()
    with pytest.raises(cache.CacheError, match=f"no {cache.KEY_FILE}"):
        cache.store(other, cfg, source_run=tmp_path / "mixed", root=tmp_path / "cache2")


def _old_digest(cfg, root: Path) -> str:
    """The key before issue 27.2: the config and the training folders' file names and sizes."""
    listing = []
    for entry in cfg.data.train_dirs:
        folder = root / entry
        files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
        listing.append({"folder": str(folder.resolve()), "files": files})
    blob = json.dumps({"config": to_dict(cfg), "train_data": listing}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def test_an_entry_under_the_old_key_is_refused_not_reused(tmp_path: Path, caplog) -> None:
    root = synthetic_root(tmp_path / "data")
    cfg = pretraining(root)
    good = cache.store(finished(cfg, tmp_path / "run" / cfg.name, root), cfg, source_run=tmp_path / "run",
                       root=tmp_path / "made")
    manifest = json.loads((good.path / cache.MANIFEST).read_text())
    old_digest = _old_digest(cfg, root)
    old = {k: v for k, v in manifest.items() if k not in ("format", "parts")} | {"config_digest": old_digest}
    key = pretrain_key(cfg)
    for name in (f"{cfg.name}-{key}-{old_digest[:12]}", good.path.name):  # beside the new name, and at it
        shutil.copytree(good.path, tmp_path / "cache" / name)
        (tmp_path / "cache" / name / cache.MANIFEST).write_text(json.dumps(old))
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cache.lookup(cfg, root, root=tmp_path / "cache") is None
    assert caplog.text.count("written under an older cache key") == 1  # the one at the new name
    with caplog.at_level("WARNING"):
        assert cache.lookup(cfg, root, root=tmp_path / "cache") is None
    assert caplog.text.count("written under an older cache key") == 2  # then the one beside it
    assert not [p for p in (tmp_path / "cache").iterdir()]  # both removed, as bad entries are


# ------------------------------------------------------------------------------------------ 27.3 the paths


@pytest.mark.parametrize("escape", ["dotdot", "absolute", "folder-link", "file-link"])
def test_manifest_paths_never_leave_the_entry_or_the_trial_folder(tmp_path: Path, caplog, escape: str) -> None:
    root = synthetic_root(tmp_path / "data")
    cfg = pretraining(root)
    entry = cache.store(finished(cfg, tmp_path / "run" / cfg.name, root), cfg, source_run=tmp_path / "run",
                        root=tmp_path / "cache")
    weights = next(rel for rel in entry.files if rel.endswith("generator.safetensors"))
    outside = tmp_path / "cache" / "outside"  # beside the entry, as `../` from it reaches
    outside.mkdir()
    shutil.copyfile(entry.path / weights, outside / "generator.safetensors")
    files = dict(entry.files)
    if escape == "dotdot":
        rel = "../outside/generator.safetensors"
    elif escape == "absolute":
        rel = str(outside / "generator.safetensors")
    elif escape == "folder-link":
        (entry.path / "linked").symlink_to(outside, target_is_directory=True)
        rel = "linked/generator.safetensors"
    else:
        (entry.path / weights).unlink()
        (entry.path / weights).symlink_to(outside / "generator.safetensors")
        rel = weights
    files[rel] = entry.files[weights]
    manifest = json.loads((entry.path / cache.MANIFEST).read_text())
    (entry.path / cache.MANIFEST).write_text(json.dumps({**manifest, "files": files}))
    with caplog.at_level("WARNING"):
        assert cache.lookup(cfg, root, root=tmp_path / "cache", discard_bad=False) is None
    assert f"refused {entry.path}" in caplog.text and repr(rel) in caplog.text
    # copying a forged entry (verification bypassed) writes nothing outside the trial folder either
    dest = tmp_path / "second" / "trials" / cfg.name
    forged = cache.Entry(path=entry.path, key=entry.key, digest=entry.digest, source=entry.source, files=files)
    with pytest.raises(cache.CacheError, match="plain relative path|is a link"):
        cache.materialise(forged, dest)
    assert not dest.exists() and sorted(p.name for p in dest.parent.iterdir()) == []  # `../` from it: nothing
    assert sorted(p.name for p in outside.iterdir()) == ["generator.safetensors"]


def test_plain_relative_paths_only() -> None:
    for rel in ("a/b", "checkpoint_0000004/generator.safetensors", "config.json"):
        assert str(cache.plain_rel(rel)) == rel
    for rel in ("", ".", "./a", "a/./b", "a//b", "a/", "../a", "a/../b", "/etc/passwd", "a\\b", "a\0b", 3, None):
        with pytest.raises(cache.CacheError, match="plain relative path"):
            cache.plain_rel(rel)
