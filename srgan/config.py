"""Experiment configuration: trees of frozen dataclasses, plus a dotted-override CLI helper.

Configs cross process boundaries (Ray workers, checkpoints, result folders) as plain dicts via
`asdict(cfg)` and are rebuilt with `from_dict`, which rejects unknown keys and invalid `Literal` values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class GeneratorConfig:
    arch: Literal["srresnet", "rrdbnet"] = "srresnet"
    num_features: int = 64
    num_blocks: int = 16
    norm: Literal["batch", "none"] = "batch"  # SRResNet only; RRDB never uses BatchNorm
    # v1 bounded its output with a sigmoid; later versions output a linear image (clamped at inference).
    output: Literal["linear", "sigmoid"] = "linear"
    # "bicubic" adds a bicubic upscale of the input to the output (global residual learning, as VDSR): the
    # network learns only the missing detail, which converges much faster on small compute budgets.
    skip: Literal["none", "bicubic"] = "none"
    growth: int = 32  # RRDB dense-block growth channels
    res_scale: float = 0.2  # RRDB residual scaling


@dataclass(frozen=True)
class DiscriminatorConfig:
    num_features: int = 64
    num_stages: int = 4  # each stage: conv (stride 1) + conv (stride 2); features double per stage, cap 512
    norm: Literal["batch", "none"] = "batch"
    hidden: int = 1024  # width of the dense head


@dataclass(frozen=True)
class LossConfig:
    pixel_type: Literal["l1", "mse"] = "l1"
    pixel_weight: float = 1.0
    perceptual_weight: float = 0.0  # 0 disables the VGG19 network entirely
    perceptual_layer: Literal["conv5_4", "conv5_4_relu", "conv2_2", "conv3_4", "conv4_4"] = "conv5_4"
    # "imagenet" needs torchvision's VGG19 weights in the torch hub cache; "untrained" is an explicit opt-in
    # to random features that is recorded in every result as a flag.
    perceptual_weights: Literal["imagenet", "untrained"] = "imagenet"
    adv_type: Literal["vanilla", "relativistic"] = "vanilla"
    adv_weight: float = 5e-3
    # Batch mean of D's output in the relativistic loss under DDP: "global" all-reduces it across ranks so a
    # multi-worker run computes the same loss as one process on the global batch; "local" uses each rank's.
    relativistic_mean: Literal["global", "local"] = "global"


@dataclass(frozen=True)
class OptimConfig:
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    milestones: tuple[int, ...] = ()  # steps (counted from the start of each phase) where lr is multiplied
    gamma: float = 0.5
    ema_decay: float = 0.0  # 0 disables the EMA copy of G
    # bf16 autocast + channels_last on CUDA (never on the CPU). "auto" turns it on only where it measured faster
    # (see srgan.engine.amp_enabled: a per-device batch of at least 64), "bf16" always, "off" never.
    amp: Literal["auto", "bf16", "off"] = "auto"


@dataclass(frozen=True)
class DataConfig:
    train_dirs: tuple[str, ...] = ("train/T91",)  # relative paths resolve against the data root
    # What validation (checkpoint choice, ASHA, the divergence stopper, every "best") reads; never a scored set
    # unless explicitly opted in (harness.run.validation). "holdout": `val_count` images held out of the first training
    # folder, fixed by content (srgan.holdout) and removed from training; "dirs": every image of `val_dirs`; else
    # the name of a benchmark set (benchmarks.scoring.datasets), which a sweep or study then may not also score.
    val_set: str = "holdout"
    val_dirs: tuple[str, ...] = ()  # with val_set "dirs"; relative paths resolve against the data root
    val_count: int = 10  # held-out images (at most a fifth of the folder's source images, at least one)
    # Validation scores a centre crop of at most this side of each held-out / val_dirs image (it runs several times
    # per trial on a 2-core CPU); a benchmark val_set is scored whole.
    val_crop: int = 128
    patch_size: int = 96  # HR patch side; LR patches are patch_size // scale
    batch_size: int = 16
    augment: bool = True  # random flips and 90-degree rotations
    # "matlab": LR made from HR with the MATLAB-compatible antialiased bicubic (the papers' pairs).
    # "naive": torch's bicubic without antialiasing (aliased pairs, as the first notebook made them).
    degradation: Literal["matlab", "naive"] = "matlab"
    num_workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    warmup_steps: int = 0  # pixel-loss-only steps before the GAN phase
    gan_steps: int = 1000
    seed: int = 0
    log_every: int = 50
    val_every: int = 500
    ckpt_every: int = 500
    time_limit_s: float = 0.0  # > 0: stop (validate, checkpoint) at the first step past this wall time
    # torch.compile of G, D and the perceptual network: "default" or "max-autotune" (inductor autotuning, no
    # CUDA graphs: see srgan.engine.compile_mode); "off" runs eagerly.
    compile: Literal["off", "default", "max-autotune"] = "off"
    # Two-stage training (srgan.versions.pretrain_stage / gan_stage): "single" is one run of the optional pixel
    # warmup then the GAN phase; "pretrain" is the pixel-only (PSNR-oriented) stage; "gan" starts from the
    # generator named by `init_from` (a checkpoint folder, a run folder or a bare weights file).
    stage: Literal["single", "pretrain", "gan"] = "single"
    init_from: str = ""
    # The rung of the size ladder that built this config (srgan.versions.SIZES); departures() lists how the reduced
    # sizes (tiny, cpu) depart from the papers. `schedule` below says the same of "paper" (configs kept it before the
    # ladder existed): the two always agree.
    size: Literal["tiny", "cpu", "full", "paper"] = "full"
    # Which preset schedule built this config. "paper" (the `paper` size) also adds Flickr2K to the training
    # folders where present (srgan.versions.with_present_train_dirs) and makes departures() list where the config
    # still differs from its paper (written into the run folder's config.json).
    schedule: Literal["default", "paper"] = "default"
    # The lr schedule of the pixel-only pretraining (0 lr: optim.lr_g). A single-stage run's warmup runs it from
    # step 0 and its GAN phase runs `optim`'s (srgan.engine.learning_rates); pretrain_stage() moves it into `optim`.
    pretrain_lr: float = 0.0
    pretrain_milestones: tuple[int, ...] = ()
    pretrain_gamma: float = 0.5
    # The batch and HR patch of a "pretrain" stage (0: data.batch_size / data.patch_size). A pixel-only step is
    # cheap, a GAN step with VGG19 features is not: a small compute budget pretrains on more pixels per step.
    pretrain_batch_size: int = 0
    pretrain_patch_size: int = 0

    @property
    def total_steps(self) -> int:
        """The run's generator updates: its pixel warmup plus its GAN phase (the one place the two are added)."""
        return self.warmup_steps + self.gan_steps


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "v3"
    scale: int = 4
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_values(self)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _plain_name(name: str) -> bool:
    """A name usable as one folder name: not empty, no path separator, NUL, leading '.' or '..'."""
    return bool(name) and len(name) <= 200 and not any(c in name for c in "/\\\x00") and not name.startswith(".")


