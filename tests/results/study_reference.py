"""An independent, plain-Python recomputation of study.parquet's rows from trials.parquet and scores.parquet.

Written for reading, not speed, and sharing no code with the `results.study*` modules or `results.stats`: tests
(the study's smoke run included) compare its numbers with the table. It follows the method those modules document,
from the documentation, with loops and scipy's distributions:

- the pairs: a GAN version's trials and the other version's trials with the same seed, or each GAN trial and the
  pretraining its `init_from` names; a pretraining's version is its preset when that ends in "-pretrain"
  (without a "-seed<N>" / "-<8 hex>" suffix), else "<family>-pretrain" from config generator.arch;
- the grid: seeds x images of a - b; while a cell is missing, drop the line with the largest share of missing
  cells, an image before a seed on a tie, the first in sorted order;
- the ANOVA mean squares of the two-way layout; components (MS_seed - MS_resid) / I, (MS_image - MS_resid) / S,
  MS_resid, negative ones set to 0; Var(mean) and its df from whichever mean squares the positive components
  leave (both: MS_seed + MS_image - MS_resid with Satterthwaite's df; seed only: MS_seed, S - 1; image only:
  MS_image, I - 1; none: MS_resid, (S - 1)(I - 1)); one image: the seeds' sample variance / S on S - 1 df;
- a Student t interval and two-sided test; Holm over every row of a metric; the mdd from scipy's non-central t;
  the probability of improvement over all (seed of a, seed of b) pairs of dataset means, ties one half;
- issue 25: a trial's written `version` first; each GAN version against the control its rows name and each ladder
  arm against the 0 arm, paired by seed; a ladder's trend: per (seed, image) np.polyfit's slope on log10 of the
  non-zero weights, then the same interval against zero, in the same Holm family;
- planning the next study: the mean squares a design of S' seeds x I' images expects from the measured components
  (resid + I' seed, resid + S' image, resid), combined as above, the mdd from scipy's non-central t, and the seeds
  a target needs counted up one at a time.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
from scipy import optimize
from scipy import stats as sp

USED = ("ok", "stopped", "baseline")
ORDER = ["v1", "v2", "v3", "ragan", "esrgan"]
FAMILY = {"srresnet": "srresnet", "rrdbnet": "rrdb"}
HIGHER = {"psnr": True, "ssim": True, "lpips": False, "niqe": False}


def _version(trial: dict) -> str:
    if trial.get("version"):  # written by the harness since issue 25 (controls, ladder arms)
        return trial["version"]
    stage = trial.get("stage") or ("baseline" if trial["status"] == "baseline" else "gan")
    preset = trial["preset"] or ""
    if stage != "pretrain":
        for suffix in ("-tiny", "-cpu", "-paper", "-small"):
            if preset.endswith(suffix):
                preset = preset[: -len(suffix)]
        return preset
    found = re.match(r"^(.*-pretrain)(-seed[0-9]+|-[0-9a-f]{8})?$", preset)
    if found:
        return found.group(1)
    config = json.loads(trial["config_json"]) if trial.get("config_json") else {}
    arch = (config.get("generator") or {}).get("arch")
    return f"{FAMILY.get(arch, arch)}-pretrain" if arch else "pretrain"


def _tables(results_dir: Path) -> tuple[list[dict], dict]:
    trials = []
    for t in pl.read_parquet(results_dir / "trials.parquet").iter_rows(named=True):
        if t["status"] in USED:
            t = dict(t)
            t["stage"] = t.get("stage") or ("baseline" if t["status"] == "baseline" else "gan")
            t["version"] = _version(t)
            trials.append(t)
    scores = pl.read_parquet(results_dir / "scores.parquet").to_dicts()
    return trials, {"rows": scores}


def _pairs(trials: list[dict], a: str, b: str) -> list[tuple[int, str, str]]:
    """(seed, a trial, b trial) pairs."""
    by_id = {t["trial_id"]: t for t in trials}
    gan = [t for t in trials if t["stage"] == "gan"]
    pairs = []
    for ta in gan:
        if ta["version"] != a:
            continue
        if b.endswith("-pretrain") or b == "pretrain":
            source = ta.get("init_from")
            if source is not None and source not in by_id:
                source = Path(source).name
            if source in by_id and by_id[source]["stage"] == "pretrain" and by_id[source]["version"] == b:
                pairs.append((ta["seed"], ta["trial_id"], source))
        else:
            for tb in gan:
                if tb["version"] == b and tb["seed"] == ta["seed"]:
                    pairs.append((ta["seed"], ta["trial_id"], tb["trial_id"]))
    return pairs


def difference_grids(results_dir: Path, a: str, b: str, dataset: str, metric: str):
    """(a grid, b grid, seeds, images) before any line is dropped; NaN where a pair is missing. Several trials on
    one side with one seed are averaged per image."""
    trials, tables = _tables(results_dir)
    value: dict[tuple[str, str], float] = {}
    for r in tables["rows"]:
        v = r.get(metric)
        if r["dataset"] == dataset and v is not None and math.isfinite(v):
            value[r["trial_id"], r["image"]] = v
    per_side: dict[str, dict[tuple[int, str], list[float]]] = {"a": {}, "b": {}}
    for seed, ta, tb in _pairs(trials, a, b):
        for side, trial in (("a", ta), ("b", tb)):
            for (tid, image), v in value.items():
                if tid == trial:
                    per_side[side].setdefault((seed, image), []).append(v)
    # A trial paired twice at one seed (a pretraining that two GAN trials of that seed started from) is listed
    # twice: its mean is the same.
    both = sorted(set(per_side["a"]) & set(per_side["b"]))
    seeds = sorted({s for s, _ in both})
    images = sorted({i for _, i in both})
    grid_a = np.full((len(seeds), len(images)), math.nan)
    grid_b = np.full((len(seeds), len(images)), math.nan)
    for s, i in both:
        grid_a[seeds.index(s), images.index(i)] = sum(per_side["a"][s, i]) / len(per_side["a"][s, i])
        grid_b[seeds.index(s), images.index(i)] = sum(per_side["b"][s, i]) / len(per_side["b"][s, i])
    return grid_a, grid_b, seeds, images


def _complete(diff: np.ndarray) -> tuple[list[int], list[int]]:
    rows = list(range(diff.shape[0]))
    cols = list(range(diff.shape[1]))
    while rows and cols:
        missing_in_col = [sum(1 for r in rows if math.isnan(diff[r, c])) / len(rows) for c in cols]
        missing_in_row = [sum(1 for c in cols if math.isnan(diff[r, c])) / len(cols) for r in rows]
        if max(missing_in_col) == 0 and max(missing_in_row) == 0:
            break
        if max(missing_in_col) >= max(missing_in_row):
            cols.pop(missing_in_col.index(max(missing_in_col)))
        else:
            rows.pop(missing_in_row.index(max(missing_in_row)))
    return rows, cols


def _anova(cells: list[list[float]]) -> dict:
    S, I = len(cells), len(cells[0])  # noqa: N806
    grand = sum(sum(r) for r in cells) / (S * I)
    if S == 1:
        return {"var": None, "df": None, "comp": (None, None, None)}
    if I == 1:
        m = [r[0] for r in cells]
        s2 = sum((x - grand) ** 2 for x in m) / (S - 1)
        return {"var": s2 / S, "df": S - 1.0 if s2 > 0 else None, "comp": (s2, None, None)}
    seed_mean = [sum(r) / I for r in cells]
    image_mean = [sum(cells[s][i] for s in range(S)) / S for i in range(I)]
    ms_s = I * sum((m - grand) ** 2 for m in seed_mean) / (S - 1)
    ms_i = S * sum((m - grand) ** 2 for m in image_mean) / (I - 1)
    ss_r = sum((cells[s][i] - seed_mean[s] - image_mean[i] + grand) ** 2 for s in range(S) for i in range(I))
    ms_r = ss_r / ((S - 1) * (I - 1))
    v_s, v_i = max(0.0, (ms_s - ms_r) / I), max(0.0, (ms_i - ms_r) / S)
    total, df = _combined(ms_s, ms_i, ms_r, v_s, v_i, S, I)
    return {"var": total / (S * I), "df": df if total > 0 else None, "comp": (v_s, v_i, ms_r)}


def _combined(ms_s: float, ms_i: float, ms_r: float, v_s: float, v_i: float, S: int, I: int):  # noqa: N803
    """S I Var(mean) from the mean squares the positive components leave, and its degrees of freedom."""
    if v_s > 0 and v_i > 0:
        total = ms_s + ms_i - ms_r
        return total, total ** 2 / (ms_s ** 2 / (S - 1) + ms_i ** 2 / (I - 1) + ms_r ** 2 / ((S - 1) * (I - 1)))
    if v_s > 0:
        return ms_s, S - 1.0
    if v_i > 0:
        return ms_i, I - 1.0
    return ms_r, (S - 1.0) * (I - 1.0)


def _mdd(var: float, df: float) -> float:
    crit = sp.t.ppf(0.975, df)

    def power(nc: float) -> float:
        return sp.nct.sf(crit, df, nc) + np.nan_to_num(sp.nct.cdf(-crit, df, nc))

    return optimize.brentq(lambda nc: power(nc) - 0.8, 1e-6, 200.0, xtol=1e-14) * math.sqrt(var)


def reference_components(results_dir: Path, a: str, b: str, dataset: str, metric: str):
    """((var_seed, var_image, var_resid), seeds, images) of the complete grid (a, b, dataset, metric) is measured on."""
    grid_a, grid_b, _, _ = difference_grids(Path(results_dir), a, b, dataset, metric)
    diff = grid_a - grid_b
    rows, cols = _complete(diff)
    return _anova([[float(diff[r, c]) for c in cols] for r in rows])["comp"], len(rows), len(cols)


def reference_mdd(components: tuple[float, float, float], n_seeds: int, n_images: int) -> float:
    """The minimum detectable difference (two-sided, alpha 0.05, power 0.8) of an n_seeds x n_images study with
    these variance components: the mean squares it expects (E[MS_seed] = resid + I seed, E[MS_image] = resid + S
    image, E[MS_resid] = resid; Searle, Casella & McCulloch 1992, ch. 4) combined as an estimate from data is."""
    v_s, v_i, v_r = components
    S, I = n_seeds, n_images  # noqa: N806
    total, df = _combined(v_r + I * v_s, v_r + S * v_i, v_r, v_s, v_i, S, I)
    return _mdd(total / (S * I), df)


def reference_seeds_needed(components: tuple[float, float, float], target: float, n_images: int) -> int | None:
    """The fewest seeds (from 2, counted up one at a time) whose `reference_mdd` is at most `target`."""
    for seeds in range(2, 10_001):
        if reference_mdd(components, seeds, n_images) <= target:
            return seeds
    return None


def reference_row(results_dir: Path, a: str, b: str, dataset: str, metric: str, *, ci: float = 0.95) -> dict:
    """What study.parquet should hold for (a, b, dataset, metric), before the family's Holm adjustment."""
    grid_a, grid_b, _, _ = difference_grids(Path(results_dir), a, b, dataset, metric)
    return _grid_row(grid_a, grid_b, metric, ci)


