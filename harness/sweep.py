"""Ray Tune sweeps of versions x loss weights whose trials are Ray Train runs; `python -m harness.sweep`.

With no arguments: a small default sweep (tiny v1, v2, v3, RaGAN and ESRGAN x two adversarial weights) on the
local embedded Ray and the data under $ENHANCE_DATA (or ../shared/data), then every trial's best checkpoint
is scored on Set5 and Set14 with the papers' protocol, and an HTML report is built. The results folder:
see `benchmarks/schema.py`.

Layers (Ray Train V2 + Tune): a Tune function trial (`run_trial`) builds and fits a `TorchTrainer`, whose
reports reach Tune through `TuneReportCallback`; ASHA stops weak trials on validation PSNR, and
`DivergenceStopper` stops diverged GANs (non-finite loss, collapsed D) and records why.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.storage import data_root, default_storage, resolve_train_dirs
from harness.train import (
    RunSpec,
    build_trainer,
    check_resources,
    init_ray,
    local_resources,
    prepare_run,
    read_history,
    replace_steps,
    resolve_perceptual,
)
from srgan.config import ConfigError, ExperimentConfig, override, parse_set_args
from srgan.losses import WeightsUnavailable
from srgan.versions import PRESETS, preset

log = logging.getLogger(__name__)

DEFAULT_PRESETS = ("v1", "v2", "v3", "ragan", "esrgan")
DEFAULT_GRID = {"loss.adv_weight": (1e-3, 5e-3)}
SWEEP_STATE = "sweep.json"
STOPS_FILE = "stops.json"
TUNE_DIR = "tune"


@dataclass(frozen=True)
class SweepSettings:
    """What every trial shares; travels to trials as a plain dict."""

    out: str
    data_root: str
    scale: int = 4
    size: str = "tiny"  # "tiny" (CPU demo) or "full"
    steps: int | None = 120  # total steps per trial (None: the preset's own)
    overrides: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    vgg_fallback: str | None = None
    seed: int = 0


def trial_config(settings: SweepSettings, params: dict[str, Any]) -> ExperimentConfig:
    """The ExperimentConfig of one trial: preset (+tiny), shared overrides, then the trial's own values."""
    name = params["preset"] + ("-tiny" if settings.size == "tiny" else "")
    cfg = preset(name, scale=settings.scale)
    if settings.steps:
        cfg = replace_steps(cfg, settings.steps)
    # every report carries a validation, so ASHA always sees its metric; checkpoints at the same steps
    cfg = replace(cfg, train=replace(cfg.train, seed=settings.seed, log_every=cfg.train.val_every,
                                     ckpt_every=cfg.train.val_every))
    cfg = override(cfg, settings.overrides)
    trial_values = {k: v for k, v in params.items() if k != "preset"}
    cfg = override(cfg, trial_values)
    return resolve_perceptual(cfg, vgg_fallback=settings.vgg_fallback)