def check_values(cfg: ExperimentConfig) -> None:
    """Raise `ValueError` naming the key for any value out of its range, so that a bad value fails when the
    config is built (before Ray starts) and not inside a training worker. Bounds on sizes are sanity bounds
    (a typo guard), far above every published model; learning rates have no upper bound (a divergence is a
    legitimate experiment)."""
    g, d, loss, o, data, t = cfg.generator, cfg.discriminator, cfg.loss, cfg.optim, cfg.data, cfg.train
    rules: list[tuple[str, Any, bool, str]] = [  # key, value, ok, what the value must be
        ("name", cfg.name, _plain_name(cfg.name),
         "a plain folder name (not empty, no '/', '\\' or leading '.', at most 200 characters)"),
        ("scale", cfg.scale, cfg.scale in (2, 3, 4), "2, 3 or 4"),
        ("generator.num_features", g.num_features, 1 <= g.num_features <= 1024, "between 1 and 1024"),
        ("generator.num_blocks", g.num_blocks, 1 <= g.num_blocks <= 256, "between 1 and 256"),
        ("generator.growth", g.growth, 1 <= g.growth <= 1024, "between 1 and 1024"),
        ("generator.res_scale", g.res_scale, _finite(g.res_scale) and 0 < g.res_scale <= 1, "in (0, 1]"),
        ("discriminator.num_features", d.num_features, 1 <= d.num_features <= 1024, "between 1 and 1024"),
        ("discriminator.num_stages", d.num_stages, 1 <= d.num_stages <= 8, "between 1 and 8"),
        ("discriminator.hidden", d.hidden, 1 <= d.hidden <= 65536, "between 1 and 65536"),
        ("loss.pixel_weight", loss.pixel_weight, _finite(loss.pixel_weight) and loss.pixel_weight >= 0,
         "a finite number >= 0"),
        ("loss.perceptual_weight", loss.perceptual_weight,
         _finite(loss.perceptual_weight) and loss.perceptual_weight >= 0, "a finite number >= 0"),
        ("loss.adv_weight", loss.adv_weight, _finite(loss.adv_weight) and loss.adv_weight >= 0, "a finite number >= 0"),
        ("optim.lr_g", o.lr_g, _finite(o.lr_g) and o.lr_g > 0, "a finite number > 0"),
        ("optim.lr_d", o.lr_d, _finite(o.lr_d) and o.lr_d > 0, "a finite number > 0"),
        ("optim.betas", o.betas, all(_finite(b) and 0 <= b < 1 for b in o.betas), "two numbers in [0, 1)"),
        ("optim.milestones", o.milestones, all(m >= 1 for m in o.milestones), "steps >= 1"),
        ("optim.gamma", o.gamma, _finite(o.gamma) and o.gamma > 0, "a finite number > 0"),
        ("optim.ema_decay", o.ema_decay, _finite(o.ema_decay) and 0 <= o.ema_decay < 1, "in [0, 1) (0: no EMA)"),
        ("data.train_dirs", data.train_dirs, bool(data.train_dirs) and all(data.train_dirs),
         "at least one training folder (an empty `--set data.train_dirs=` names none)"),
        ("data.val_set", data.val_set, bool(data.val_set),
         "'holdout', 'dirs' (with data.val_dirs) or a benchmark set name"),
        ("data.val_dirs", data.val_dirs, (data.val_set == "dirs") == bool(data.val_dirs) and all(data.val_dirs),
         "set exactly when data.val_set is 'dirs' (--set data.val_set=dirs --set data.val_dirs=FOLDER)"),
        ("data.val_count", data.val_count, 1 <= data.val_count <= 10_000, "between 1 and 10000"),
        ("data.val_crop", data.val_crop, 32 <= data.val_crop <= 4096, "between 32 and 4096 px"),
        ("data.patch_size", data.patch_size, data.patch_size >= cfg.scale,
         f"at least scale {cfg.scale} (one LR pixel)"),
        ("data.batch_size", data.batch_size, data.batch_size >= 1, "at least 1"),
        ("data.num_workers", data.num_workers, data.num_workers >= 0, "at least 0"),
        ("train.warmup_steps", t.warmup_steps, t.warmup_steps >= 0, "at least 0"),
        ("train.gan_steps", t.gan_steps, t.gan_steps >= 0 and t.total_steps >= 1,
         "at least 0, with at least 1 step in all (train.warmup_steps and train.gan_steps together)"),
        ("train.log_every", t.log_every, t.log_every >= 1, "at least 1"),
        ("train.val_every", t.val_every, t.val_every >= 1, "at least 1"),
        ("train.ckpt_every", t.ckpt_every, t.ckpt_every >= 1, "at least 1"),
        ("train.time_limit_s", t.time_limit_s, _finite(t.time_limit_s) and t.time_limit_s >= 0,
         "a finite number of seconds >= 0 (0: no limit)"),
        ("train.pretrain_lr", t.pretrain_lr, _finite(t.pretrain_lr) and t.pretrain_lr >= 0,
         "a finite number >= 0 (0: optim.lr_g)"),
        ("train.pretrain_milestones", t.pretrain_milestones, all(m >= 1 for m in t.pretrain_milestones),
         "steps >= 1"),
        ("train.pretrain_gamma", t.pretrain_gamma, _finite(t.pretrain_gamma) and t.pretrain_gamma > 0,
         "a finite number > 0"),
        ("train.pretrain_batch_size", t.pretrain_batch_size, t.pretrain_batch_size >= 0, "at least 0 (0: data's)"),
        ("train.pretrain_patch_size", t.pretrain_patch_size,
         t.pretrain_patch_size == 0 or (t.pretrain_patch_size >= cfg.scale and t.pretrain_patch_size % cfg.scale == 0),
         "0 (data's) or a multiple of the scale"),
    ]
    for key, value, ok, must in rules:
        if not ok:
            shown = list(value) if isinstance(value, tuple) else value
            raise ValueError(f"{key} must be {must}, got {shown!r}")
    if data.patch_size % cfg.scale:
        raise ValueError(f"data.patch_size {data.patch_size} is not a multiple of scale {cfg.scale}")