def _grid_row(grid_a: np.ndarray, grid_b: np.ndarray, metric: str, ci: float) -> dict:
    empty = {"n": 0, "n_seeds": 0, "n_images": 0, "mean_diff": None, "ci_low": None, "ci_high": None, "df": None,
             "p_value": None, "p_improve": None, "mdd": None, "sd_seed": None, "sd_image": None, "sd_resid": None}
    if grid_a.size == 0:
        return empty
    diff = grid_a - grid_b
    rows, cols = _complete(diff)
    if not rows or not cols:
        return empty
    cells = [[float(diff[r, c]) for c in cols] for r in rows]
    S, I = len(rows), len(cols)  # noqa: N806
    mean = sum(sum(r) for r in cells) / (S * I)
    fit = _anova(cells)
    sd = [None if v is None else math.sqrt(v) for v in fit["comp"]]
    out = {**empty, "n": S * I, "n_seeds": S, "n_images": I, "mean_diff": mean, "sd_seed": sd[0],
           "sd_image": sd[1], "sd_resid": sd[2]}
    if S == 1:
        out.update(sd_seed=None, sd_image=math.sqrt(np.var([c for r in cells for c in r], ddof=1)) if I > 1 else None)
        return out
    if fit["df"] is None:
        out.update(ci_low=mean, ci_high=mean, p_value=1.0 if mean == 0 else 0.0, mdd=0.0)
    else:
        se = math.sqrt(fit["var"])
        half = sp.t.ppf((1 + ci) / 2, fit["df"]) * se
        out.update(ci_low=mean - half, ci_high=mean + half, df=fit["df"],
                   p_value=2 * sp.t.sf(abs(mean) / se, fit["df"]), mdd=_mdd(fit["var"], fit["df"]))
    a_means = [sum(grid_a[r, c] for c in cols) / I for r in rows]
    b_means = [sum(grid_b[r, c] for c in cols) / I for r in rows]
    wins = 0.0
    for x in a_means:
        for y in b_means:
            better = x > y if HIGHER[metric] else x < y
            wins += 1.0 if better else (0.5 if x == y else 0.0)
    out["p_improve"] = wins / (S * S)
    return out


