"""Finished pretrainings kept across runs, so that a second study or sweep with the same pretraining starts its GAN
stage at once.

An entry is content-addressed: `<root>/<name>-<pretrain_key>-<config digest>/`, where `pretrain_key`
(`srgan.versions`) says what makes two pretrainings identical and the config digest covers what the weights depend
on (`key_parts`): the whole resolved config, the contents of the training images it reads (the sha256 of every
file, `srgan.holdout.sha256_of`, the function the holdout chooses by), its validation split, the code version (a
digest of `srgan/`'s sources: there may be no git) and the torch version. A pretraining records the key and
digest of what it trains on in its trial folder when it starts (`record_key`, `KEY_FILE`), and `store` files it
under that record, never under what the data root holds later. It holds what scoring and the GAN stage read from
a trial folder: config.json, history.jsonl, label.txt and the kept checkpoints' generator.safetensors +
config.json (the resume state, training_state.pt, is left out: a finished pretraining is not resumed), and
manifest.json: the format, the key, the digest and its parts, the config, the sha256 of every file, and the run
it came from.

Before use an entry is verified (every file's sha256, the config and the key's parts); a corrupt or mismatching
one is refused with a warning naming it and the problem, removed, and the pretraining runs again and is stored
anew. An entry written under an older key (format 1: training files by name and size only) is refused the same
way, never reused. Every path a manifest names must be a plain relative path that stays inside the entry (and,
copied, inside the trial folder), with no link on the way: the cache may be shared storage. An entry is written
into a hidden folder beside its final name and renamed into place, so a reader sees a whole entry or none; two
runs storing the same pretraining at once leave one good entry (the second finds the first's and keeps it). The
root is `$ENHANCE_CACHE`, else `cache` under the results root (`$ENHANCE_RESULTS` or ./runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from harness.run import validation
from harness.run.session import checkpoints
from harness.run.storage import default_storage, resolve_train_dirs
from srgan.config import ExperimentConfig, differing_keys, to_dict
from srgan.holdout import file_digest, sha256_of
from srgan.versions import pretrain_key

log = logging.getLogger(__name__)

CACHE_ENV = "ENHANCE_CACHE"
FORMAT = 2  # manifest format: 2 keys on contents, validation, code and torch; 1 (no "format") on names and sizes
MANIFEST = "manifest.json"
MARKER = "cache.json"  # in a trial folder that was filled from the cache: which entry, from which run
KEY_FILE = "cache_key.json"  # in a pretraining's trial folder: the key of what it trained on (`record_key`)
TRIAL_FILES = ("config.json", "history.jsonl", "label.txt")
CHECKPOINT_FILES = ("generator.safetensors", "config.json")
PARTS = {"train_data": "training images", "validation": "validation split", "code": "code version (srgan/)",
         "torch": "torch version"}  # what a digest covers beside the config, and how a message names it


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


# --------------------------------------------------------------------------------------------- the key


def folder_files(folder: str | Path) -> dict[str, str]:
    """The sha256 of every file under `folder` (recursively), by its folder-relative path. A file is read once per
    process while its size, times and inode stay (an in-place rewrite changes its ctime)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def package_sources(package: Any) -> list[list[str]]:
    """[relative name, sha256] of every Python source of an imported `package`, in name order: its code, known
    without git."""
    root = Path(package.__file__).resolve().parent
    return [[p.relative_to(root).as_posix(), sha256_of(p)] for p in sorted(root.rglob("*.py"))]


@lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of `srgan/`'s Python sources (`package_sources`): the code a pretraining trains with."""
    import srgan

    return _digest(package_sources(srgan))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def key_parts(cfg: ExperimentConfig, data_root: str | Path) -> dict[str, Any]:
    """What a pretraining's weights depend on besides its config: the training folders' contents (a digest per
    folder, in the config's order), the validation split (`harness.run.validation.record`: its images' sha256), the
    code version and the torch version. Where the data root is does not matter, what it holds does."""
    import torch

    return {"train_data": [_digest(folder_files(f)) for f in resolve_train_dirs(cfg, data_root)],
            "validation": _digest(validation.record(cfg, data_root)), "code": code_version(),
            "torch": torch.__version__}


def digest_of(cfg_record: dict[str, Any], parts: dict[str, Any]) -> str:
    """The config digest of a config (as `to_dict` gives it) and its `key_parts`."""
    return _digest({"config": json.loads(json.dumps(cfg_record)), **parts})


def config_digest(cfg: ExperimentConfig, data_root: str | Path) -> str:
    """sha256 of the resolved config and its `key_parts`."""
    return digest_of(to_dict(cfg), key_parts(cfg, data_root))


def entry_name(cfg: ExperimentConfig, key: str, digest: str) -> str:
    return f"{cfg.name}-{key}-{digest[:12]}"


def entry_path(root: Path, cfg: ExperimentConfig, data_root: str | Path) -> tuple[Path, str, str]:
    key, digest = pretrain_key(cfg), config_digest(cfg, data_root)
    return Path(root) / entry_name(cfg, key, digest), key, digest


