"""Cost before compute: how many steps a plan trains, how long a step takes here, what it all costs.

    rate = measure_step_rate(cfg, device="cuda")              # steps/s of cfg's network, a few timed steps
    est = estimate({"pretrain": [pre], "gan": [gan_a, gan_b]}, concurrency=2, device="cuda", cache_dir=out)
    print(est.format())

A step's time depends on the network and the batch, not on the loss weights: it is measured once per network
signature (generator, discriminator, perceptual network, adversarial loss type, patch, batch, EMA, AMP,
compile, phase, device) with random tensors, and cached in `<cache_dir>/step_times.json` (`cache_folder`:
$ENHANCE_STEP_TIMES, where set, names one cache for every run). A pixel-only step
(warmup / pretraining) and a GAN step are measured separately. Stages run one after another (a sweep trains
its pretrainings before the GAN trials); the runs of a stage start in order on `concurrency` slots, each run
on its own device(s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import torch

from srgan.config import ExperimentConfig

log = logging.getLogger(__name__)

CACHE_FILE = "step_times.json"
CACHE_VERSION = 1
CACHE_ENV = "ENHANCE_STEP_TIMES"  # a folder for step_times.json shared by every run (else each run's own folder)
Phase = Literal["warmup", "gan"]


# ------------------------------------------------------------------------------------------- measuring


def device_label(device: str | torch.device) -> str:
    """The hardware a step time belongs to: the GPU's name, or the CPU and its torch thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine() or "cpu"
    return f"{device.type} ({cpu}, {torch.get_num_threads()} threads)"


def main_phase(cfg: ExperimentConfig) -> Phase:
    """The phase most of a run's steps are in: "gan" when it has GAN steps, else "warmup" (a pretraining)."""
    return "gan" if cfg.train.gan_steps > 0 else "warmup"


def _timing_config(cfg: ExperimentConfig, phase: Phase, steps: int) -> ExperimentConfig:
    """`cfg` reduced to `steps` steps of one phase. The perceptual network runs on untrained features: the
    same computation, and no ImageNet weights are needed to time it."""
    t = cfg.train
    train = replace(t, warmup_steps=steps if phase == "warmup" else 0, gan_steps=0 if phase == "warmup" else steps,
                    stage="single", init_from="", time_limit_s=0.0)
    loss = replace(cfg.loss, perceptual_weights="untrained") if cfg.loss.perceptual_weight > 0 else cfg.loss
    return replace(cfg, train=train, loss=loss)


def measure_step_rate(cfg: ExperimentConfig, *, device: str | torch.device, steps: int = 3,
                      phase: Phase | None = None) -> float:
    """Training steps per second of `cfg`'s network on `device`: one untimed step (allocation, kernel choice,
    compilation), then `steps` timed steps on random batches of the config's size. `phase` defaults to
    `main_phase(cfg)`. The device is synchronised only around the timed block."""
    from srgan.engine import GanEngine, NonFiniteLoss  # here, so that importing this module stays light

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    phase = phase or main_phase(cfg)
    device = torch.device(device)
    timing = _timing_config(cfg, phase, steps + 1)
    b, p, s = timing.data.batch_size, timing.data.patch_size, timing.scale
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        engine = GanEngine(timing, device=device)
        gen = torch.Generator().manual_seed(0)
        gt = torch.rand(b, 3, p, p, generator=gen)
        lq = torch.rand(b, 3, p // s, p // s, generator=gen)
        engine.train_step(lq, gt, grad_norms=False)  # untimed: allocation, cuDNN/compile choices
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            engine.train_step(lq, gt, grad_norms=False)
        _sync(device)
        elapsed = time.perf_counter() - start
        try:
            engine.pop_metrics()
        except NonFiniteLoss as err:  # a step's time does not depend on its values (an lr of 1e6 diverges)
            log.info("timing steps of %s went non-finite (%s); the time still counts", cfg.name, err)
    return steps / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def signature(cfg: ExperimentConfig, phase: Phase, device: str | torch.device) -> dict:
    """What a step's time depends on (and nothing else: not the loss weights, lr or seed)."""
    gan = phase == "gan"
    loss = cfg.loss
    return {
        "phase": phase,
        "scale": cfg.scale,
        "generator": asdict(cfg.generator),
        "discriminator": asdict(cfg.discriminator) if gan else None,
        "perceptual": loss.perceptual_layer if gan and loss.perceptual_weight > 0 else None,
        "adv_type": loss.adv_type if gan else None,
        "patch_size": cfg.data.patch_size,
        "batch_size": cfg.data.batch_size,
        "ema": cfg.optim.ema_decay > 0,
        "amp": cfg.optim.amp,
        "compile": getattr(cfg.train, "compile", "off"),
        "device": device_label(device),
        "torch": torch.__version__,
    }


def signature_key(sig: dict) -> str:
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:16]


