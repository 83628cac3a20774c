"""One training run before Ray starts it: its spec, the checks that can fail early, and its folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harness.storage import resolve_train_dirs
from srgan.checkpoint import save_config
from srgan.config import ExperimentConfig, differing_keys, override, to_dict
from srgan.losses import WeightsUnavailable, ensure_vgg19_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """Everything a driver needs to start one training run, validated before Ray starts any worker."""

    cfg: ExperimentConfig
    run_dir: Path
    data_root: Path
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    sync_bn: bool = False
    max_failures: int = 1
    placement_strategy: str = "PACK"  # "SPREAD"/"STRICT_SPREAD" put workers on different nodes


def resolve_perceptual(cfg: ExperimentConfig, *, vgg_fallback: str | None) -> ExperimentConfig:
    """Check the VGG19 weights a config needs before training starts.

    Missing weights are an error unless the caller opted in explicitly (`vgg_fallback="untrained"`), in
    which case the config says so and every result carries the `untrained-perceptual-vgg19` flag."""
    if cfg.loss.perceptual_weight == 0 or cfg.loss.perceptual_weights == "untrained":
        return cfg
    try:
        ensure_vgg19_weights()
    except WeightsUnavailable:
        if vgg_fallback != "untrained":
            raise
        log.warning("VGG19 ImageNet weights unavailable: %s uses UNTRAINED perceptual features "
                    "(explicit --vgg-fallback untrained; flagged in its results)", cfg.name)
        return override(cfg, {"loss.perceptual_weights": "untrained"})
    return cfg


def validate_run(spec: RunSpec) -> RunSpec:
    """Everything about a run that can fail before anything is written: training folders and patch size,
    the validation set, and a run folder that already holds a different run (its differing keys are named)."""
    from benchmarks.datasets import load_pairs
    from srgan.checkpoint import CheckpointError, load_config
    from srgan.data import scan_training_images

    folders = resolve_train_dirs(spec.cfg, spec.data_root)  # raises FileNotFoundError naming the folder
    # headers only: fails (naming the folders and the patch size) when no image can give one patch
    scan_training_images(folders, min_size=spec.cfg.data.patch_size, decode=False)
    load_pairs(spec.cfg.data.val_set, spec.cfg.scale, spec.data_root)  # raises naming the folder or file
    if (spec.run_dir / "config.json").exists():
        try:
            before = to_dict(load_config(spec.run_dir))
        except CheckpointError as err:
            raise ValueError(f"{spec.run_dir} holds an unreadable run ({err}); choose another --name") from None
        differing = differing_keys(before, to_dict(spec.cfg))
        if differing:
            raise ValueError(f"{spec.run_dir} already holds a different run (differs in: {', '.join(differing)}); "
                             "choose another --name, or repeat that run's own settings to resume it")
    return spec


def prepare_run(spec: RunSpec) -> RunSpec:
    """`validate_run`, then write the resolved config (with DDP choices, hardware, commit, stage, and where a
    paper schedule departs from its paper) into the run folder. An existing run of the same config resumes."""
    from results.provenance import git_commit
    from srgan.versions import departures

    validate_run(spec)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(spec.cfg, spec.run_dir, ddp=ddp_notes(spec), hardware=hardware_of(spec), git_commit=git_commit(),
                workers=spec.workers, stage=spec.cfg.train.stage, init_from=spec.cfg.train.init_from or None,
                departures=departures(spec.cfg))
    return spec


def hardware_of(spec: RunSpec) -> str:
    from benchmarks.evaluate import device_hardware

    return device_hardware("cuda" if spec.gpus_per_worker > 0 else "cpu")


def ddp_notes(spec: RunSpec) -> dict[str, str]:
    return {
        "batchnorm": "SyncBatchNorm" if spec.sync_bn and spec.gpus_per_worker > 0 else "per-rank batch statistics",
        "relativistic_mean": spec.cfg.loss.relativistic_mean,
        "backend": "nccl" if spec.gpus_per_worker > 0 else "gloo",
    }
