"""One training run before Ray starts it: its spec, the checks that can fail early, and its folder."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.run.storage import resolve_train_dirs
from srgan.checkpoint import save_config
from srgan.config import ExperimentConfig, differing_keys, override, to_dict
from srgan.losses import WeightsUnavailable, ensure_vgg19_weights
from srgan.versions import gan_stage, preset, pretrain_stage, sized_name, with_present_train_dirs

log = logging.getLogger(__name__)

FAILED_FILE = "FAILED"  # written by harness.train when a run failed or diverged: the reason


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


def resolve_config(version: str, *, size: str = "full", scale: int = 4, data_root: str | Path,
                   steps: int | None = None, seed: int | None = None, overrides: Mapping[str, Any] | None = None,
                   stage: str = "single", init_from: str | Path | None = None, reports_per_stage: int = 0,
                   vgg_fallback: str | None = None) -> ExperimentConfig:
    """The config a run trains, resolved in one place for `harness.train` and every sweep or study trial:

    1. the preset `version` at `size` (srgan.versions.SIZES; the paper size adds Flickr2K when present);
    2. `steps`: the total steps (pretraining + GAN), the preset's warmup share kept (None: the preset's own);
    3. `seed`, then the user's `overrides` (dotted keys, e.g. {"loss.adv_weight": "1e-3"}; a trial's own values
       come last among them);
    4. `stage`: "single" (the whole recipe in one run), "pretrain" (its pixel-loss pretraining) or "gan" (its GAN
       stage, starting from the generator at `init_from`);
    5. `reports_per_stage` > 0 sets log, validation and checkpoint cadences to that many per stage;
    6. the perceptual network's weights (`resolve_perceptual`).
    """
    cfg = with_present_train_dirs(preset(sized_name(version, size), scale=scale), data_root)
    if steps:
        t = cfg.train
        warmup = round(steps * t.warmup_steps / max(t.total_steps, 1))
        cfg = replace(cfg, train=replace(t, warmup_steps=warmup, gan_steps=steps - warmup))
    if seed is not None:
        cfg = replace(cfg, train=replace(cfg.train, seed=seed))
    cfg = override(cfg, dict(overrides or {}))
    if stage == "pretrain":
        cfg = pretrain_stage(cfg)
    elif stage == "gan":
        if not init_from:
            raise ValueError("the GAN stage needs the pretrained generator to start from (--init-from)")
        cfg = gan_stage(cfg, init_from=str(init_from))
    elif stage != "single":
        raise ValueError(f"unknown stage {stage!r}; stages: single, pretrain, gan")
    if reports_per_stage > 0:
        t = cfg.train
        every = max(t.total_steps // reports_per_stage, 1)
        cfg = replace(cfg, train=replace(t, log_every=every, val_every=every, ckpt_every=every))
    return resolve_perceptual(cfg, vgg_fallback=vgg_fallback)


_WARNED_UNTRAINED: set[str] = set()  # config names this process has warned about


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
        if cfg.name not in _WARNED_UNTRAINED:  # a run's config is resolved more than once in one process
            _WARNED_UNTRAINED.add(cfg.name)
            log.warning("VGG19 ImageNet weights unavailable: %s uses UNTRAINED perceptual features "
                        "(explicit --vgg-fallback untrained; flagged in its results)", cfg.name)
        return override(cfg, {"loss.perceptual_weights": "untrained"})
    return cfg


def validate_run(spec: RunSpec) -> RunSpec:
    """Everything about a run that can fail before anything is written: its inputs (`check_inputs`) and its run
    folder (`check_run_folder`)."""
    check_inputs(spec)
    check_run_folder(spec)
    return spec


def check_inputs(spec: RunSpec) -> None:
    """Training folders and patch size (the validation images left out), the validation images (decoded once:
    `harness.run.validation`), and a GAN stage's pretrained generator."""
    from harness.run import validation
    from srgan.data import scan_training_images
    from srgan.holdout import training_exclusions

    folders = resolve_train_dirs(spec.cfg, spec.data_root)  # raises FileNotFoundError naming the folder
    # raises naming the folder, the file or the benchmark set (and --fetch)
    validation.validation_pairs(spec.cfg, spec.data_root)
    # headers only: fails (naming the folders and the patch size) when no image can give one patch
    scan_training_images(folders, min_size=spec.cfg.data.patch_size, decode=False,
                         exclude=training_exclusions(spec.cfg, folders, spec.data_root))
    check_init_source(spec.cfg)  # a GAN stage's pretrained generator, before any worker loads it


def check_run_folder(spec: RunSpec) -> None:
    """A run folder that already holds a different run is refused, its differing keys named."""
    from srgan.checkpoint import CheckpointError, load_config

    if (spec.run_dir / "config.json").exists():
        try:
            before = to_dict(load_config(spec.run_dir))
        except CheckpointError as err:
            raise ValueError(f"{spec.run_dir} holds an unreadable run ({err}); choose another --name") from None
        differing = differing_keys(before, to_dict(spec.cfg))
        if differing and not never_trained(spec.run_dir):
            raise ValueError(f"{spec.run_dir} already holds a different run (differs in: {', '.join(differing)}); "
                             "choose another --name, or repeat that run's own settings to resume it")