def reference_comparisons(results_dir: Path) -> list[tuple[str, str]]:
    """(a, b) of every comparison the study makes: consecutive versions present, then each GAN version against
    each pretraining version its trials started from."""
    trials, _ = _tables(Path(results_dir))
    by_id = {t["trial_id"]: t for t in trials}
    gan_versions = {t["version"] for t in trials if t["stage"] == "gan" and not _control_or_arm(t)}
    out = [(ORDER[k + 1], ORDER[k]) for k in range(len(ORDER) - 1)
           if ORDER[k] in gan_versions and ORDER[k + 1] in gan_versions]
    for version in [v for v in ORDER if v in gan_versions] + sorted(gan_versions - set(ORDER)):
        sources = set()
        for t in trials:
            if t["stage"] == "gan" and t["version"] == version and t.get("init_from") and not _control_or_arm(t):
                source = t["init_from"] if t["init_from"] in by_id else Path(t["init_from"]).name
                if source in by_id and by_id[source]["stage"] == "pretrain":
                    sources.add(by_id[source]["version"])
        out += [(version, s) for s in sorted(sources)]
    # issue 25: each GAN version against the control its rows name (same seed), then each ladder arm against the
    # ladder's 0 arm; a pair already listed (v2 against its control, which is the 0 arm) is not listed twice
    controls = {t["version"] for t in trials if t["version"].endswith("-continued")}
    for version in [v for v in ORDER if v in gan_versions] + sorted(gan_versions - set(ORDER)):
        named = {t.get("control") for t in trials if t["version"] == version and t["stage"] == "gan"}
        out += [(version, c) for c in sorted(c for c in named if c in controls)]
    for _, arms in sorted(_ladders(trials).items()):
        zero = arms.get(0.0)
        out += [(arms[w], zero) for w in sorted(arms) if w > 0 and zero is not None and (arms[w], zero) not in out]
    return out


