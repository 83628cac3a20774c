"""harness.sweep --search pareto (harness.sweeps.pareto_search): errors before Ray starts, what the searcher is told,
NIQE on validation crops, and one real tiny search (module fixture) interrupted with Ctrl-C, resumed with more
samples, its front confirmed with one more seed: pareto.parquet, pareto_confirm.parquet and the report; run with
--no-cache, it also shows that option trains every pretraining and keeps none."""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import torch
from real_runs import Ran

from harness.run import validation
from harness.sweeps import cache, pareto_search, sweep
from harness.sweeps.cli import request_from_args, sweep_parser
from harness.sweeps.plan import SweepRequest, plan_sweep
from results.pareto import nondominated_ranks
from srgan.config import ExperimentConfig, from_dict

SEARCH = ["--search", "pareto", "--presets", "v2", "--size", "tiny"]


@pytest.mark.parametrize("extra, problem", [
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--objectives", "psnr:max"], "two or three objectives"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--objectives", "psnr:max,lpips:min"], "does not compute LPIPS"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--objectives", "psnr:up,niqe:min"], "must be max or min"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--objectives", "psnr:max,fid:min"], "unknown metric 'fid'"),
    (["--uniform", "loss.adv_weight=a:b"], "--uniform expects key=low:high"),
    (["--loguniform", "loss.adv_weight=0:1e-1"], "needs 0 < LOW < HIGH"),
    (["--uniform", "loss.adv_weight=0.1:0.01"], "needs LOW < HIGH"),
    ([], "needs a space to search"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--uniform", "loss.adv_weight=0:1"], "given two ways"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--scheduler", "asha"], "without ASHA"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--allow-selection-on-test"], "never reads a scored set"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--seeds", "0,1"], "takes no --seeds"),
    (["--loguniform", "loss.adv_weight=1e-4:1e-1", "--confirm-seeds", "2", "--pretrain-seed", "per-seed"],
     "--pretrain-seed shared"),
    (["--loguniform", "loss.nope=1e-4:1e-1"], "unknown config key: loss.nope"),
    (["--uniform", "loss.adv_weight=0:inf"], "loss.adv_weight must be a finite number"),  # the high end too
])
def test_a_bad_search_is_an_error_before_ray_starts(extra: list[str], problem: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture, data_root: Path) -> None:
    import ray

    argv = [*SEARCH, "--num-samples", "4", "--dry-run", "--out", str(tmp_path / "out"), "--data-root",
            str(data_root), *extra]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and problem in err, err
    assert not ray.is_initialized()
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_objectives_and_confirm_seeds_belong_to_a_pareto_search(capsys: pytest.CaptureFixture) -> None:
    assert sweep.main(["--objectives", "psnr:max,niqe:min", "--dry-run"]) == 2
    assert "belong to --search pareto" in capsys.readouterr().err


def test_the_searcher_is_told_every_objective_with_its_mode() -> None:
    from ray import tune

    request = SweepRequest(presets=("v2",), grid={}, loguniform={"loss.adv_weight": (1e-4, 1e-1)}, search="pareto",
                           num_samples=6, objectives="psnr:max,ssim:max,niqe:min", scheduler="none")
    searcher = pareto_search.searcher(request)
    assert searcher.metric == ["val_psnr", "val_ssim", "val_niqe"] and searcher.mode == ["max", "max", "min"]
    # what Tune does with it: the space set, then the Optuna study it made is asked and told
    searcher.set_search_properties(None, None, {"preset": "v2", "loss.adv_weight": tune.loguniform(1e-4, 1e-1)})
    import optuna

    assert searcher._ot_study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                             optuna.study.StudyDirection.MAXIMIZE,
                                             optuna.study.StudyDirection.MINIMIZE]
    assert type(searcher._ot_study.sampler).__name__ == "TPESampler"
    params = searcher.suggest("t1")
    assert 1e-4 <= params["loss.adv_weight"] <= 1e-1
    searcher.on_trial_complete("t1", {"val_psnr": 25.0, "val_ssim": 0.7, "val_niqe": 9.0, "val_other": 1.0})
    assert searcher._ot_study.trials[0].values == [25.0, 0.7, 9.0]


def test_more_samples_raises_a_resumed_search_and_refuses_fewer() -> None:
    request = SweepRequest(presets=("v2",), grid={}, search="pareto", num_samples=6, objectives="psnr:max,niqe:min",
                           scheduler="none")
    assert pareto_search.more_samples(request, 1) is request  # --num-samples not given
    assert pareto_search.more_samples(request, 9).num_samples == 9
    with pytest.raises(ValueError, match="samples 6 already"):
        pareto_search.more_samples(request, 4)
    grid = SweepRequest(presets=("v2",))
    assert pareto_search.more_samples(grid, 9) is grid


