"""Finished pretrainings kept across runs, so that a second study or sweep with the same pretraining starts its GAN
stage at once.

An entry is content-addressed: `<root>/<name>-<pretrain_key>-<config digest>/`, where `pretrain_key`
(`srgan.versions`) says what makes two pretrainings identical and the config digest covers the whole resolved
config and the training images it reads (their folders, names and sizes). It holds what scoring and the GAN stage
read from a trial folder: config.json, history.jsonl, label.txt and the kept checkpoints' generator.safetensors +
config.json (the resume state, training_state.pt, is left out: a finished pretraining is not resumed), and
manifest.json: the key, the digest, the config, the sha256 of every file, and the run it came from.

Before use an entry is verified (every file's sha256 and the config); a corrupt or mismatching one is refused
with a warning naming it and the problem, removed, and the pretraining runs again and is stored anew. An entry is
written into a hidden folder beside its final name and renamed into place, so a reader sees a whole entry or
none; two runs storing the same pretraining at once leave one good entry (the second finds the first's and keeps
it). The root is `$ENHANCE_CACHE`, else `cache` under the results root (`$ENHANCE_RESULTS` or ./runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.session import checkpoints
from harness.storage import default_storage, resolve_train_dirs
from srgan.config import ExperimentConfig, differing_keys, to_dict
from srgan.versions import pretrain_key

log = logging.getLogger(__name__)

CACHE_ENV = "ENHANCE_CACHE"
MANIFEST = "manifest.json"
MARKER = "cache.json"  # in a trial folder that was filled from the cache: which entry, from which run
TRIAL_FILES = ("config.json", "history.jsonl", "label.txt")
CHECKPOINT_FILES = ("generator.safetensors", "config.json")


class CacheError(Exception):
    """An entry that cannot be used (named, with the reason)."""


@dataclass(frozen=True)
class Entry:
    """A verified cache entry."""

    path: Path
    key: str
    digest: str
    source: dict[str, Any]  # {"run": results folder, "trial": trial name, "stored": unix time}
    files: dict[str, str]  # relative path -> sha256


def cache_root() -> Path:
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser().resolve() if value else default_storage("cache")


def config_digest(cfg: ExperimentConfig, data_root: str | Path) -> str:
    """sha256 of the resolved config and of the training images it reads (folders, file names and sizes): the
    same relative folder under another data root is other data."""
    listing = []
    for folder in resolve_train_dirs(cfg, data_root):
        files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
        listing.append({"folder": str(folder.resolve()), "files": files})
    blob = json.dumps({"config": to_dict(cfg), "train_data": listing}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_path(root: Path, cfg: ExperimentConfig, data_root: str | Path) -> tuple[Path, str, str]:
    key, digest = pretrain_key(cfg), config_digest(cfg, data_root)
    return Path(root) / f"{cfg.name}-{key}-{digest[:12]}", key, digest


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- reading


def verify(path: Path, cfg: ExperimentConfig, key: str, digest: str) -> Entry:
    """The entry at `path`, checked against the pretraining `cfg` (key, digest, config) and against its own
    manifest (every file present, with its sha256); CacheError names what is wrong."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files, source = dict(manifest["files"]), dict(manifest["source"])
        differing = differing_keys(manifest["config"], json.loads(json.dumps(to_dict(cfg))))  # tuples as JSON has them
        same = manifest["key"] == key and manifest["config_digest"] == digest
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CacheError(f"unreadable {MANIFEST} ({type(err).__name__}: {err})") from None
    if differing:
        raise CacheError(f"made for another config (differs in: {', '.join(differing)})")
    if not same:  # same config, other training images (or a manifest edited by hand)
        raise CacheError(f"made for another pretraining key or training data (key {manifest['key']}, digest "
                         f"{str(manifest['config_digest'])[:12]}; expected {key}, {digest[:12]})")
    if not any(rel.endswith("/generator.safetensors") for rel in files):
        raise CacheError("it holds no generator weights")
    for rel, expected in sorted(files.items()):
        file = path / rel
        if not file.is_file():
            raise CacheError(f"{rel} is missing")
        if file_digest(file) != expected:
            raise CacheError(f"{rel} does not match its sha256 in {MANIFEST} (corrupt)")
    return Entry(path=path, key=key, digest=digest, source=source, files=files)