def _control_or_arm(t: dict) -> bool:
    pure_arm = t.get("ladder_key") is not None and t["version"] != t.get("ladder_recipe")
    return t["version"].endswith("-continued") or pure_arm


def _ladders(trials: list[dict]) -> dict[tuple[str, str], dict[float, str]]:
    """{(recipe, key): {weight: the arm's version}}."""
    out: dict[tuple[str, str], dict[float, str]] = {}
    for t in trials:
        if t.get("ladder_key") is not None and t.get("ladder_value") is not None:
            out.setdefault((t["ladder_recipe"], t["ladder_key"]), {})[float(t["ladder_value"])] = t["version"]
    return out


def reference_trend(results_dir: Path, recipe: str, key: str, dataset: str, metric: str, *, ci: float = 0.95) -> dict:
    """study_dose.parquet's row before Holm: per (seed, image) the least-squares slope of the metric on log10 of
    the non-zero weights (np.polyfit), then the same seed x image interval of those slopes against zero."""
    trials, tables = _tables(Path(results_dir))
    arms = {w: v for w, v in _ladders(trials)[recipe, key].items() if w > 0}
    value = {}
    for r in tables["rows"]:
        if r["dataset"] == dataset and r.get(metric) is not None and math.isfinite(r[metric]):
            value[r["trial_id"], r["image"]] = r[metric]
    cell: dict[tuple[int, str], dict[float, float]] = {}
    for t in trials:
        for weight, version in arms.items():
            if t["version"] == version:
                for (tid, image), v in value.items():
                    if tid == t["trial_id"]:
                        cell.setdefault((t["seed"], image), {})[weight] = v
    seeds = sorted({s for s, _ in cell})
    images = sorted({i for _, i in cell})
    slopes = np.full((len(seeds), len(images)), np.nan)
    for (seed, image), by_weight in cell.items():
        if len(by_weight) == len(arms):
            weights = sorted(by_weight)
            slope = np.polyfit(np.log10(weights), [by_weight[w] for w in weights], 1)[0]
            slopes[seeds.index(seed), images.index(image)] = slope
    return _grid_row(slopes, np.zeros_like(slopes), metric, ci)