def test_validation_reports_niqe_on_the_crops_that_hold_its_blocks(data_root: Path) -> None:
    from benchmarks.scoring import metrics

    params = validation.niqe_params_of(str(data_root))
    assert params is not None
    gen = torch.Generator().manual_seed(0)
    big = validation.ValPair("big", torch.rand(3, 200, 216, generator=gen), torch.rand(3, 50, 54, generator=gen))
    small = validation.ValPair("small", torch.rand(3, 96, 96, generator=gen), torch.rand(3, 24, 24, generator=gen))
    net = torch.nn.Upsample(scale_factor=4, mode="nearest")
    got = validation.score(net, [big, small], scale=4, device=torch.device("cpu"), niqe_params=params)
    sr = torch.nn.functional.interpolate(big.lq[None], scale_factor=4, mode="nearest")
    assert got["val_niqe"] == pytest.approx(float(metrics.niqe(sr, crop=4, params=params)[0]), rel=1e-9)
    assert "val_niqe" not in validation.score(net, [small], scale=4, device=torch.device("cpu"), niqe_params=params)
    assert "val_niqe" not in validation.score(net, [big], scale=4, device=torch.device("cpu"))
    assert pareto_search.niqe_val_crop(4) == 200 and pareto_search.niqe_val_crop(3) == 198


# ------------------------------------------------------------------- one real search, interrupted and resumed

GAN_FINISHED = re.compile(r"^\[GAN trials\] .* finished$", re.MULTILINE)
OBJECTIVES = ["val_psnr", "val_niqe"]


@dataclass(frozen=True)
class Search:
    out: Path
    first_log: str
    finished_at_interrupt: list[str]  # Tune ids of the trials finished when Ctrl-C came
    resume: Ran  # `harness.sweep --resume OUT --num-samples 5` (real_runs.run_main)
    waiting: cache.Entry  # an entry of its very pretraining, in the pretraining cache it ran with (--no-cache)
    cache_before: list[str]  # that cache's folder listing before the search


def _waiting_entry(argv: list[str], out: Path, cache_dir: Path, data_root: Path) -> cache.Entry:
    """A valid cache entry of the pretraining `harness.sweep argv` plans (random weights, trained nowhere)."""
    from cache_synthetic import finished

    ((name, cfg),) = plan_sweep(request_from_args(sweep_parser().parse_args(argv)), out).pretrain_configs.items()
    elsewhere = out.parent / "elsewhere"
    return cache.store(finished(cfg, elsewhere / name, data_root), cfg, source_run=elsewhere, root=cache_dir)


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path, session_ray) -> Search:
    """A real tiny search: 4 samples, Ctrl-C once Tune finished a GAN trial, then `--resume --num-samples 5`, and
    its front confirmed with one more seed, scored on Set5, report built. With --no-cache, while the cache holds a
    valid entry of its very pretraining (`test_no_cache_trains_and_keeps_nothing`)."""
    from real_runs import interrupt_after, run_main, tune_trials

    out = tmp_path_factory.mktemp("pareto") / "search"
    cache_dir = out.parent / "cache"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ENHANCE_CACHE": str(cache_dir)}
    argv = [*SEARCH, "--loguniform", "loss.adv_weight=1e-4:1e-1", "--num-samples", "4", "--confirm-seeds", "1",
            "--datasets", "set5", "--vgg-fallback", "untrained", "--max-concurrent", "2", "--no-cache",
            "--out", str(out), "--data-root", str(data_root),
            # the preset's own log cadence (every 2 steps) with 2 validations: most reports carry no objective
            "--set", "train.val_every=30", "--set", "train.ckpt_every=30"]
    waiting = _waiting_entry(argv, out, cache_dir, data_root)
    cache_before = sorted(p.name for p in cache_dir.iterdir())
    cmd = [sys.executable, "-m", "harness.sweep", *argv]
    code, text = interrupt_after(cmd, env, out.parent / "first.log", GAN_FINISHED, timeout=600)
    assert code == 130, text[-4000:]
    finished = sorted(t for t, s in tune_trials(out / "tune").items() if s == "TERMINATED")
    assert finished, text[-4000:]
    session_ray.get()  # the resume: harness.sweep's main in this process, on the session's Ray
    resume = run_main(sweep.main, ["--resume", str(out), "--num-samples", "5"], env={"ENHANCE_CACHE": str(cache_dir)})
    assert resume.returncode == 0, resume.stdout[-4000:] + resume.stderr[-4000:]
    return Search(out=out, first_log=text, finished_at_interrupt=finished, resume=resume, waiting=waiting,
                  cache_before=cache_before)