def check_init_source(cfg: ExperimentConfig) -> Path | None:
    """The generator weights a GAN stage starts from (`train.init_from`), checked in the driver before Ray starts:
    the source exists (a run folder, a checkpoint folder or a weights file: `resolve_init_source`), its file reads
    (a safetensors header, which its format checks against the file's size, so a cut-off file is refused without
    reading the weights), and its generator and scale match the config's, every key and shape. Raises a
    `CheckpointError` (a ValueError) naming the file and the problem. None when the config has no init source."""
    from srgan.checkpoint import load_init_generator, resolve_init_source

    if not cfg.train.init_from:
        return None
    load_init_generator(cfg.train.init_from, cfg, header_only=True)
    return resolve_init_source(cfg.train.init_from)


def never_trained(run_dir: Path) -> bool:
    """A run folder whose run failed before its first step (no history row, no checkpoint): `--name` may reuse it
    for another config instead of being refused as "a different run"."""
    from harness.run.worker import HISTORY_JSONL

    history = run_dir / HISTORY_JSONL
    trained = history.is_file() and history.stat().st_size > 0
    return not trained and not any(run_dir.glob("checkpoint_*"))


def prepare_run(spec: RunSpec, *, inputs_checked: bool = False) -> RunSpec:
    """`validate_run` (with `inputs_checked`, its caller checked the inputs already: only the run folder again,
    now that the run holds it), then write the resolved config (with DDP choices, hardware, commit, stage, where a
    paper schedule departs from its paper, and the validation images with their sha256) into the run folder. An
    existing run of the same config resumes."""
    from harness.run import validation
    from results.provenance import git_commit
    from srgan.versions import departures

    if inputs_checked:
        check_run_folder(spec)
    else:
        validate_run(spec)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    (spec.run_dir / FAILED_FILE).unlink(missing_ok=True)  # a folder reused after a run that failed before it trained
    save_config(spec.cfg, spec.run_dir, ddp=ddp_notes(spec), hardware=hardware_of(spec), git_commit=git_commit(),
                workers=spec.workers, stage=spec.cfg.train.stage, init_from=spec.cfg.train.init_from or None,
                departures=departures(spec.cfg), validation=validation.record(spec.cfg, spec.data_root))
    return spec


def hardware_of(spec: RunSpec) -> str:
    from benchmarks.scoring.evaluate import device_hardware

    return device_hardware("cuda" if spec.gpus_per_worker > 0 else "cpu")


def ddp_notes(spec: RunSpec) -> dict[str, str]:
    return {
        "batchnorm": "SyncBatchNorm" if spec.sync_bn and spec.gpus_per_worker > 0 else "per-rank batch statistics",
        "relativistic_mean": spec.cfg.loss.relativistic_mean,
        "backend": "nccl" if spec.gpus_per_worker > 0 else "gloo",
    }


def cost_lines(stages: dict[str, list[ExperimentConfig]], *, concurrency: int, gpus: float, workers: int,
               cache_dir: Path, cpus: float = 1.0) -> str:
    """The cost estimate printed before a launch (steps, measured step time, device-hours, wall time). On a CPU
    the steps are timed on as many threads as a worker gets (`cpus`), as the workers will run them."""
    import torch

    from benchmarks.speed.cost import estimate

    device = "cuda" if gpus > 0 else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        steps = sum(c.train.total_steps for runs in stages.values() for c in runs)
        return f"cost estimate: {steps:,} steps; step time not measured (the workers' GPUs are not visible here)"
    cache_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(max(1, int(cpus)))
    try:  # one timed step per network on a CPU: a full-size GAN step there takes tens of seconds
        return estimate(stages, concurrency=concurrency, device=device, cache_dir=cache_dir,
                        devices_per_run=workers, steps=1 if device == "cpu" else 3).format()
    finally:
        torch.set_num_threads(threads)


def run_plan(spec: RunSpec, *, cache_dir: Path | None = None) -> str:
    """What `harness.train` is about to run, and its cost (step times cached in `cache_dir`, default
    $ENHANCE_STEP_TIMES, else the results root)."""
    t = spec.cfg.train
    head = (f"plan: {spec.cfg.name} x{spec.cfg.scale}, stage {t.stage}"
            + (f" from {t.init_from}" if t.init_from else "")
            + f": {t.warmup_steps} pixel-loss and {t.gan_steps} GAN steps, batch {spec.cfg.data.batch_size}, "
              f"{spec.workers} worker(s)")
    return head + "\n" + cost_lines({t.stage: [spec.cfg]}, concurrency=1, gpus=spec.gpus_per_worker,
                                    cpus=spec.cpus_per_worker, workers=spec.workers,
                                    cache_dir=cache_dir or step_times_folder(spec.run_dir.parent))


def step_times_folder(default: Path) -> Path:
    """The step-time cache of a run: `$ENHANCE_STEP_TIMES` when set (shared by every run), else `default`."""
    from benchmarks.speed.cost import cache_folder

    return cache_folder(default)