def changed_parts(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The names (`PARTS`) of the key parts that differ between two records."""
    return [what for part, what in PARTS.items() if recorded.get(part) != now.get(part)]


def record_key(run_dir: Path, cfg: ExperimentConfig, data_root: str | Path) -> dict[str, Any]:
    """Record in a pretraining's trial folder the key of what it trains on, when it starts (`KEY_FILE`); `store`
    files the finished pretraining under it. A restart that finds other data or code than its earlier start
    marks the record mixed: such a pretraining is never stored."""
    parts = key_parts(cfg, data_root)
    record = {"key": pretrain_key(cfg), "config_digest": digest_of(to_dict(cfg), parts), "parts": parts,
              "config": to_dict(cfg), "recorded": time.time()}
    path = Path(run_dir) / KEY_FILE
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = None
    if isinstance(earlier, dict) and earlier.get("config_digest") != record["config_digest"]:
        changed = changed_parts(earlier.get("parts", {}), parts) or ["config"]
        record["mixed"] = earlier.get("mixed") or f"{', '.join(changed)} changed between its attempts"
        log.warning("pretraining %s: its %s; it will not be stored in the cache", Path(run_dir).name,
                    record["mixed"])
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return record


# --------------------------------------------------------------------------------------------- paths


def plain_rel(rel: Any) -> PurePosixPath:
    """A manifest's path `rel`, when it is a plain relative path (no root, no `.` or `..`, no empty part), else
    CacheError naming it."""
    if not isinstance(rel, str) or not rel or "\0" in rel or "\\" in rel:
        raise CacheError(f"manifest path {rel!r} is not a plain relative path")
    path = PurePosixPath(rel)
    if path.is_absolute() or str(path) != rel or rel == "." or any(p in ("", ".", "..") for p in path.parts):
        raise CacheError(f"manifest path {rel!r} is not a plain relative path (it would leave the entry)")
    return path


def inside(base: Path, rel: Any) -> Path:
    """`base / rel` for a plain `rel` whose every part is no link and which stays inside `base` once resolved;
    else CacheError naming `rel`."""
    parts = plain_rel(rel).parts
    at = Path(base)
    for i, part in enumerate(parts):
        at = at / part
        try:
            mode = os.lstat(at).st_mode
        except FileNotFoundError:
            break  # missing: the caller says so (or creates it)
        if stat.S_ISLNK(mode):
            raise CacheError(f"manifest path {rel!r}: {'/'.join(parts[:i + 1])} is a link (refused in an entry)")
    target = Path(base) / Path(*parts)
    if not target.resolve().is_relative_to(Path(base).resolve()):
        raise CacheError(f"manifest path {rel!r} resolves outside {base}")
    return target


# --------------------------------------------------------------------------------------------- reading


def verify(path: Path, cfg: ExperimentConfig, key: str, digest: str) -> Entry:
    """The entry at `path`, checked against the pretraining `cfg` (key, digest, config) and against its own
    manifest (its format, every path plain and inside the entry with no link, every file present with its
    sha256); CacheError names what is wrong."""
    if Path(path).is_symlink() or (Path(path) / MANIFEST).is_symlink():
        raise CacheError("the entry or its manifest is a link (refused in the cache)")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files, source = dict(manifest["files"]), dict(manifest["source"])
        differing = differing_keys(manifest["config"], json.loads(json.dumps(to_dict(cfg))))  # tuples as JSON has them
        form, parts = manifest.get("format", 1), manifest.get("parts")
        same = manifest["key"] == key and manifest["config_digest"] == digest
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CacheError(f"unreadable {MANIFEST} ({type(err).__name__}: {err})") from None
    if form != FORMAT or not isinstance(parts, dict):
        raise CacheError(f"written under an older cache key (format {form}: training files by name and size, no code "
                         f"or torch version; this version writes format {FORMAT}); not reused")
    if differing:
        raise CacheError(f"made for another config (differs in: {', '.join(differing)})")
    if not same or digest_of(manifest["config"], parts) != digest:  # other training images, code, ... or edited
        raise CacheError(f"made for another pretraining key or training data (key {manifest['key']}, digest "
                         f"{str(manifest['config_digest'])[:12]}; expected {key}, {digest[:12]})")
    if not any(rel.endswith("/generator.safetensors") for rel in files):
        raise CacheError("it holds no generator weights")
    for rel, expected in sorted(files.items()):
        file = inside(path, rel)
        if not file.is_file():
            raise CacheError(f"{rel} is missing")
        if sha256_of(file) != expected:
            raise CacheError(f"{rel} does not match its sha256 in {MANIFEST} (corrupt)")
    return Entry(path=path, key=key, digest=digest, source=source, files=files)


def lookup(cfg: ExperimentConfig, data_root: str | Path, *, root: Path | None = None,
           discard_bad: bool = True) -> Entry | None:
    """The verified entry of the pretraining `cfg`, or None. A bad entry is refused with a warning and removed
    (`discard_bad`; a dry run keeps it), so that the pretraining runs again and is stored anew. An entry of this
    pretraining made for other training images, code or torch is named and left for the runs it fits; one under
    an older key is refused as bad."""
    try:
        path, key, digest = entry_path(root or cache_root(), cfg, data_root)
    except ValueError as err:  # e.g. a training folder too small for a validation split: the run will say so
        log.warning("pretraining cache: %s not looked up (%s)", cfg.name, err)
        return None
    action = "removed; the pretraining runs again and is stored anew" if discard_bad else "it would be rebuilt"
    if not path.is_dir():
        _name_others(path, cfg, data_root, action, discard_bad)
        return None
    try:
        return verify(path, cfg, key, digest)
    except CacheError as err:
        log.warning("pretraining cache: refused %s: %s (%s)", path, err, action)
        if discard_bad:
            _remove(path)
        return None


def _name_others(path: Path, cfg: ExperimentConfig, data_root: str | Path, action: str, discard_bad: bool) -> None:
    """Say why entries of the same pretraining (name and key) are not used: made for other data or code (kept), or
    written under an older key (refused as bad)."""
    prefix = path.name[: -len(path.name.rsplit("-", 1)[-1])]
    found = path.parent.glob(f"{prefix}*") if path.parent.is_dir() else ()
    others = sorted(p for p in found if p.is_dir() and p != path)
    if not others:
        return
    now = key_parts(cfg, data_root)
    for other in others:
        try:
            manifest = json.loads((other / MANIFEST).read_text())
            form, parts = manifest.get("format", 1), manifest.get("parts")
        except (OSError, ValueError, AttributeError):
            continue  # a partial or foreign folder: not ours to judge
        if form != FORMAT or not isinstance(parts, dict):
            log.warning("pretraining cache: refused %s: written under an older cache key (format %s: training files "
                        "by name and size only); not reused (%s)", other, form, action)
            if discard_bad:
                _remove(other)
        else:
            changed = changed_parts(parts, now) or ["config"]
            log.info("pretraining cache: %s holds %s trained with other %s; not used (kept for the runs it fits)",
                     other, cfg.name, ", ".join(changed))


def materialise(entry: Entry, run_dir: Path) -> Path:
    """Copy the entry into the trial folder `run_dir` (the layout a trained pretraining leaves), check every
    copied file against the manifest, and record where it came from (`cache.json`). Every path is checked again
    (plain, inside the entry and the trial folder, no link), and a file is opened without following a link."""
    run_dir = Path(run_dir)
    tmp = run_dir.with_name(f".{run_dir.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        tmp.mkdir(parents=True)
        for rel, expected in entry.files.items():
            source, target = inside(entry.path, rel), inside(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as src, open(target, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if sha256_of(target) != expected:
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


def recorded_key(run_dir: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    """The key `record_key` recorded in a finished pretraining's folder, checked against `cfg`; CacheError when
    there is none, it is mixed, or it was recorded for another config."""
    path = Path(run_dir) / KEY_FILE
    try:
        record = json.loads(path.read_text())
        key, digest, parts = record["key"], record["config_digest"], dict(record["parts"])
        differing = differing_keys(record["config"], json.loads(json.dumps(to_dict(cfg))))
    except FileNotFoundError:
        raise CacheError(f"{run_dir}: no {KEY_FILE} (what it trained on was not recorded when it trained)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CacheError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if record.get("mixed"):
        raise CacheError(f"{run_dir}: its {record['mixed']}")
    if differing or key != pretrain_key(cfg) or digest_of(record["config"], parts) != digest:
        raise CacheError(f"{path}: recorded for another config or edited (differs in: {', '.join(differing) or 'key'})")
    return record


def store(run_dir: Path, cfg: ExperimentConfig, *, source_run: Path, root: Path | None = None) -> Entry:
    """Keep the finished pretraining in `run_dir` (trained to its last step) as the entry of `cfg`, under the key
    it recorded when it trained (`record_key`), whatever the data root holds now. Atomic: the entry is built in a
    hidden folder and renamed into place; if another run stored it first, a good existing entry is kept (ours is
    dropped), a bad one replaced."""
    run_dir = Path(run_dir)
    kept = checkpoints(run_dir)
    steps = cfg.train.total_steps
    if not kept or not kept[-1].name.endswith(f"{steps:07d}"):
        raise CacheError(f"{run_dir}: not a finished pretraining (no checkpoint of step {steps})")
    record = recorded_key(run_dir, cfg)
    key, digest = record["key"], record["config_digest"]
    path = Path(root or cache_root()) / entry_name(cfg, key, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        files = {}
        sources = [run_dir / name for name in TRIAL_FILES] + [c / name for c in kept for name in CHECKPOINT_FILES]
        for src in sources:
            if src.is_file() and not src.is_symlink():
                rel = src.relative_to(run_dir).as_posix()
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)
                files[rel] = sha256_of(tmp / rel)
        source = {"run": str(Path(source_run).resolve()), "trial": run_dir.name, "stored": time.time()}
        manifest = {"format": FORMAT, "key": key, "config_digest": digest, "config": to_dict(cfg),
                    "parts": record["parts"], "source": source, "files": files}
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