def signature_label(sig: dict) -> str:
    g = sig["generator"]
    what = "pixel-only step" if sig["phase"] == "warmup" else f"GAN step ({sig['adv_type']}" + (
        f", VGG19 {sig['perceptual']})" if sig["perceptual"] else ")")
    return (f"{g['arch']} ({g['num_blocks']} blocks of {g['num_features']} features) x{sig['scale']}, batch "
            f"{sig['batch_size']} x {sig['patch_size']} px, {what}")


def _read_cache(path: Path) -> dict:
    """The cache's entries by signature key; an unreadable file, another version or another shape is logged
    (naming the file) and read as empty, so everything is measured again. Entries are checked one by one where
    they are used (`_cached_seconds`)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable step-time cache (%s); measuring again", path, err)
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        log.warning("%s: not a step-time cache (expected an object with an \"entries\" object); measuring again",
                    path)
        return {}
    if data.get("version") != CACHE_VERSION:
        log.warning("%s: cache of another version (%r, not %d); measuring again", path, data.get("version"),
                    CACHE_VERSION)
        return {}
    return data["entries"]


def cache_folder(default: str | Path) -> Path:
    """Where step times are cached: `$ENHANCE_STEP_TIMES` when it is set (one cache shared by every run on this
    machine, so no run times its networks again), else `default` (the run's results folder)."""
    shared = os.environ.get(CACHE_ENV, "").strip()
    return Path(shared) if shared else Path(default)


# A step slower than this is not a plausible measurement but a corrupted or hand-edited cache entry.
MAX_SECONDS_PER_STEP = 86_400.0


def _cached_seconds(entries: dict, key: str, sig: dict, path: Path) -> float | None:
    """The seconds per step cached under `key`, or None when there is none or it is unusable: not an object, no
    `seconds_per_step`, a value that is not a finite number in (0, MAX_SECONDS_PER_STEP] (a negative or NaN time
    would print a negative or "nan" cost), or a signature other than the key's. An unusable entry is logged
    with the file and the key, then measured again and replaced."""
    if key not in entries:
        return None
    entry = entries[key]
    value = entry.get("seconds_per_step") if isinstance(entry, dict) else None
    problem = None
    if not isinstance(entry, dict):
        problem = f"is a {type(entry).__name__}, not an object"
    elif "seconds_per_step" not in entry:
        problem = "has no seconds_per_step"
    elif isinstance(value, bool) or not isinstance(value, int | float):
        problem = f"has seconds_per_step {value!r}, not a number"
    elif not (math.isfinite(value) and 0 < value <= MAX_SECONDS_PER_STEP):
        problem = f"has seconds_per_step {value!r}, not a finite time in (0, {MAX_SECONDS_PER_STEP:g}] s"
    elif "signature" in entry and entry["signature"] != json.loads(json.dumps(sig)):  # as JSON stores it
        problem = "holds the signature of another network"
    if problem is not None:
        log.warning("%s: step-time entry %s %s; ignored and measured again", path, key, problem)
        return None
    return float(value)


def _write_cache(path: Path, entries: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=2, sort_keys=True))
    os.replace(tmp, path)