@pytest.mark.slow
def test_the_resumed_search_reaches_its_samples_and_reruns_no_finished_trial(pareto_run: Search) -> None:
    from real_runs import tune_trials

    states = tune_trials(pareto_run.out / "tune")
    assert len(states) == 5 and set(states.values()) == {"TERMINATED"}, states
    for trial_id in pareto_run.finished_at_interrupt:
        starts = (pareto_run.out / "trials" / trial_id / "starts.log").read_text().split()
        assert len(starts) == 1, f"finished trial {trial_id} was started again on resume"
    assert "pareto search: psnr:max, niqe:min" in pareto_run.first_log
    # the raised count is the search's now: a later resume without --num-samples keeps it
    assert json.loads((pareto_run.out / "sweep.json").read_text())["request"]["num_samples"] == 5


@pytest.mark.slow
def test_pareto_parquet_holds_every_trial_with_ranks_from_a_brute_force_check(pareto_run: Search) -> None:
    table = pl.read_parquet(pareto_run.out / "pareto.parquet")
    assert table.height == 5 and table["trial_id"].n_unique() == 5
    assert {"preset", "loss.adv_weight", *OBJECTIVES, "rank", "front", "seed"} <= set(table.columns)
    assert table["loss.adv_weight"].is_between(1e-4, 1e-1).all()
    points = list(zip(*(table[c].to_list() for c in OBJECTIVES), strict=True))
    for i, p in enumerate(points):  # on the front exactly when no other trial is as good on both and better on one
        beaten = any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)
        assert table["front"][i] == (not beaten)
    assert table["rank"].to_list() == nondominated_ranks(points, ["max", "min"])


@pytest.mark.slow
def test_the_searcher_was_told_both_objectives_and_got_each_trials_final_report(pareto_run: Search) -> None:
    state = max((pareto_run.out / "tune").glob("searcher-state-*.pkl"))  # the newest (by name, as Tune reads it)
    searcher = pickle.loads(state.read_bytes())  # the searcher Tune saved: what it was set up with, what it was told
    assert searcher["_metric"] == OBJECTIVES and searcher["_mode"] == ["max", "min"]
    study = searcher["_ot_study"]
    told = sorted(tuple(t.values) for t in study.trials if t.values is not None)
    table = pl.read_parquet(pareto_run.out / "pareto.parquet")
    assert told == sorted(zip(*(table[c].to_list() for c in OBJECTIVES), strict=True))
    for row in table.iter_rows(named=True):  # each trial's final validation, a trial cut off at Ctrl-C included
        history = (pareto_run.out / "trials" / row["trial_id"] / "history.jsonl").read_text().splitlines()
        last = json.loads(history[-1])
        final = max((pareto_run.out / "trials" / row["trial_id"]).glob("checkpoint_*")).name
        assert last["step"] == int(final.split("_")[1])
        assert (last["val_psnr"], last["val_niqe"]) == (row["val_psnr"], row["val_niqe"])


@pytest.mark.slow
def test_the_objectives_are_the_held_out_validation_images_scores(pareto_run: Search, data_root: Path) -> None:
    """Recompute each trial's objectives from its final weights on the validation pairs the plan named (the
    held-out split of train/T91): they match; the same weights on Set5 (the scored set) do not."""
    from benchmarks.scoring.datasets import load_pairs
    from srgan.checkpoint import load_generator

    run = pl.read_parquet(pareto_run.out / "pareto.parquet").row(0, named=True)
    folder = pareto_run.out / "trials" / run["trial_id"]
    final = max(folder.glob("checkpoint_*"))
    net, cfg = load_generator(final)
    assert cfg.data.val_set == "holdout" and cfg.data.val_crop == 200
    pairs = validation.validation_pairs(cfg, data_root)
    params = validation.niqe_params_of(str(data_root))
    held = validation.score(net, pairs, scale=4, device=torch.device("cpu"), niqe_params=params)
    assert held["val_psnr"] == pytest.approx(run["val_psnr"], abs=1e-6)
    assert held["val_niqe"] == pytest.approx(run["val_niqe"], abs=1e-6)
    scored = [validation.ValPair(p.name, p.gt, p.lq) for p in load_pairs("set5", 4, data_root)]
    on_test = validation.score(net, scored, scale=4, device=torch.device("cpu"), niqe_params=params)
    assert abs(on_test["val_psnr"] - run["val_psnr"]) > 0.05
    set5 = {p.name for p in load_pairs("set5", 4, data_root)}
    assert not set5 & {p.name for p in pairs}