class ConfigError(ValueError):
    """A config key or value that does not fit the dataclass tree."""


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two config dicts (`to_dict`) differ, nested sections included, sorted."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b)) for k in differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check/convert a JSON-ish value to the annotated type `tp`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, _where=where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: union types are not supported in configs")
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def from_dict(cls: type, data: dict[str, Any], *, _where: str = "") -> Any:
    """Rebuild a dataclass tree from a dict; unknown keys and bad values raise `ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{_where}." if _where else ""
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}")
    kwargs = {k: _coerce(hints[k], v, f"{_where}.{k}" if _where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def override(cfg: Any, updates: dict[str, Any]) -> Any:
    """Apply dotted overrides such as {"loss.adv_weight": 1e-3}; unknown keys raise `ConfigError`."""
    tree = to_dict(cfg)
    for dotted, value in updates.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config key: {dotted}")
            node = node[part]
        if leaf not in node or isinstance(node[leaf], dict):
            raise ConfigError(f"unknown config key: {dotted}")
        if isinstance(value, str) and value[:1] in ("[", "{") and value[-1:] in ("]", "}"):  # "" is no JSON
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{dotted}: {value!r} is not a valid JSON list or mapping ({err.msg})") from None
        node[leaf] = value
    return from_dict(type(cfg), tree)


def parse_set_args(pairs: list[str] | None) -> dict[str, str]:
    """Turn ["loss.adv_weight=5e-3", ...] into a dict; a missing "=" is a `ConfigError`."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field by its dotted path, e.g. --set loss.adv_weight=1e-3 (repeatable)",
    )
