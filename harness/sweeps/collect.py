"""After a sweep: score every trial's final weights, or its best checkpoint on validation (`Scoring.selection`),
and the bicubic baseline, and write the results folder.

What a trial was, and how it ended, comes from Tune's own records (`ExperimentAnalysis`: trial id, parameters,
status, error, `time_total_s`) and from the trial's run folder (config.json, history.jsonl, checkpoints).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from harness.run.worker import read_history
from harness.sweeps import scored
from results import io, rows, schema

if TYPE_CHECKING:
    from harness.sweeps.overhead import Timeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """One trial as Tune reported it, and where its run folder is."""

    trial_id: str
    run_dir: Path
    stage: str  # schema.STAGE_PRETRAIN or STAGE_GAN
    error: str | None = None
    wall_s: float | None = None  # Tune's time_total_s of the trial
    params: dict | None = None  # the trial's Tune parameters (None: not known)
    role: dict | None = None  # its study version, control and ladder arm (harness.sweeps.arms.trial_role), for its row


def tune_outcomes(tune_dir: Path, out: Path, *, stage: str) -> list[Outcome]:
    """The trials of one Tune experiment folder. A trial's run folder is named by its `run_name` parameter
    (pretrainings: deterministic, shared) or else by its Tune trial id, unless the trial ran in an earlier
    trial's folder (a stage run again on its folders: `harness.sweeps.recovery`)."""
    from ray.tune import ExperimentAnalysis

    from harness.sweeps.recovery import DamagedState, check_readable, folders_by_trial_id

    check_readable(tune_dir)
    try:
        trials = ExperimentAnalysis(str(tune_dir)).trials
    except (ValueError, OSError) as err:  # Tune's own reading of its state: named, not a traceback
        raise DamagedState(f"{tune_dir}: Tune's experiment state cannot be read ({err})") from None
    folders = folders_by_trial_id(out)
    outcomes = []
    for trial in trials:
        name = trial.config.get("run_name") or folders.get(trial.trial_id, trial.trial_id)
        error = trial.get_error() if trial.status == "ERROR" else None
        wall = (trial.last_result or {}).get("time_total_s")
        outcomes.append(Outcome(trial_id=name, run_dir=out / schema.TRIALS_DIR / name, stage=stage,
                                error=_short_error(error) if error is not None else None, wall_s=wall,
                                params=dict(trial.config)))
    return outcomes


def final_checkpoint(run_dir: Path) -> tuple[Path | None, dict | None]:
    """The kept checkpoint of the highest step: the trial's final weights (the inference generator, EMA where the
    recipe has it), what the papers report; for a trial stopped early, its last checkpoint."""
    from srgan.checkpoint import checkpoint_step

    history = {row["step"]: row for row in read_history(run_dir)}
    kept = [(checkpoint_step(c), c) for c in sorted(run_dir.glob("checkpoint_*"))
            if (c / "generator.safetensors").exists()]
    if not kept:
        return None, None
    step, ckpt = max(kept)
    return ckpt, history.get(step)


def select_checkpoint(run_dir: Path, selection: str, *, metric: str = "val_psnr",
                      mode: str = "max") -> tuple[Path | None, dict | None]:
    """The checkpoint `selection` scores: "final" (`final_checkpoint`) or "best-val" (`best_checkpoint`, on the
    run's held-out validation: harness.run.validation)."""
    if selection == "final":
        return final_checkpoint(run_dir)
    if selection == "best-val":
        return best_checkpoint(run_dir, metric=metric, mode=mode)
    raise ValueError(f"unknown selection {selection!r}; selections: final, best-val")


