"""Checkpoint files are written atomically, and a refused pickle is explained without PyTorch's advice to load
it unsafely (issue 9.9).

A full disk is simulated by a writer that writes part of the file and then fails with ENOSPC, as a real one
does: the previous checkpoint must stay whole and loadable, and no partial file may remain."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from srgan import checkpoint
from srgan.checkpoint import (
    GENERATOR_FILE,
    STATE_FILE,
    CheckpointError,
    load_generator,
    load_training_state,
    save_generator,
    save_training_state,
)
from srgan.generator import build_generator
from srgan.versions import preset


def _state(step: int) -> dict:
    return {"step": step, "weights": torch.full((64, 64), float(step)), "rng": torch.arange(10)}


def _disk_full_after_half(real_write):
    """A writer that really writes, then keeps only the first half of the file and fails as a full disk does."""

    def write(*args, **kwargs):
        real_write(*args, **kwargs)
        target = Path(args[1])
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    return write


def test_a_full_disk_keeps_the_previous_training_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_training_state(_state(1), tmp_path)
    monkeypatch.setattr(checkpoint.torch, "save", _disk_full_after_half(torch.save))
    with pytest.raises(CheckpointError, match=rf"{STATE_FILE}: could not be written \(No space left on device\); "
                                              rf"the previous {STATE_FILE} is unchanged"):
        save_training_state(_state(2), tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # no partial temporary file left
    state = load_training_state(tmp_path)
    assert state["step"] == 1 and torch.equal(state["weights"], _state(1)["weights"])


def test_torch_saves_own_write_error_is_named_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save reports a failed write as a RuntimeError (PytorchStreamWriter ...), not an OSError."""

    def failing(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 512 vs 448")

    monkeypatch.setattr(checkpoint.torch, "save", failing)
    with pytest.raises(CheckpointError, match=rf"{STATE_FILE}: could not be written .* no {STATE_FILE} was written"):
        save_training_state(_state(1), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_keeps_the_previous_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = preset("v3-tiny", scale=2)
    torch.manual_seed(0)
    first = build_generator(cfg.generator, scale=2)
    save_generator(first, cfg, tmp_path)
    second = build_generator(cfg.generator, scale=2)  # other random weights
    monkeypatch.setattr(checkpoint, "save_file", _disk_full_after_half(checkpoint.save_file))
    with pytest.raises(CheckpointError, match=rf"{GENERATOR_FILE}: could not be written"):
        save_generator(second, cfg, tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", GENERATOR_FILE]
    loaded, _ = load_generator(tmp_path)
    for key, value in first.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_the_data_is_on_disk_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an fsync of the temporary file before `os.replace`, a power loss can leave the new name
    pointing at an empty file; the folder is flushed after the rename."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync " + Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(f"replace {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_training_state(_state(3), tmp_path)
    tmp = f".{STATE_FILE}.tmp"
    assert events == [f"fsync {tmp}", f"replace {tmp} -> {STATE_FILE}", f"fsync {tmp_path.name}"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_refused_pickle_is_explained_without_the_unsafe_advice(tmp_path: Path) -> None:
    torch.save({"step": 1, "payload": _Evil()}, tmp_path / STATE_FILE)
    with pytest.raises(CheckpointError) as err:
        load_training_state(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / STATE_FILE}: refused or corrupt training state: refused")
    assert "system" in message  # what was refused
    assert "weights_only" not in message and "trusted source" not in message  # no advice to load it unsafely
    assert "\n" not in message


def test_a_truncated_state_is_called_corrupt(tmp_path: Path) -> None:
    save_training_state(_state(1), tmp_path)
    path = tmp_path / STATE_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"refused or corrupt training state: corrupt or truncated \(") as err:
        load_training_state(tmp_path)
    assert "\n" not in str(err.value)
