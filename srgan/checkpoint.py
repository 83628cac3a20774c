"""Checkpoints: generator weights as safetensors + resolved config JSON; a full training state that resumes
exactly, saved with `torch.save` and loaded with `weights_only=True` (no arbitrary pickle code runs).

A checkpoint folder holds:
    config.json               the resolved ExperimentConfig (plus `flags`, e.g. an untrained VGG)
    generator.safetensors     weights of the inference generator (the EMA copy when EMA is on)
    training_state.pt         G, D, optimisers, EMA, step, RNG states (optional: export-only folders lack it)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from srgan.config import ExperimentConfig, differing_keys, from_dict, to_dict
from srgan.files import WEIGHT_SUFFIXES, CheckpointError, atomic_write, torch_load_problem
from srgan.generator import build_generator
from srgan.official import OFFICIAL_SCALE, load_official_generator, read_generator

CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
STATE_FILE = "training_state.pt"


def run_flags(cfg: ExperimentConfig) -> list[str]:
    """Flags that must travel with every result of a run (e.g. a perceptual loss on random features)."""
    flags = []
    if cfg.loss.perceptual_weight > 0 and cfg.loss.perceptual_weights == "untrained":
        flags.append("untrained-perceptual-vgg19")
    return flags


def save_config(cfg: ExperimentConfig, folder: str | Path, **extra: Any) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"config": to_dict(cfg), "flags": run_flags(cfg), **extra}
    path = folder / CONFIG_FILE
    atomic_write(path, lambda p: p.write_text(json.dumps(payload, indent=2, sort_keys=True)))
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
    atomic_write(folder / GENERATOR_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    save_config(cfg, folder, **extra)
    return folder


def load_generator(path: str | Path, *, device: str | torch.device = "cpu",
                   expect_scale: int | None = None) -> tuple[nn.Module, ExperimentConfig]:
    """Build the generator of a checkpoint folder (or its generator.safetensors) in eval mode.

    The weights are read and every key and shape checked against the config's generator (built on the meta
    device: no memory) before the network is built, so a config.json claiming a network far larger than its
    weights file is refused instead of allocated. A bare .pth/.pt file is read as published ESRGAN weights
    (official or BasicSR layout, `srgan.official`)."""
    path = Path(path)
    if path.suffix in WEIGHT_SUFFIXES and not path.is_dir():
        return load_official_generator(path, device=device, expect_scale=expect_scale)
    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise CheckpointError(f"{path}: checkpoint not found")
    cfg = load_config(folder)
    if expect_scale is not None and cfg.scale != expect_scale:
        raise CheckpointError(f"{folder}: checkpoint is for x{cfg.scale}, but x{expect_scale} was asked for")
    weights = folder / GENERATOR_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing")
    state = _read_safetensors(weights)
    _check_fit(state, cfg, weights)
    net_g = build_generator(cfg.generator, scale=cfg.scale)
    net_g.load_state_dict(state)
    return net_g.to(device).eval(), cfg


def _read_safetensors(weights: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; its format bounds every tensor by the bytes the file holds."""
    try:
        return load_file(str(weights))
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights}: not a valid safetensors file ({err})") from None