def lookup(cfg: ExperimentConfig, data_root: str | Path, *, root: Path | None = None,
           discard_bad: bool = True) -> Entry | None:
    """The verified entry of the pretraining `cfg`, or None. A bad entry is refused with a warning and removed
    (`discard_bad`; a dry run keeps it), so that the pretraining runs again and is stored anew."""
    path, key, digest = entry_path(root or cache_root(), cfg, data_root)
    if not path.is_dir():
        return None
    try:
        return verify(path, cfg, key, digest)
    except CacheError as err:
        action = "removed; the pretraining runs again and is stored anew" if discard_bad else "it would be rebuilt"
        log.warning("pretraining cache: refused %s: %s (%s)", path, err, action)
        if discard_bad:
            _remove(path)
        return None


def materialise(entry: Entry, run_dir: Path) -> Path:
    """Copy the entry into the trial folder `run_dir` (the layout a trained pretraining leaves), check every
    copied file against the manifest, and record where it came from (`cache.json`)."""
    run_dir = Path(run_dir)
    tmp = run_dir.with_name(f".{run_dir.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        for rel, expected in entry.files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry.path / rel, target)
            if file_digest(target) != expected:
                raise CacheError(f"{entry.path / rel} changed while it was copied")
        marker = {"entry": str(entry.path), "key": entry.key, "config_digest": entry.digest,
                  "source_run": entry.source.get("run"), "source_trial": entry.source.get("trial"),
                  "stored": entry.source.get("stored"), "copied": time.time()}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        if run_dir.exists():  # an unfinished earlier attempt: the cache's copy replaces it
            shutil.rmtree(run_dir)
        os.replace(tmp, run_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


def from_cache(run_dir: Path) -> dict[str, Any] | None:
    """What `materialise` recorded in a trial folder, or None for a trained one."""
    path = Path(run_dir) / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------------------------- writing


def store(run_dir: Path, cfg: ExperimentConfig, data_root: str | Path, *, source_run: Path,
          root: Path | None = None) -> Entry:
    """Keep the finished pretraining in `run_dir` (trained to its last step) as the entry of `cfg`. Atomic: the
    entry is built in a hidden folder and renamed into place; if another run stored it first, a good existing
    entry is kept (ours is dropped), a bad one replaced."""
    run_dir = Path(run_dir)
    kept = checkpoints(run_dir)
    steps = cfg.train.total_steps
    if not kept or not kept[-1].name.endswith(f"{steps:07d}"):
        raise CacheError(f"{run_dir}: not a finished pretraining (no checkpoint of step {steps})")
    path, key, digest = entry_path(root or cache_root(), cfg, data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        files = {}
        sources = [run_dir / name for name in TRIAL_FILES] + [c / name for c in kept for name in CHECKPOINT_FILES]
        for src in sources:
            if src.is_file():
                rel = str(src.relative_to(run_dir))
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)
                files[rel] = file_digest(tmp / rel)
        source = {"run": str(Path(source_run).resolve()), "trial": run_dir.name, "stored": time.time()}
        manifest = {"key": key, "config_digest": digest, "config": to_dict(cfg), "source": source, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        entry = Entry(path=path, key=key, digest=digest, source=source, files=files)
        try:
            os.rename(tmp, path)  # fails when the entry exists: a folder is never renamed over a full one
        except OSError:
            try:
                existing = verify(path, cfg, key, digest)
                log.info("pretraining cache: %s was stored meanwhile by %s; kept", path, existing.source.get("run"))
                return existing
            except CacheError as err:
                log.warning("pretraining cache: replacing %s: %s", path, err)
                _remove(path)
                os.rename(tmp, path)
        log.info("pretraining cache: stored %s as %s", run_dir.name, path)
        return entry
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    """Move an entry out of the way first (a rename is atomic), then delete it."""
    trash = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.trash")
    try:
        os.rename(path, trash)
    except FileNotFoundError:  # another run removed it first
        return
    shutil.rmtree(trash, ignore_errors=True)