def budget(run_dir: Path, step: int, *, _depth: int = 0) -> tuple[int | None, int | None]:
    """(g_updates, images_seen) behind a run's weights at `step`: its own generator steps and HR patches (batch x
    steps) plus, for a GAN stage, those behind the weights it started from (init.json: the source checkpoint's
    step, the source run's batch), recursively. (None, None) where a part is unknown (e.g. published weights)."""
    from srgan.checkpoint import GENERATOR_FILE, checkpoint_step

    config = (io.read_json(run_dir / "config.json", required=False) or {}).get("config", {})
    batch = config.get("data", {}).get("batch_size")
    if not isinstance(batch, int) or _depth > 8:
        return None, None
    init_from = config.get("train", {}).get("init_from")
    if not init_from:
        return step, step * batch
    init = io.read_json(run_dir / "init.json", required=False) or {}
    weights = Path(init.get("weights") or "")
    if weights.name != GENERATOR_FILE or not weights.parent.name.startswith("checkpoint_"):
        return None, None  # not a checkpoint of one of our runs: its budget is unknown
    # the source run folder where init.json saw it, else beside this run (a results folder that was moved)
    sources = [weights.parent.parent, Path(init_from), run_dir.parent / Path(init_from).name]
    source = next((s for s in sources if (s / "config.json").is_file()), None)
    if source is None:
        return None, None
    g, images = budget(source, checkpoint_step(weights.parent), _depth=_depth + 1)
    if g is None or images is None:
        return None, None
    return g + step, images + step * batch


def best_checkpoint(run_dir: Path, *, metric: str = "val_psnr", mode: str = "max") -> tuple[Path | None, dict | None]:
    """The kept checkpoint with the best validation `metric` (latest on ties).

    Checkpoints of the GAN phase come first when there are any: the pixel-only warmup always wins on PSNR, and
    scoring it would compare warmups instead of GANs."""
    from srgan.checkpoint import checkpoint_step

    history = {row["step"]: row for row in read_history(run_dir)}
    candidates = []
    for ckpt in sorted(run_dir.glob("checkpoint_*")):
        if not (ckpt / "generator.safetensors").exists():
            continue
        step = checkpoint_step(ckpt)
        row = history.get(step, {})
        value = row.get(metric)
        score = value if value is not None and math.isfinite(value) else -math.inf
        candidates.append((row.get("phase") == "gan", score if mode == "max" else -score, step, ckpt))
    if not candidates:
        return None, None
    _, _, step, ckpt = max(candidates, key=lambda c: c[:3])
    return ckpt, history.get(step)


@dataclass
class Collected:
    """What the results folder is written from."""

    trials: list[dict] = field(default_factory=list)
    scores: list[pl.DataFrame] = field(default_factory=list)
    summaries: list[pl.DataFrame] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)  # trial id -> what its scores came from (`scored`)

    def merge(self, other: Collected) -> None:
        """Add what `other` collected after what this holds (rows in that order; a metric's reason updated)."""
        self.trials += other.trials
        self.scores += other.scores
        self.summaries += other.summaries
        self.history += other.history
        self.missing.update(other.missing)
        self.weights.update(other.weights)


@dataclass(frozen=True)
class Scoring:
    """How trials are scored: the benchmark sets and which SR images are kept for the report."""

    datasets: Sequence[str]
    scale: int
    data_root: Path
    images_dir: Path
    save_images: Sequence[str] = ()
    metric: str = "val_psnr"
    mode: str = "max"
    selection: str = "final"  # which weights of a trial are scored: "final" | "best-val" (`select_checkpoint`)
    cpus: float = 1.0  # of each scoring task (`score_all`), and as many torch threads
    gpus: float = 0.0

    def score(self, model, trial_id: str, into: Collected) -> None:
        from benchmarks.scoring import evaluate

        scores, summary = evaluate.score_trial(model, trial_id, self.datasets, self.scale, data_root=self.data_root,
                                               save_images=list(self.save_images), images_dir=self.images_dir,
                                               progress=False)
        into.scores.append(scores)
        into.summaries.append(summary)
        into.missing.update(evaluate.missing_reasons(summary))