def step_seconds(cfg: ExperimentConfig, *, phase: Phase, device: str | torch.device, cache_dir: str | Path,
                 steps: int = 3) -> tuple[float, bool]:
    """(seconds per step of `cfg`'s network in `phase`, whether it came from the cache). Measures and caches
    on a miss."""
    path = Path(cache_dir) / CACHE_FILE
    sig = signature(cfg, phase, device)
    key = signature_key(sig)
    cached = _cached_seconds(_read_cache(path), key, sig, path)
    if cached is not None:
        return cached, True
    log.info("measuring %s on %s (%d steps)", signature_label(sig), sig["device"], steps)
    seconds = 1.0 / measure_step_rate(cfg, device=device, steps=steps, phase=phase)
    entries = _read_cache(path)  # re-read: another process may have added entries meanwhile
    entries[key] = {"seconds_per_step": seconds, "signature": sig, "steps_timed": steps,
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    _write_cache(path, entries)
    return seconds, False


# ------------------------------------------------------------------------------------------- estimating


@dataclass(frozen=True)
class StepTime:
    label: str  # the network signature in words
    seconds_per_step: float
    cached: bool  # read from the cache rather than measured now


@dataclass(frozen=True)
class StageCost:
    name: str
    runs: int
    steps: int  # over all its runs
    device_seconds: float  # sum over runs of steps x seconds per step (measured on one device)
    wall_seconds: float  # makespan of its runs on the planned concurrency


@dataclass(frozen=True)
class Estimate:
    device: str
    concurrency: int
    devices_per_run: int
    stages: tuple[StageCost, ...]
    step_times: tuple[StepTime, ...]

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def device_hours(self) -> float:
        return sum(s.device_seconds for s in self.stages) / 3600

    @property
    def wall_seconds(self) -> float:
        return sum(s.wall_seconds for s in self.stages)

    def format(self) -> str:
        """The lines a CLI prints before (or instead of, with --dry-run) a launch."""
        per_run = f", {self.devices_per_run} devices each (ideal DDP scaling)" if self.devices_per_run > 1 else ""
        lines = [f"cost estimate on {self.device}, {self.concurrency} run(s) at a time{per_run}:"]
        for s in self.stages:
            lines.append(f"  {s.name}: {s.runs} run(s), {s.steps:,} steps, {s.device_seconds / 3600:.3g} "
                         f"device-hours, wall {_duration(s.wall_seconds)}")
        lines.append(f"  total: {self.total_steps:,} steps, {self.device_hours:.3g} device-hours, wall "
                     f"{_duration(self.wall_seconds)}")
        for t in self.step_times:
            lines.append(f"  {t.seconds_per_step:.4g} s/step: {t.label} ({'cached' if t.cached else 'measured'})")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def makespan(durations: Sequence[float], slots: int) -> float:
    """Wall time of runs started in order, each on the first free of `slots` slots."""
    free = [0.0] * max(slots, 1)
    for d in durations:
        i = min(range(len(free)), key=free.__getitem__)
        free[i] += d
    return max(free) if durations else 0.0


def estimate(stages: Mapping[str, Sequence[ExperimentConfig]], *, concurrency: int, device: str | torch.device,
             cache_dir: str | Path, devices_per_run: int = 1, steps: int = 3) -> Estimate:
    """Steps, device-hours and wall time of a plan: `stages` maps a stage name to the configs of its runs, in
    the order the stages run (e.g. {"pretrain": [...], "gan": [...]}). A run's time is its warmup steps times
    the pixel-only step time plus its GAN steps times the GAN step time, each measured on `device` once per
    network signature (cached in `cache_dir`). With `devices_per_run` > 1 a run's wall time is divided by it
    (ideal DDP scaling) and its device time is not."""
    if concurrency < 1 or devices_per_run < 1:
        raise ValueError(f"concurrency and devices_per_run must be >= 1, got {concurrency}, {devices_per_run}")
    times: dict[str, StepTime] = {}

    def seconds(cfg: ExperimentConfig, phase: Phase) -> float:
        sig = signature(cfg, phase, device)
        key = signature_key(sig)
        if key not in times:
            value, cached = step_seconds(cfg, phase=phase, device=device, cache_dir=cache_dir, steps=steps)
            times[key] = StepTime(signature_label(sig), value, cached)
        return times[key].seconds_per_step

    costs = []
    for name, runs in stages.items():
        run_seconds, total_steps = [], 0
        for cfg in runs:
            t = cfg.train
            s = (t.warmup_steps * seconds(cfg, "warmup") if t.warmup_steps else 0.0) + (
                t.gan_steps * seconds(cfg, "gan") if t.gan_steps else 0.0)
            run_seconds.append(s)
            total_steps += t.total_steps
        device_s = math.fsum(run_seconds)  # W devices for t / W each
        wall = makespan([s / devices_per_run for s in run_seconds], concurrency)
        costs.append(StageCost(name, len(runs), total_steps, device_s, wall))
    return Estimate(device=device_label(device), concurrency=concurrency, devices_per_run=devices_per_run,
                    stages=tuple(costs), step_times=tuple(times.values()))