def _read_safetensors_header(weights: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's keys and shapes as meta tensors: only its header is read, and the format refuses a
    header whose tensors the file does not fully hold (a cut-off file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as fh:
            keys = list(fh.keys())  # noqa: SIM118 (a safetensors handle is not iterable)
            return {key: torch.empty(fh.get_slice(key).get_shape(), device="meta") for key in keys}
    except FileNotFoundError:
        raise CheckpointError(f"{weights}: missing") from None
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights}: not a valid safetensors file ({err})") from None


def _check_fit(state: dict[str, torch.Tensor], cfg: ExperimentConfig, weights: Path) -> None:
    """Every key and shape of `cfg`'s generator, compared with `state` without allocating the network."""
    with torch.device("meta"):
        expected = build_generator(cfg.generator, scale=cfg.scale).state_dict()
    missing, stray = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if stray:
        problems.append(f"unexpected keys {', '.join(stray[:8])}{' ...' if len(stray) > 8 else ''}")
    problems += [f"{k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}" for k in wrong[:8]]
    if problems:
        raise CheckpointError(f"{weights}: weights do not fit the config's {cfg.generator.arch} generator: "
                              + "; ".join(problems))


def save_training_state(state: dict, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    atomic_write(path, lambda p: torch.save(state, p))
    return path


def load_training_state(folder: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a training state with `weights_only=True`: a pickle that would run code is refused."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (or RuntimeError) for refused/corrupt files
        raise CheckpointError(f"{path}: refused or corrupt training state: {torch_load_problem(err)}") from None


def save_checkpoint(engine, folder: str | Path, **extra: Any) -> Path:
    """Everything needed to resume (`training_state.pt`) and to evaluate (`generator.safetensors`)."""
    folder = Path(folder)
    save_training_state(engine.state_dict(), folder)
    save_generator(engine.inference_generator(), engine.cfg, folder, step=engine.step, **extra)
    return folder


def resume(engine, folder: str | Path) -> None:
    engine.load_state_dict(load_training_state(folder, map_location=engine.device))


# ------------------------------------------------------------------------------------ init of a GAN stage


def checkpoint_step(folder: Path) -> int:
    """The step a checkpoint folder was saved at: its config.json's `step`, else the digits of its name."""
    try:
        step = json.loads((folder / CONFIG_FILE).read_text()).get("step")
        if isinstance(step, int):
            return step
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    digits = "".join(ch for ch in folder.name if ch.isdigit())
    return int(digits) if digits else -1


def resolve_init_source(source: str | Path) -> Path:
    """The generator weights file an `init_from` source names.

    - a weights file (`.safetensors` in the project's layout, `.pth`/`.pt` published ESRGAN weights): itself;
    - a checkpoint folder: its generator.safetensors (the inference generator: the EMA copy when EMA was on, the
      model that is scored);
    - a run folder (a trial of a sweep, a `harness.train` run): its LAST checkpoint (highest step), because a
      pretraining's product is its final weights; pass a checkpoint folder to start from another one."""
    path = Path(source)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: init source not found")
    if (path / GENERATOR_FILE).is_file():
        return path / GENERATOR_FILE
    checkpoints = [d for d in path.glob("checkpoint_*") if (d / GENERATOR_FILE).is_file()]
    if not checkpoints:
        raise CheckpointError(f"{path}: neither a checkpoint folder ({GENERATOR_FILE}) nor a run folder "
                              f"(checkpoint_*/{GENERATOR_FILE})")
    return max(checkpoints, key=lambda d: (checkpoint_step(d), d.name)) / GENERATOR_FILE


def _differences(a: Any, b: Any, prefix: str) -> list[str]:
    da, db = to_dict(a), to_dict(b)
    return [f"{prefix}.{k}: source {da.get(k)!r}, config {db.get(k)!r}" for k in differing_keys(da, db)]


def load_init_generator(source: str | Path, cfg: ExperimentConfig, *,
                        header_only: bool = False) -> dict[str, torch.Tensor]:
    """The generator state dict at `source` (see `resolve_init_source`), checked against `cfg`'s generator:
    the source's generator config and scale when it has a config.json, and always every key and shape.

    `header_only`: a safetensors source is checked from its header alone (the tensors returned are on the meta
    device), for a driver that checks the source before any worker loads it."""
    weights = resolve_init_source(source)
    if weights.suffix in WEIGHT_SUFFIXES:
        state, src_generator = read_generator(weights)
        diffs = _differences(src_generator, cfg.generator, "generator")
        if cfg.scale != OFFICIAL_SCALE:
            diffs.append(f"scale: source {OFFICIAL_SCALE}, config {cfg.scale}")
    elif weights.suffix == ".safetensors":
        state = _read_safetensors_header(weights) if header_only else _read_safetensors(weights)
        diffs = []
        if (weights.parent / CONFIG_FILE).is_file():
            src = load_config(weights.parent)
            diffs = _differences(src.generator, cfg.generator, "generator")
            if src.scale != cfg.scale:
                diffs.append(f"scale: source {src.scale}, config {cfg.scale}")
    else:
        raise CheckpointError(f"{weights}: not a generator weights file (.safetensors, {', '.join(WEIGHT_SUFFIXES)})")
    if diffs:
        raise CheckpointError(f"{weights}: the generator does not match the config's: {'; '.join(diffs)}")
    _check_fit(state, cfg, weights)
    return state


def init_generator(engine, source: str | Path) -> Path:
    """Load the generator at `source` into the engine's G and its EMA copy; returns the weights file used.

    Call it on a fresh engine (step 0) on every rank, before training; a resumed run restores its own G instead."""
    state = load_init_generator(source, engine.cfg)
    net_g = getattr(engine.net_g, "module", engine.net_g)  # the model inside a DDP wrapper
    net_g.load_state_dict(state)
    if engine.net_g_ema is not None:
        engine.net_g_ema.load_state_dict(state)
    return resolve_init_source(source)