def collect_trial(outcome: Outcome, scoring: Scoring, stops: dict[str, str], into: Collected, *,
                  prior: scored.Prior | None = None) -> None:
    """Score the checkpoint `scoring.selection` picks (or take the `prior` scores of the same weights) and add the
    trial's row (ok / stopped / failed, with the reason), with the budget behind the scored weights and the
    `selected-on-test` flag where it applies."""
    from srgan.checkpoint import checkpoint_step, load_generator

    run_dir = outcome.run_dir
    payload = io.read_json(run_dir / "config.json", required=False) or {}
    config = payload.get("config", {})
    history = read_history(run_dir)
    label = (run_dir / "label.txt").read_text() if (run_dir / "label.txt").exists() else outcome.trial_id
    label = _seed_block_label(label, outcome, config)
    init_from = config.get("train", {}).get("init_from") or None
    row = dict(trial_id=outcome.trial_id, label=label, config=config,
               flags=list(payload.get("flags", [])) + _selection_flags(config, scoring),
               steps=history[-1]["step"] if history else 0, wall_s=outcome.wall_s or _history_wall(history),
               devices=int(payload.get("workers", 1)), stage=outcome.stage,
               init_from=Path(init_from).name if init_from else None, **(outcome.role or {}))
    into.history += [{"trial_id": outcome.trial_id, **{k: h.get(k) for k in schema.HISTORY_COLUMNS
                                                       if k != "trial_id"}} for h in history]
    ckpt, _ = select_checkpoint(run_dir, scoring.selection, metric=scoring.metric, mode=scoring.mode)
    if outcome.error is not None or ckpt is None:
        error = outcome.error or _diverged(history) or "no checkpoint was written"
        into.trials.append(rows.trial_row(**row, status=schema.STATUS_FAILED, error=error))
        return
    status, reason = schema.STATUS_OK, None
    if outcome.trial_id in stops:
        status, reason = schema.STATUS_STOPPED, stops[outcome.trial_id]
    elif history and history[-1]["step"] < _planned_steps(config):
        status, reason = schema.STATUS_STOPPED, "early-stopped by ASHA (validation PSNR below its rung)"
    g_updates, images_seen = budget(run_dir, checkpoint_step(ckpt))
    row.update(g_updates=g_updates, images_seen=images_seen, selection=scoring.selection)
    into.weights[outcome.trial_id] = scored.weights_digest(ckpt)
    if prior is not None and prior.weights == into.weights[outcome.trial_id]:
        scored.take(prior, into)
    else:
        net_g, _ = load_generator(ckpt, expect_scale=scoring.scale)
        try:
            scoring.score(net_g, outcome.trial_id, into)
        except ValueError as err:  # e.g. a model whose output is not finite: the trial failed, the sweep goes on
            into.trials.append(rows.trial_row(**row, status=schema.STATUS_FAILED, error=str(err)))
            return
    into.trials.append(rows.trial_row(**row, status=status, stop_reason=reason))


def collect_results(out: Path, outcomes: Sequence[Outcome], scoring: Scoring, *, started: float, command: str,
                    kind: str = "sweep", extra: dict | None = None, timeline: Timeline | None = None) -> list[dict]:
    """Score the bicubic baseline and every trial (in parallel where Ray runs: `score_all`); write trials, scores,
    summary, history and run.json. With the sweep's `timeline`, run.json also keeps its overhead (`overhead`:
    the share of its time spent neither in training steps nor in scoring, `harness.sweeps.overhead`). A model scored
    before from the same weights, the same way, keeps its scores (`harness.sweeps.scored`). Returns the trial rows."""
    from benchmarks.scoring import evaluate
    from benchmarks.scoring.metrics import protocol
    from harness.sweeps import overhead

    io.check_writable(out)
    stops = io.read_json(out / schema.STOPS_FILE, required=False) or {}
    jobs = [None, *outcomes]
    kept = scored.kept(out, scoring, jobs, lambda job: None if job.error else select_checkpoint(
        job.run_dir, scoring.selection, metric=scoring.metric, mode=scoring.mode)[0])
    with timeline.phase("scoring") if timeline is not None else contextlib.nullcontext():
        taken = {i: score_job(jobs[i], scoring, stops, prior=prior) for i, prior in kept.items()}
        fresh, scorers = score_all([job for i, job in enumerate(jobs) if i not in kept], scoring, stops)
    fresh = iter(fresh)
    parts = [taken[i] if i in taken else next(fresh) for i in range(len(jobs))]
    collected = Collected()
    for part, _seconds in parts:
        collected.merge(part)
    extra = dict(extra or {}, **{scored.RUN_KEY: scored.record(scoring, collected.weights)})
    if timeline is not None:
        timeline.scorers = scorers
        train_s = sum(overhead.trial_step_seconds(o.run_dir, since=timeline.started) for o in outcomes)
        extra["overhead"] = timeline.record = overhead.account(timeline, train_s=train_s,
                                                               scoring_s=sum(s for _, s in parts))
    lpips_weights = None if "lpips" in collected.missing else "pyiqa lpips (AlexNet v0.1)"
    run = evaluate.run_info(kind=kind, scale=scoring.scale, datasets=list(scoring.datasets), started=started,
                            command=command, protocol=protocol(crop=scoring.scale, lpips_weights=lpips_weights,
                                                              data_root=scoring.data_root),
                            metrics_missing=collected.missing, **extra)
    history = pl.DataFrame(collected.history, schema=schema.polars_schema(schema.HISTORY_COLUMNS))
    io.write_results(out, trials=rows.trials_frame(collected.trials), history=history, run=run,
                     scores=pl.concat(collected.scores, how="diagonal_relaxed"),
                     summary=pl.concat(collected.summaries, how="diagonal_relaxed"))
    return collected.trials