def trial_label(params: dict[str, Any]) -> str:
    parts = [params["preset"]] + [f"{k.split('.')[-1]}={v:g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                                  for k, v in sorted(params.items()) if k != "preset"]
    return " ".join(parts)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "trial"


def run_trial(params: dict[str, Any], settings: dict[str, Any]) -> None:
    """Tune function trial: one Ray Train run of the trial's config."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    s = SweepSettings(**settings)
    trial_id = tune.get_context().get_trial_id()
    run_dir = Path(s.out) / "trials" / trial_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "starts.log").open("a") as fh:  # lets tests (and people) see restarts
        fh.write(f"{time.time():.0f}\n")
    (run_dir / "label.txt").write_text(trial_label(params))
    cfg = trial_config(s, params)  # raises WeightsUnavailable here (a failed trial) unless opted in
    spec = prepare_run(RunSpec(cfg=cfg, run_dir=run_dir, data_root=Path(s.data_root), workers=s.workers,
                               cpus_per_worker=s.cpus_per_worker, gpus_per_worker=s.gpus_per_worker))
    result = build_trainer(spec, callbacks=[TuneReportCallback()]).fit()
    if result.error:
        raise result.error


class DivergenceStopper:
    """Stop a trial whose GAN diverged: a non-finite loss (reported by the worker) or a collapsed D
    (D(real) - D(fake) above `gap` for `patience` reports: G gets no useful gradient). Reasons are kept in
    `stops.json` so the results say why."""

    def __init__(self, path: Path, *, gap: float = 0.98, patience: int = 3) -> None:
        from ray.tune import Stopper

        self.path, self.gap, self.patience = path, gap, patience
        self.reasons: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        self.streak: dict[str, int] = {}
        outer = self

        class _Stopper(Stopper):
            def __call__(self, trial_id: str, result: dict) -> bool:
                return outer.check(trial_id, result)

            def stop_all(self) -> bool:
                return False

        self.tune_stopper = _Stopper()

    def check(self, trial_id: str, result: dict) -> bool:
        reason = None
        if result.get("diverged"):
            reason = f"diverged: {result.get('diverged_reason', 'non-finite loss')}"
        elif result.get("d_real") is not None and result.get("d_fake") is not None:
            collapsed = result["d_real"] - result["d_fake"] > self.gap
            self.streak[trial_id] = self.streak.get(trial_id, 0) + 1 if collapsed else 0
            if self.streak[trial_id] >= self.patience:
                reason = (f"discriminator collapse: D(real)-D(fake) > {self.gap} for {self.patience} reports "
                          f"(step {result.get('step')})")
        if reason:
            self.reasons[trial_id] = reason
            self.path.write_text(json.dumps(self.reasons, indent=2))
        return reason is not None


def build_param_space(presets: list[str], grid: dict[str, list[Any]], *, search: str,
                      loguniform: dict[str, tuple[float, float]]) -> dict[str, Any]:
    from ray import tune

    if search == "grid":
        space: dict[str, Any] = {"preset": tune.grid_search(presets)}
        space.update({k: tune.grid_search(list(v)) for k, v in grid.items()})
    else:
        space = {"preset": tune.choice(presets)}
        space.update({k: tune.choice(list(v)) for k, v in grid.items()})
    space.update({k: tune.loguniform(lo, hi) for k, (lo, hi) in loguniform.items()})
    return space


def parse_grid(pairs: list[str] | None) -> dict[str, list[Any]]:
    """["loss.adv_weight=1e-3,5e-3"] -> {"loss.adv_weight": [0.001, 0.005]} (numbers parsed when they are)."""
    out: dict[str, list[Any]] = {}
    for key, raw in parse_set_args(pairs).items():
        values: list[Any] = []
        for item in raw.split(","):
            try:
                values.append(int(item) if re.fullmatch(r"-?\d+", item) else float(item))
            except ValueError:
                values.append(item)
        out[key] = values
    return out


def parse_ranges(pairs: list[str] | None) -> dict[str, tuple[float, float]]:
    out = {}
    for key, raw in parse_set_args(pairs).items():
        lo, sep, hi = raw.partition(":")
        if not sep:
            raise ConfigError(f"--loguniform expects key=low:high, got {key}={raw}")
        out[key] = (float(lo), float(hi))
    return out


# -------------------------------------------------------------------------------------------- scoring


def best_checkpoint(run_dir: Path, *, metric: str = "val_psnr", mode: str = "max") -> tuple[Path | None, dict | None]:
    """The kept checkpoint with the best validation `metric` (latest on ties).

    Checkpoints of the GAN phase come first when there are any: the pixel-only warmup always wins on PSNR, and
    scoring it would compare warmups instead of GANs."""
    history = {row["step"]: row for row in read_history(run_dir)}
    candidates = []
    for ckpt in sorted(run_dir.glob("checkpoint_*")):
        if not (ckpt / "generator.safetensors").exists():
            continue
        step = int(json.loads((ckpt / "config.json").read_text()).get("step", -1))
        row = history.get(step, {})
        value = row.get(metric)
        score = value if value is not None and math.isfinite(value) else -math.inf
        candidates.append((row.get("phase") == "gan", score if mode == "max" else -score, step, ckpt))
    if not candidates:
        return None, None
    _, _, step, ckpt = max(candidates, key=lambda c: c[:3])
    return ckpt, history.get(step)


def collect_results(out: Path, results, *, datasets: list[str], scale: int, data_root_: Path, stops: dict,
                    save_images: list[str], started: float, command: str, metric: str = "val_psnr",
                    mode: str = "max") -> None:
    """Score every trial's best checkpoint and the bicubic baseline; write the results folder."""
    import polars as pl

    from benchmarks import evaluate
    from benchmarks.metrics import protocol
    from results.schema import HISTORY_COLUMNS, HISTORY_FILE, IMAGES_DIR, TRIAL_COLUMNS, polars_schema
    from srgan.checkpoint import load_generator

    def score(model, trial_id: str) -> None:
        scores, summary = evaluate.score_trial(
            model, trial_id, datasets, scale, data_root=data_root_, save_images=save_images,
            images_dir=out / IMAGES_DIR, progress=False)
        score_frames.append(scores)
        summary_frames.append(summary)
        lpips_missing.update(evaluate.missing_reasons(summary))

    trial_rows: list[dict] = []
    score_frames: list[pl.DataFrame] = []
    summary_frames: list[pl.DataFrame] = []
    history_rows: list[dict] = []
    lpips_missing: dict[str, str] = {}
    score(evaluate.baseline("bicubic", scale), "bicubic")
    trial_rows.append({"trial_id": "bicubic", "label": "bicubic (MATLAB)", "preset": "bicubic",
                       "status": "baseline", "steps": 0, "flags": "[]"})
    for res in results:
        trial_id = (res.metrics or {}).get("trial_id") or _trial_id_from_path(res.path)
        run_dir = out / "trials" / trial_id
        label = (run_dir / "label.txt").read_text() if (run_dir / "label.txt").exists() else trial_id
        payload = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
        cfg = payload.get("config", {})
        loss = cfg.get("loss", {})
        history = read_history(run_dir)
        wall = _trial_wall(run_dir)
        row = {
            "trial_id": trial_id, "label": label, "preset": cfg.get("name", "?").removesuffix("-tiny"),
            "pixel_weight": loss.get("pixel_weight"), "perceptual_weight": loss.get("perceptual_weight"),
            "adv_weight": loss.get("adv_weight"), "seed": cfg.get("train", {}).get("seed"),
            "steps": history[-1]["step"] if history else 0, "wall_s": wall,
            "device_hours": wall * int(payload.get("workers", 1)) / 3600 if wall is not None else None,
            "flags": json.dumps(payload.get("flags", [])), "config_json": json.dumps(cfg) if cfg else None,
        }
        history_rows += [{"trial_id": trial_id, **{k: h.get(k) for k in HISTORY_COLUMNS if k != "trial_id"}}
                         for h in history]
        ckpt, _ = best_checkpoint(run_dir, metric=metric, mode=mode)
        if res.error is not None or ckpt is None:
            error = _short_error(res.error) if res.error is not None else "no checkpoint was written"
            trial_rows.append({**row, "status": "failed", "error": error})
            continue
        if trial_id in stops:
            row.update(status="stopped", stop_reason=stops[trial_id])
        elif history and history[-1]["step"] < _planned_steps(cfg):
            row.update(status="stopped", stop_reason="early-stopped by ASHA (validation PSNR below its rung)")
        else:
            row.update(status="ok")
        net_g, _ = load_generator(ckpt, expect_scale=scale)
        score(net_g, trial_id)
        trial_rows.append(row)
    trials = pl.DataFrame(trial_rows, schema=polars_schema(TRIAL_COLUMNS))
    pl.DataFrame(history_rows, schema=polars_schema(HISTORY_COLUMNS)).write_parquet(out / HISTORY_FILE)
    lpips_weights = None if "lpips" in lpips_missing else "pyiqa lpips (AlexNet v0.1)"
    run = evaluate.run_info(kind="sweep", scale=scale, datasets=datasets, started=started, command=command,
                            protocol=protocol(crop=scale, lpips_weights=lpips_weights))
    evaluate.write_results(out, trials=trials, scores=pl.concat(score_frames, how="diagonal_relaxed"),
                           summary=pl.concat(summary_frames, how="diagonal_relaxed"), run=run)


def _trial_id_from_path(path: str | None) -> str:
    # Tune trial folders are named "<trainable>_<trial_id>_<index>_<params>..."; our run folders use trial_id.
    name = Path(path or "").name
    match = re.search(r"_([0-9a-f]{5}_\d{5})", name)
    return match.group(1) if match else name


def _trial_wall(run_dir: Path) -> float | None:
    starts = (run_dir / "starts.log")
    rows = read_history(run_dir)
    if not starts.exists() or not rows:
        return None
    first = float(starts.read_text().split()[0])
    return max((run_dir / "history.jsonl").stat().st_mtime - first, 0.0)


def _planned_steps(cfg: dict) -> int:
    t = cfg.get("train", {})
    return int(t.get("warmup_steps", 0)) + int(t.get("gan_steps", 0))


def _short_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    tail = [line for line in text if line.strip()][-3:]
    return f"{type(err).__name__}: {' '.join(tail)}"[:500]


# ------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated presets to compare")
    p.add_argument("--size", choices=("tiny", "full"), default="tiny",
                   help="tiny: CPU-sized networks (default); full: the papers' sizes")
    p.add_argument("--steps", type=int, default=120,
                   help="total steps per trial, warmup share kept from the preset (0: the preset's own)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="values of a config field to sweep (repeatable); default loss.adv_weight=0.001,0.005")
    p.add_argument("--loguniform", action="append", metavar="KEY=LOW:HIGH",
                   help="sample a field log-uniformly (random search)")
    p.add_argument("--search", choices=("grid", "random"), default="grid")
    p.add_argument("--num-samples", type=int, default=1, help="samples (random) or repeats (grid)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a config field in every trial (repeatable)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", choices=("asha", "none"), default="asha")
    p.add_argument("--metric", default="val_psnr", help="metric for ASHA (default val_psnr)")
    p.add_argument("--mode", choices=("max", "min"), default="max")
    p.add_argument("--grace", type=int, default=0,
                   help="ASHA grace period in reports (default: the first report after the longest warmup)")
    p.add_argument("--workers-per-trial", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--max-concurrent", type=int, default=0, help="default: as many as the resources allow")
    p.add_argument("--datasets", default="set5,set14", help="benchmark sets to score the best checkpoints on")
    p.add_argument("--save-images", default="set5",
                   help="datasets (or dataset/image names) whose SR images are kept for the report's crops")
    p.add_argument("--out", default=None, help="results folder (default ./runs/sweep-<timestamp>)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue an interrupted sweep in DIR")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: local Ray")
    p.add_argument("--data-root", default=None, help="data folder (default: $ENHANCE_DATA or ../shared/data)")
    p.add_argument("--vgg-fallback", choices=("untrained",), default=None,
                   help="explicit opt-in: where VGG19 ImageNet weights are missing, train perceptual presets "
                        "with untrained features (flagged in the report) instead of failing those trials")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = "python -m harness.sweep " + " ".join(argv)
    resuming = args.resume is not None
    if resuming:
        out = Path(args.resume).resolve()
        state_path = out / SWEEP_STATE
        if not state_path.exists():
            print(f"error: {state_path} not found: not a sweep folder to resume", file=sys.stderr)
            return 2
        state = json.loads(state_path.read_text())
        args = build_parser().parse_args(state["argv"])  # the interrupted sweep's own settings
        argv = state["argv"]
    else:
        out = Path(args.out).resolve() if args.out else default_storage("") / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        settings, space_args = _validate(args, out)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if not resuming:
        (out / SWEEP_STATE).write_text(json.dumps({"argv": argv, "started": time.time()}, indent=2))
    started = json.loads((out / SWEEP_STATE).read_text())["started"]
    print(f"sweep folder: {out}", flush=True)

    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    init_ray(args.address)
    import ray
    from ray import tune

    if args.address:
        try:
            check_resources(_probe_spec(settings), ray.cluster_resources())
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    resources = ray.cluster_resources()
    per_trial_cpu = settings.workers * settings.cpus_per_worker
    per_trial_gpu = settings.workers * settings.gpus_per_worker
    fit_cpu = int(resources.get("CPU", 0) // per_trial_cpu)
    fit_gpu = int(resources.get("GPU", 0) // per_trial_gpu) if per_trial_gpu else fit_cpu
    concurrent = args.max_concurrent or max(min(fit_cpu, fit_gpu), 1)

    stopper = DivergenceStopper(out / STOPS_FILE)
    trainable = tune.with_resources(tune.with_parameters(run_trial, settings=settings.__dict__), {"CPU": 0.001})
    scheduler = None
    if args.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        max_reports, warmup_reports = _report_counts(settings, presets_of(space_args))
        # the first rung comes after the longest warmup: comparing pixel-only warmups says nothing of the GAN
        grace = args.grace if args.grace else warmup_reports + 1
        scheduler = ASHAScheduler(metric=args.metric, mode=args.mode, time_attr="training_iteration",
                                  max_t=max_reports + 1, grace_period=min(grace, max_reports))
    if resuming and tune.Tuner.can_restore(str(out / TUNE_DIR)):
        tuner = tune.Tuner.restore(str(out / TUNE_DIR), trainable=trainable, resume_errored=False,
                                   restart_errored=False, resume_unfinished=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space_args,
            tune_config=tune.TuneConfig(num_samples=args.num_samples, max_concurrent_trials=concurrent,
                                        scheduler=scheduler),
            run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(out), stop=stopper.tune_stopper,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
    results = tuner.fit()
    if _unfinished_trials(out / TUNE_DIR):
        # Ctrl-C: Tune saved its state and returned early; score nothing half-done
        print(f"sweep interrupted; continue it with: python -m harness.sweep --resume {out}", file=sys.stderr)
        return 130
    stops = json.loads((out / STOPS_FILE).read_text()) if (out / STOPS_FILE).exists() else {}
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    collect_results(out, results, datasets=datasets, scale=args.scale, data_root_=Path(settings.data_root),
                    stops=stops,
                    save_images=[x for x in args.save_images.split(',') if x], metric=args.metric, mode=args.mode,
                    started=started, command=command)
    print(f"results: {out}")
    if not args.no_report:
        try:
            from reports.build import build_report
        except ImportError:
            log.warning("reports module not available: no HTML report")
        else:
            index = build_report(out)
            print(f"report: {index}")
    return 0


def _validate(args: argparse.Namespace, out: Path) -> tuple[SweepSettings, dict[str, Any]]:
    """Everything checkable before Ray starts: presets, keys, data, resources."""
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for name in presets:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)} "
                             f"(--size tiny picks their CPU-sized variants)")
    grid = parse_grid(args.grid) if args.grid else dict(DEFAULT_GRID)
    settings = SweepSettings(out=str(out), data_root=str(data_root(args.data_root)), scale=args.scale,
                             size=args.size, steps=args.steps or None, overrides=parse_set_args(args.overrides),
                             workers=args.workers_per_trial, cpus_per_worker=args.cpus_per_worker,
                             gpus_per_worker=args.gpus_per_worker, vgg_fallback=args.vgg_fallback, seed=args.seed)
    loguniform = parse_ranges(args.loguniform)
    for name in presets:
        # build every trial config once: unknown presets/keys/values fail here, before any worker starts
        for values in _grid_points(grid):
            params = {"preset": name, **values, **{k: lo for k, (lo, _hi) in loguniform.items()}}
            try:
                cfg = trial_config(settings, params)
            except WeightsUnavailable:
                cfg = trial_config(replace(settings, vgg_fallback="untrained"), params)  # fails in-trial
            resolve_train_dirs(cfg, settings.data_root)
            if not args.address:
                check_resources(replace(_probe_spec(settings), cfg=cfg), local_resources())
    from benchmarks.datasets import load_pairs

    for name in args.datasets.split(","):
        load_pairs(name.strip(), args.scale, settings.data_root)  # raises naming the folder or file
    return settings, build_param_space(presets, grid, search=args.search, loguniform=loguniform)


def _unfinished_trials(tune_dir: Path) -> list[str]:
    """Trials Tune's saved state holds as neither finished nor failed (after Ctrl-C, fit() returns early)."""
    from ray.tune import ExperimentAnalysis

    return [t.trial_id for t in ExperimentAnalysis(str(tune_dir)).trials if t.status not in ("TERMINATED", "ERROR")]


def presets_of(space: dict[str, Any]) -> list[str]:
    domain = space["preset"]
    return list(domain["grid_search"]) if isinstance(domain, dict) else list(domain.categories)


def _report_counts(settings: SweepSettings, presets: list[str]) -> tuple[int, int]:
    """(reports per trial, reports inside the longest warmup) for the sweep's presets."""
    reports, warmups = 1, 0
    for name in presets:
        cfg = trial_config(replace(settings, vgg_fallback="untrained"), {"preset": name})
        t = cfg.train
        reports = max(reports, math.ceil((t.warmup_steps + t.gan_steps) / t.val_every))
        warmups = max(warmups, t.warmup_steps // t.val_every)
    return reports, warmups


def _grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for key, values in grid.items():
        points = [{**p, key: v} for p in points for v in values]
    return points


def _probe_spec(settings: SweepSettings) -> RunSpec:
    cfg = preset("v1-tiny", scale=settings.scale)
    return RunSpec(cfg=cfg, run_dir=Path(settings.out), data_root=Path(settings.data_root), workers=settings.workers,
                   cpus_per_worker=settings.cpus_per_worker, gpus_per_worker=settings.gpus_per_worker)


if __name__ == "__main__":
    sys.exit(main())
