"""The pretraining cache (`harness.sweeps.cache`): a sweep with the same pretraining as the session's tiny study
(which stored it) starts no pretraining trial and its GAN trial starts from identical weights; a corrupted entry is
refused and rebuilt, never used; another config misses; two runs storing one pretraining at
once leave one good entry; the overhead each run records."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import pytest
import torch
from real_runs import Ran, run_main

from benchmarks.scoring.datasets import data_root as default_data_root
from harness.run.runs import resolve_config
from harness.sweeps import cache
from results import schema
from srgan.config import ExperimentConfig, from_dict


def pretraining(data_root: Path, **train):
    cfg = resolve_config("v2", size="tiny", data_root=data_root, steps=4, stage="pretrain")
    return replace(cfg, train=replace(cfg.train, **train)) if train else cfg


def finished_pretraining(cfg, run_dir: Path, *, seed: int = 0, data_root: Path | None = None) -> Path:
    """A trial folder as a finished pretraining leaves it (random weights; no training needed here), with the
    cache key it recorded when it started (over `data_root`, default the session's)."""
    from srgan.checkpoint import save_config, save_generator
    from srgan.generator import build_generator

    torch.manual_seed(seed)
    net = build_generator(cfg.generator, scale=cfg.scale)
    save_config(cfg, run_dir)
    steps = cfg.train.total_steps
    for step in (steps // 2, steps):
        save_generator(net, cfg, run_dir / f"checkpoint_{step:07d}", step=step)
    rows = [{"step": s, "phase": "warmup", "time": time.time(), "images_per_s": 10.0} for s in (steps // 2, steps)]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "label.txt").write_text(cfg.name)
    cache.record_key(run_dir, cfg, data_root or default_data_root())
    return run_dir


# ------------------------------------------------------------------------------------------- the entries


def test_an_entry_is_found_by_its_config_and_a_different_config_misses(data_root: Path, tmp_path: Path) -> None:
    cfg = pretraining(data_root)
    run = finished_pretraining(cfg, tmp_path / "run" / "srresnet-pretrain")
    stored = cache.store(run, cfg, source_run=tmp_path / "run", root=tmp_path / "cache")
    found = cache.lookup(cfg, data_root, root=tmp_path / "cache")
    assert found is not None and found.path == stored.path and found.source["run"] == str(tmp_path / "run")
    assert {"config.json", "history.jsonl", "checkpoint_0000002/generator.safetensors"} <= set(found.files)
    assert not any(rel.endswith("training_state.pt") for rel in found.files)
    for other in (pretraining(data_root, seed=1), pretraining(data_root, warmup_steps=5),
                  replace(cfg, optim=replace(cfg.optim, lr_g=cfg.optim.lr_g / 2))):
        assert cache.lookup(other, data_root, root=tmp_path / "cache") is None
    # the same config over other training images (another data root holding the same folder names) misses too
    other_root = tmp_path / "data"
    for folder in cfg.data.train_dirs:
        (other_root / folder).mkdir(parents=True)
        first = next(p for p in (data_root / folder).iterdir() if p.is_file())
        (other_root / folder / first.name).write_bytes(first.read_bytes())
    assert cache.lookup(cfg, other_root, root=tmp_path / "cache") is None
    assert cache.lookup(cfg, data_root, root=tmp_path / "cache") is not None  # still there


@pytest.mark.parametrize("damage", ["weights", "manifest-config", "missing-file", "manifest-json"])
def test_a_bad_entry_is_refused_with_the_reason_and_removed(data_root: Path, tmp_path: Path, caplog,
                                                            damage: str) -> None:
    cfg = pretraining(data_root)
    run = finished_pretraining(cfg, tmp_path / "run" / "srresnet-pretrain")
    entry = cache.store(run, cfg, source_run=tmp_path / "run", root=tmp_path / "cache")
    weights = entry.path / "checkpoint_0000002" / "generator.safetensors"
    manifest = entry.path / cache.MANIFEST
    if damage == "weights":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF  # one flipped byte in the tensors
        weights.write_bytes(bytes(data))
        reason = "does not match its sha256"
    elif damage == "manifest-config":
        record = json.loads(manifest.read_text())
        record["config"]["optim"]["lr_g"] = 1.0
        manifest.write_text(json.dumps(record))
        reason = "differs in: optim.lr_g"
    elif damage == "missing-file":
        weights.unlink()
        reason = "is missing"
    else:
        manifest.write_text("{half a manifest")
        reason = "unreadable manifest.json"
    with caplog.at_level("WARNING"):
        assert cache.lookup(cfg, data_root, root=tmp_path / "cache", discard_bad=False) is None  # a dry run
    assert entry.path.is_dir() and reason in caplog.text and str(entry.path) in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cache.lookup(cfg, data_root, root=tmp_path / "cache") is None
    assert reason in caplog.text and "runs again" in caplog.text
    assert not entry.path.exists() and not list((tmp_path / "cache").iterdir())  # removed, no trash left


def test_materialise_copies_what_scoring_and_the_gan_stage_read(data_root: Path, tmp_path: Path) -> None:
    from srgan.checkpoint import resolve_init_source

    cfg = pretraining(data_root)
    run = finished_pretraining(cfg, tmp_path / "first" / "srresnet-pretrain")
    entry = cache.store(run, cfg, source_run=tmp_path / "first", root=tmp_path / "cache")
    copy = cache.materialise(entry, tmp_path / "second" / "trials" / "srresnet-pretrain")
    for rel in entry.files:
        assert (copy / rel).read_bytes() == (run / rel).read_bytes()
    assert resolve_init_source(copy) == copy / "checkpoint_0000002" / "generator.safetensors"
    marker = cache.from_cache(copy)
    assert marker["source_run"] == str(tmp_path / "first") and marker["entry"] == str(entry.path)
    assert cache.from_cache(run) is None


def _store_at(start: float, run: str, cfg_dict: dict, data_root: str, root: str, out: str) -> None:
    from harness.sweeps import cache
    from srgan.config import ExperimentConfig, from_dict

    while time.time() < start:
        time.sleep(0.001)
    entry = cache.store(Path(run), from_dict(ExperimentConfig, cfg_dict), source_run=Path(run).parent, root=Path(root))
    Path(out).write_text(entry.source["run"])


def test_two_runs_storing_one_pretraining_at_once_leave_one_good_entry(data_root: Path, tmp_path: Path) -> None:
    from srgan.config import to_dict

    cfg = pretraining(data_root)
    runs = [finished_pretraining(cfg, tmp_path / f"run{i}" / "srresnet-pretrain", seed=i) for i in range(2)]
    ctx = mp.get_context("spawn")
    start = time.time() + 3  # both processes past their imports, then storing in the same instant
    procs = [ctx.Process(target=_store_at, args=(start, str(run), to_dict(cfg), str(data_root),
                                                 str(tmp_path / "cache"), str(tmp_path / f"stored{i}")))
             for i, run in enumerate(runs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no partial or trash folder left
    entry = cache.lookup(cfg, data_root, root=tmp_path / "cache")
    assert entry is not None  # whole and verified
    winner = Path(entry.source["run"])
    won = next(r for r in runs if r.parent == winner)
    assert (entry.path / "checkpoint_0000002" / "generator.safetensors").read_bytes() == (
        won / "checkpoint_0000002" / "generator.safetensors").read_bytes()  # one run's files, not a mix
    # both stores answered with the entry that is there
    assert {(tmp_path / f"stored{i}").read_text() for i in range(2)} == {str(winner)}


# ------------------------------------------------------------------------------------------- real sweeps
# Run A is the session's tiny study (tests/conftest.py `tiny_study`): it trained SRResNet's pretraining and stored
# it in its cache. Sweep B (v2 at the study's size: the same pretraining config) takes it from a copy of that
# entry; C refuses the copy once corrupted, trains and stores anew: `harness.sweep`'s main in this process, on the
# session's Ray (real_runs.run_main). --no-cache is checked on the
# Pareto search (test_harness_pareto.py), which runs with it beside a valid entry of its pretraining.


def _sweep(out: Path, data_root: Path, cache_dir: Path) -> Ran:
    from harness.sweeps import sweep

    argv = ["--presets", "v2", "--grid", "loss.adv_weight=0.001", "--datasets", "set5", "--save-images", "set5",
            "--scheduler", "none", "--no-report", "--out", str(out), "--data-root", str(data_root)]
    # (tiny's own steps, as the study's: its pretraining's config)
    done = run_main(sweep.main, argv, env={cache.CACHE_ENV: str(cache_dir)})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def _init_digest(out: Path) -> str:
    """The weights v2's (seed 0) GAN trial started from: in a sweep, its one GAN trial; in a study, v2's."""
    trials = pl.read_parquet(out / schema.TRIALS_FILE).filter(pl.col("stage") == "gan")
    if "version" in trials.columns and trials.height > 1:
        trials = trials.filter((pl.col("version") == "v2") & (pl.col("seed") == 0))
    (trial_id,) = trials["trial_id"].to_list()
    return json.loads((out / schema.TRIALS_DIR / trial_id / "init.json").read_text())["generator_digest"]


@dataclass(frozen=True)
class CacheSweeps:
    a: Path  # the tiny study, which trained the pretraining and stored it
    entry: Path  # the copy of its cache entry that B and C use (C stores anew into it)
    runs: dict[str, Ran]  # "b", "c": the sweeps' output
    windows: dict[str, tuple[float, float]]  # "b": before the sweep started, after it ended
    pretrain_steps: int  # of the shared pretraining


@pytest.fixture(scope="module")
def cache_sweeps(tmp_path_factory: pytest.TempPathFactory, data_root: Path, tiny_study, session_ray
                 ) -> CacheSweeps:
    """Sweep B (same pretraining as the study's) takes it from a copy of the study's cache entry; then the copy's
    weights are corrupted and sweep C refuses it, trains the pretraining again and stores it anew."""
    base = tmp_path_factory.mktemp("cache-sweeps")
    cache_dir = base / "cache"
    trained = tiny_study.out / schema.TRIALS_DIR / "srresnet-pretrain"
    cfg = from_dict(ExperimentConfig, json.loads((trained / "config.json").read_text())["config"])
    stored = cache.lookup(cfg, data_root, root=tiny_study.cache, discard_bad=False)
    assert stored is not None and stored.source["run"] == str(tiny_study.out), "the study stored its pretraining"
    entry = cache_dir / stored.path.name
    shutil.copytree(stored.path, entry)
    session_ray.get()
    before = time.time()
    b = _sweep(base / "b", data_root, cache_dir)
    windows = {"b": (before, time.time())}
    weights = max(entry.glob("checkpoint_*")) / "generator.safetensors"  # the final weights, what a GAN stage reads
    data = bytearray(weights.read_bytes())
    data[-4] ^= 0xFF
    weights.write_bytes(bytes(data))
    c = _sweep(base / "c", data_root, cache_dir)
    return CacheSweeps(a=tiny_study.out, entry=entry, runs={"b": b, "c": c}, windows=windows,
                       pretrain_steps=cfg.train.total_steps)


@pytest.mark.slow
def test_a_second_sweep_starts_no_pretraining_and_its_gan_trials_start_from_the_same_weights(cache_sweeps,
                                                                                              tiny_study) -> None:
    a, b, entry, runs = cache_sweeps.a, cache_sweeps.entry.parent.parent / "b", cache_sweeps.entry, cache_sweeps.runs
    assert (a / schema.PRETRAIN_TUNE_DIR).is_dir() and (a / "trials" / "srresnet-pretrain" / "starts.log").is_file()
    assert not (b / schema.PRETRAIN_TUNE_DIR).exists()  # no pretraining trial ran in B
    assert not (b / "trials" / "srresnet-pretrain" / "starts.log").exists()
    assert (f"srresnet-pretrain: {cache_sweeps.pretrain_steps} pixel-loss steps, shared by v2: from cache, not "
            "trained") in runs["b"].stdout
    assert "from cache" not in tiny_study.first_log + tiny_study.resume.stdout
    assert _init_digest(b) == _init_digest(a)  # the GAN trial started from identical weights
    # the pretraining's row is there and scored, and the results say where it came from
    for out in (a, b):
        trials = pl.read_parquet(out / schema.TRIALS_FILE)
        assert "srresnet-pretrain" in trials.filter(pl.col("stage") == "pretrain")["trial_id"].to_list()
        summary = pl.read_parquet(out / schema.SUMMARY_FILE)
        assert summary.filter(pl.col("trial_id") == "srresnet-pretrain")["psnr"].is_not_null().all()
    assert pl.read_parquet(b / schema.TRIALS_FILE).filter(pl.col("stage") == "pretrain")["trial_id"].to_list() == [
        "srresnet-pretrain"]
    scores = [pl.read_parquet(out / schema.SCORES_FILE).filter(pl.col("trial_id") == "srresnet-pretrain")
              .sort("dataset", "image")["psnr"].to_list() for out in (a, b)]
    assert scores[0] == scores[1]  # the same generator, scored the same way
    assert json.loads((b / schema.RUN_FILE).read_text())["kind"] == "sweep"
    record_a = json.loads((a / schema.RUN_FILE).read_text())["pretrain_cache"]
    record_b = json.loads((b / schema.RUN_FILE).read_text())["pretrain_cache"]
    assert record_a["enabled"] and record_a["from_cache"] == {}
    assert record_b["from_cache"]["srresnet-pretrain"]["source_run"] == str(a)
    assert record_b["from_cache"]["srresnet-pretrain"]["entry"] == str(entry)


@pytest.mark.slow
def test_a_corrupted_entry_is_rebuilt_not_used(cache_sweeps, data_root: Path) -> None:
    entry, runs = cache_sweeps.entry, cache_sweeps.runs
    c = entry.parent.parent / "c"
    assert "refused" in runs["c"].stderr and "does not match its sha256" in runs["c"].stderr
    assert (c / schema.PRETRAIN_TUNE_DIR).is_dir() and (c / "trials" / "srresnet-pretrain" / "starts.log").is_file()
    assert json.loads((c / schema.RUN_FILE).read_text())["pretrain_cache"]["from_cache"] == {}
    assert json.loads((c / schema.RUN_FILE).read_text())["kind"] == "sweep"
    assert _init_digest(c) == _init_digest(cache_sweeps.a)  # trained again, deterministically: the same weights
    rebuilt = json.loads((entry / cache.MANIFEST).read_text())
    assert rebuilt["source"]["run"] == str(c)  # stored anew by C, and whole
    assert cache.verify(entry, from_dict(ExperimentConfig, rebuilt["config"]), rebuilt["key"], rebuilt["config_digest"])


def _steps_seconds_by_hand(out: Path, since: float) -> dict[str, float]:
    """Per trial: the seconds of its training steps reported since `since`, from its history.jsonl."""
    seconds = {}
    for trial_id in pl.read_parquet(out / schema.TRIALS_FILE).filter(pl.col("stage") != "baseline")["trial_id"]:
        folder = out / schema.TRIALS_DIR / trial_id
        batch = json.loads((folder / "config.json").read_text())["config"]["data"]["batch_size"]
        rows = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
        total, before = 0.0, 0
        for row in rows:
            if row["time"] >= since:
                total += (row["step"] - before) * batch / row["images_per_s"]
            before = row["step"]
        seconds[trial_id] = total
    return seconds


@pytest.mark.slow
def test_the_overhead_share_is_written_to_run_json_and_printed(cache_sweeps, tiny_study) -> None:
    """run.json's overhead (harness.sweeps.overhead) against references of the test's own: the training-step
    seconds summed by hand from every trial's history, the run's window on this test's clock, and the share's
    definition (the module's docstring) applied to the measured times, not to the record's derived fields. A is the
    study's resume, B a sweep that took its pretraining from the cache."""
    runs = {"a": (tiny_study.out, tiny_study.resume.stdout, tiny_study.resume_window),
            "b": (cache_sweeps.entry.parent.parent / "b", cache_sweeps.runs["b"].stdout, cache_sweeps.windows["b"])}
    for name, (out, stdout, (opened, closed)) in runs.items():
        record = json.loads((out / schema.RUN_FILE).read_text())["overhead"]
        by_hand = _steps_seconds_by_hand(out, record["started"])
        train_s = sum(by_hand.values())
        assert record["train_step_s"] == pytest.approx(train_s, rel=1e-9)
        assert record["scoring_s"] > 0 and record["slots"] >= 1 and record["scorers"] >= 1
        # the accounted window lies inside the run's process as this test's clock saw it, its phases one after
        # another inside the window
        assert opened <= record["started"] and record["started"] + record["wall_s"] <= closed
        phases = record["phases_s"]
        assert {"Ray start-up", "GAN trials", "scoring"} <= set(phases)
        assert min(phases.values()) >= 0 and sum(phases.values()) <= record["wall_s"]
        # capacity: `slots` trial slots until scoring, `scorers` while it scores
        scoring_wall = phases["scoring"]
        before_scoring = record["wall_s"] - scoring_wall
        capacity = record["slots"] * before_scoring + record["scorers"] * scoring_wall
        assert record["slot_s"] == pytest.approx(capacity, rel=1e-9)
        assert record["share"] == pytest.approx(1 - (train_s + record["scoring_s"]) / capacity, rel=1e-9)
        assert 0 < record["share"] < 1
        # busy seconds fit their slots: training steps before scoring, scoring jobs while it scores
        assert train_s <= record["slots"] * before_scoring
        assert record["scoring_s"] <= record["scorers"] * scoring_wall
        assert f"overhead: {100 * record['share']:.1f} %" in stdout
        if name == "a":  # trained before the resume started: none of their steps are the resume's
            assert all(by_hand[t] == 0.0 for t in ("srresnet-pretrain", "rrdb-pretrain", *tiny_study.finished))
            assert all(by_hand[t] > 0 for t in set(by_hand) - {"srresnet-pretrain", "rrdb-pretrain",
                                                                 *tiny_study.started})
        else:  # the cached pretraining trained in A, before B started: none of its steps are B's
            assert by_hand["srresnet-pretrain"] == 0.0 and "pretraining" not in phases