def score_job(outcome: Outcome | None, scoring: Scoring, stops: dict[str, str], *,
              threads: int | None = None, prior: scored.Prior | None = None) -> tuple[Collected, float]:
    """Score one trial (`collect_trial`), or the bicubic baseline (`outcome` None), into its own `Collected` (or
    take its `prior` scores, of the same weights); returns it with the seconds it took."""
    import torch

    from benchmarks.scoring import evaluate

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    part = Collected()
    if outcome is None:
        if prior is not None and prior.weights == scored.BASELINE:
            scored.take(prior, part)
        else:
            scoring.score(evaluate.baseline("bicubic", scoring.scale), "bicubic", part)
        part.weights["bicubic"] = scored.BASELINE
        part.trials.append(rows.trial_row("bicubic", label="bicubic (MATLAB)", preset="bicubic",
                                          status=schema.STATUS_BASELINE, steps=0))
    else:
        collect_trial(outcome, scoring, stops, part, prior=prior)
    return part, time.perf_counter() - started


def score_all(jobs: Sequence[Outcome | None], scoring: Scoring, stops: dict[str, str]
              ) -> tuple[list[tuple[Collected, float]], int]:
    """`score_job` of every job, in the jobs' order, and how many ran at once. With Ray up they are Ray tasks of
    `scoring.cpus` CPUs (and `scoring.gpus` GPUs) each, as many at once as the cluster holds, in processes that
    read the benchmark images once (`_warm_up`); the first job (the baseline) runs first in this process while
    those processes start: it writes the HR images that every trial's scoring would otherwise race to write. CPU
    jobs go on in this process until they have started. A job that raises raises here, as it would have in this
    process."""
    import ray

    from harness.cluster.progress import Progress

    progress = Progress("scoring", len(jobs), unit="models")
    if not ray.is_initialized() or len(jobs) < 3:
        parts = []
        for job in jobs:
            parts.append(score_job(job, scoring, stops))
            progress.done += 1
            progress.maybe(force=progress.done == len(jobs))
        return parts, 1
    have = ray.cluster_resources()
    at_once = int(have.get("CPU", 1) // scoring.cpus) if scoring.cpus > 0 else len(jobs)
    if scoring.gpus > 0:
        at_once = min(at_once, int(have.get("GPU", 0) // scoring.gpus))
    at_once = max(min(at_once, len(jobs) - 1), 1)
    # max_calls=0: a scoring process is reused (Ray's default for a GPU task is a new process per call)
    options = {"num_cpus": scoring.cpus, "num_gpus": scoring.gpus, "max_calls": 0}
    task = ray.remote(**options)(score_job)
    threads = max(int(scoring.cpus), 1)
    try:
        # the scoring processes start (imports, the benchmark images: seconds each) while this process scores the
        # first job, then, on the CPU, more jobs until they are ready (one thread, as they score: the same numbers;
        # GPU jobs stay on the GPUs Ray gives them)
        warming = [ray.remote(**options)(_warm_up).remote(scoring) for _ in range(at_once)]
        here = [score_job(jobs[0], scoring, stops)]
        while (scoring.gpus == 0 and len(here) < len(jobs) - at_once
               and ray.wait(warming, num_returns=len(warming), timeout=0)[1]):
            here.append(_score_here(jobs[len(here)], scoring, stops, threads=threads))
            progress.done = len(here)
            progress.maybe(f"{at_once} scoring processes starting")
        progress.done = len(here)
        ray.get(warming)
        refs = [task.remote(job, scoring, stops, threads=threads) for job in jobs[len(here):]]
        pending = list(refs)
        while pending:
            _ready, pending = ray.wait(pending, num_returns=1)
            progress.done = len(jobs) - len(pending)
            progress.maybe(f"{at_once} at once", force=not pending)
        return [*here, *ray.get(refs)], at_once
    except ray.exceptions.RayTaskError as err:
        raise err.as_instanceof_cause() from None


def _score_here(job: Outcome | None, scoring: Scoring, stops: dict[str, str], *,
                threads: int) -> tuple[Collected, float]:
    """`score_job` in this process on `threads` torch threads, this process's setting restored after."""
    import torch

    before = torch.get_num_threads()
    try:
        return score_job(job, scoring, stops, threads=threads)
    finally:
        torch.set_num_threads(before)


def _warm_up(scoring: Scoring | None = None) -> None:
    """A scoring process's imports and, with `scoring`, what its jobs read once per process (the benchmark images,
    pyiqa's NIQE code: `benchmarks.scoring.evaluate.warm_up`), done before its first job."""
    import srgan.checkpoint  # noqa: F401
    from benchmarks.scoring import evaluate

    if scoring is not None:
        evaluate.warm_up(scoring.datasets, scoring.scale, data_root=scoring.data_root)


def _selection_flags(config: dict, scoring: Scoring) -> list[str]:
    """["selected-on-test"] when the trial validated on a set it is scored on (possible only with the explicit
    opt-in; `harness.run.validation.scored_overlap`)."""
    from harness.run import validation
    from srgan.config import ExperimentConfig, from_dict

    if not config:
        return []
    try:
        reasons = validation.scored_overlap(from_dict(ExperimentConfig, config), scoring.datasets, scoring.data_root)
    except (ValueError, OSError) as err:  # a config or training folder no longer readable: said, not guessed
        log.warning("could not check whether a trial validated on a scored set: %s", err)
        return []
    return [validation.SELECTED_ON_TEST] if reasons else []


def _seed_block_label(label: str, outcome: Outcome, config: dict) -> str:
    """A further seed block's trial (harness.sweeps.arms: Tune's seed s trains seed s + N) is labelled by its
    version and the seed it trained ("v2@adv_weight=10 seed=3"), as its row's seed says, not by Tune's seed."""
    tune_seed, seed = (outcome.params or {}).get("train.seed"), config.get("train", {}).get("seed")
    version = (outcome.role or {}).get("version")
    if version and isinstance(tune_seed, int) and isinstance(seed, int) and seed != tune_seed:
        return f"{version} seed={seed}"
    return label


def _history_wall(history: list[dict]) -> float | None:
    times = [h["time"] for h in history if h.get("time") is not None]
    return times[-1] - history[0].get("started", times[0]) if times else None


def _diverged(history: list[dict]) -> str | None:
    return next((f"diverged: {h['diverged_reason']}" for h in history if h.get("diverged_reason")), None)


def _planned_steps(cfg: dict) -> int:
    from srgan.config import TrainConfig, from_dict

    return from_dict(TrainConfig, cfg.get("train", {}), _where="train").total_steps


def _short_error(err: BaseException | str) -> str:
    text = str(err).strip().splitlines()
    tail = [line for line in text if line.strip()][-3:]
    kind = type(err).__name__ if isinstance(err, BaseException) else "error"
    return f"{kind}: {' '.join(tail)}"[:500]
