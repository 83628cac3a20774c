"""Checkpoints: generator weights as safetensors + resolved config JSON; a full training state that resumes
exactly, saved with `torch.save` and loaded with `weights_only=True` (no arbitrary pickle code runs).

A checkpoint folder holds:
    config.json               the resolved ExperimentConfig (plus `flags`, e.g. an untrained VGG)
    generator.safetensors     weights of the inference generator (the EMA copy when EMA is on)
    training_state.pt         G, D, optimisers, EMA, step, RNG states (optional: export-only folders lack it)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from srgan.config import ExperimentConfig, from_dict, to_dict
from srgan.generator import build_generator

CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
STATE_FILE = "training_state.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the path and the problem."""


def run_flags(cfg: ExperimentConfig) -> list[str]:
    """Flags that must travel with every result of a run (e.g. a perceptual loss on random features)."""
    flags = []
    if cfg.loss.perceptual_weight > 0 and cfg.loss.perceptual_weights == "untrained":
        flags.append("untrained-perceptual-vgg19")
    return flags


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_config(cfg: ExperimentConfig, folder: str | Path, **extra: Any) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"config": to_dict(cfg), "flags": run_flags(cfg), **extra}
    path = folder / CONFIG_FILE
    _atomic_write(path, lambda p: p.write_text(json.dumps(payload, indent=2, sort_keys=True)))
    return path


def load_config(folder: str | Path) -> ExperimentConfig:
    path = Path(folder) / CONFIG_FILE
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (a checkpoint folder needs its {CONFIG_FILE})") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    try:
        return from_dict(ExperimentConfig, payload["config"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: not an enhance-this config ({err})") from None


def save_generator(net_g: nn.Module, cfg: ExperimentConfig, folder: str | Path, **extra: Any) -> Path:
    """Write the generator's weights (safetensors) and the config beside them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net_g.state_dict().items()}
    _atomic_write(folder / GENERATOR_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    save_config(cfg, folder, **extra)
    return folder


def load_generator(path: str | Path, *, device: str | torch.device = "cpu",
                   expect_scale: int | None = None) -> tuple[nn.Module, ExperimentConfig]:
    """Build the generator of a checkpoint folder (or its generator.safetensors) in eval mode."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise CheckpointError(f"{path}: checkpoint not found")
    cfg = load_config(folder)
    if expect_scale is not None and cfg.scale != expect_scale:
        raise CheckpointError(f"{folder}: checkpoint is for x{cfg.scale}, but x{expect_scale} was asked for")
    weights = folder / GENERATOR_FILE
    net_g = build_generator(cfg.generator, scale=cfg.scale)
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights}: not a valid safetensors file ({err})") from None
    try:
        net_g.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{weights}: weights do not fit the config's generator ({err})") from None
    return net_g.to(device).eval(), cfg


def save_training_state(state: dict, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    _atomic_write(path, lambda p: torch.save(state, p))
    return path


def load_training_state(folder: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a training state with `weights_only=True`: a pickle that would run code is refused."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (or RuntimeError) for refused/corrupt files
        raise CheckpointError(f"{path}: refused or corrupt training state ({type(err).__name__}: {err})") from None


def save_checkpoint(engine, folder: str | Path, **extra: Any) -> Path:
    """Everything needed to resume (`training_state.pt`) and to evaluate (`generator.safetensors`)."""
    folder = Path(folder)
    save_training_state(engine.state_dict(), folder)
    save_generator(engine.inference_generator(), engine.cfg, folder, step=engine.step, **extra)
    return folder


def resume(engine, folder: str | Path) -> None:
    engine.load_state_dict(load_training_state(folder, map_location=engine.device))