def holm(p: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment, written out: the k-th smallest of m p-values times (m - k + 1), made
    monotone, capped at 1."""
    tested = [k for k in range(len(p)) if p[k] is not None]
    tested.sort(key=lambda k: p[k])
    m = len(tested)
    out: list[float | None] = [None] * len(p)
    previous = 0.0
    for rank, k in enumerate(tested, start=1):
        previous = max(previous, min(1.0, (m - rank + 1) * p[k]))
        out[k] = previous
    return out


def reference_study(results_dir: Path, datasets: list[str], metrics: list[str]) -> dict[tuple, dict]:
    """{(a, b, dataset, metric): row} with p_holm over each metric's family and the verdict."""
    rows = {(a, b, d, m): reference_row(results_dir, a, b, d, m)
            for a, b in reference_comparisons(results_dir) for d in datasets for m in metrics}
    trials, _ = _tables(Path(results_dir))  # a ladder's trends join each metric's family ("trend" rows)
    rows.update({(f"trend {recipe} {key}", "", d, m): reference_trend(results_dir, recipe, key, d, m)
                 for recipe, key in sorted(_ladders(trials)) for d in datasets for m in metrics})
    for metric in metrics:
        keys = [k for k in rows if k[3] == metric]
        for key, adjusted in zip(keys, holm([rows[k]["p_value"] for k in keys]), strict=True):
            row = rows[key]
            row["p_holm"] = adjusted
            if row["n"] == 0:
                row["verdict"] = "no data"
            elif row["n_seeds"] < 2:
                row["verdict"] = "one seed"
            elif adjusted >= 0.05:
                row["verdict"] = "not distinguishable"
            elif key[0].startswith("trend "):
                row["verdict"] = "rises with the weight" if row["mean_diff"] > 0 else "falls with the weight"
            else:
                row["verdict"] = "a better" if (row["mean_diff"] > 0) == HIGHER[metric] else "b better"
    return rows