@pytest.mark.slow
def test_the_front_is_confirmed_with_one_more_seed_on_the_test_set(pareto_run: Search) -> None:
    table = pl.read_parquet(pareto_run.out / "pareto.parquet")
    front = set(table.filter(pl.col("front"))["trial_id"].to_list())
    confirmed = pl.read_parquet(pareto_run.out / "pareto_confirm.parquet")
    assert set(confirmed["point"].to_list()) == front
    assert set(confirmed["dataset"].to_list()) == {"set5"} and set(confirmed["metric"].to_list()) == {"psnr", "niqe"}
    assert (confirmed["n_seeds"] == 2).all()
    assert (confirmed["low"] <= confirmed["mean"]).all() and (confirmed["mean"] <= confirmed["high"]).all()
    trials = pl.read_parquet(pareto_run.out / "trials.parquet")
    summary = pl.read_parquet(pareto_run.out / "summary.parquet")
    # each front point's mean is the mean of its two trials' Set5 PSNR: the search's own and the seed-1 one
    labels = dict(zip(table["trial_id"], table["label"], strict=True))
    for point in front:
        seeded = trials.filter(pl.col("label") == f"{labels[point]} seed=1")["trial_id"].to_list()
        assert len(seeded) == 1
        psnrs = summary.filter(pl.col("trial_id").is_in([point, *seeded]))["psnr"].to_list()
        row = confirmed.filter((pl.col("point") == point) & (pl.col("metric") == "psnr")).row(0, named=True)
        assert row["mean"] == pytest.approx(sum(psnrs) / 2) and row["low"] == pytest.approx(min(psnrs))


@pytest.mark.slow
def test_no_cache_trains_and_keeps_nothing(pareto_run: Search, data_root: Path) -> None:
    """--no-cache: the search trained its pretraining though the cache held a valid entry of it, recorded that it
    used no cache, and left the cache as it was (nothing stored, the entry neither used nor removed)."""
    out = pareto_run.out
    assert (out / "tune_pretrain").is_dir() and (out / "trials" / "srresnet-pretrain" / "starts.log").is_file()
    assert "from cache" not in pareto_run.first_log + pareto_run.resume.stdout
    assert json.loads((out / "run.json").read_text())["pretrain_cache"] == {
        "enabled": False, "root": None, "from_cache": {}}
    assert sorted(p.name for p in pareto_run.waiting.path.parent.iterdir()) == pareto_run.cache_before
    # ... an entry of the very pretraining it trained, still whole: it could have been used
    trained = json.loads((out / "trials" / "srresnet-pretrain" / "config.json").read_text())["config"]
    entry = cache.lookup(from_dict(ExperimentConfig, trained), data_root, root=pareto_run.waiting.path.parent)
    assert entry is not None and entry.path == pareto_run.waiting.path
    assert entry.source == pareto_run.waiting.source

    html = (pareto_run.out / "report" / "index.html").read_text()
    assert "Pareto search" in html and "pareto-plane" in html
    table = pl.read_parquet(pareto_run.out / "pareto.parquet")
    for label in table.filter(pl.col("front"))["label"].to_list():
        assert label.replace("v2 ", "") in html


def test_raise_num_samples_rewrites_the_newest_search_state_only(tmp_path: Path) -> None:
    import ray.cloudpickle as cloudpickle

    for stamp, total in (("2026-01-01_00-00-00", 3), ("2026-01-01_00-10-00", 4)):  # Tune restores the newest by name
        with (tmp_path / f"search_gen_state-{stamp}.json").open("wb") as fh:
            cloudpickle.dump({"counter": total, "total_samples": total, "finished": True, "experiment": None}, fh)
    assert pareto_search.raise_num_samples(tmp_path, 6) == 4
    newest = cloudpickle.loads((tmp_path / "search_gen_state-2026-01-01_00-10-00.json").read_bytes())
    older = cloudpickle.loads((tmp_path / "search_gen_state-2026-01-01_00-00-00.json").read_bytes())
    assert (newest["total_samples"], newest["finished"], newest["counter"]) == (6, False, 4)
    assert older["total_samples"] == 3
    with pytest.raises(ValueError, match="sampled up to 6"):
        pareto_search.raise_num_samples(tmp_path, 5)
    assert pareto_search.raise_num_samples(tmp_path / "none", 6) is None
