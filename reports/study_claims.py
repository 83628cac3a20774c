"""The Study section's prose: the protocol, the variation each interval includes, one sentence per claim of
the original study with its adjusted verdicts, the stability it describes, and what this run cannot test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from reports.text import METRIC_NAMES, direction, plural
from reports.text import finite as _finite
from reports.text import fmt as _num
from reports.text import pct as _pct
from reports.verdicts import ALPHA, assess
from reports.verdicts import flags as _flags
from reports.verdicts import has_interval as _has_interval
from results import dose, legacy, schema
from results import rows as result_rows
from results.rows import json_list
from results.schema import KIND_STEP, STUDY_ORDER, UNTRAINED_VGG

KIND_CONTROL = dose.KIND_CONTROL  # the GAN stage against its equal-budget control: these rows carry its claim


@dataclass(frozen=True)
class Claim:
    """A claim of the original study (or of its next steps) and the comparisons that test it.

    `pairs` are (a, b) version pairs; `kind` instead selects every comparison of that kind (the GAN stages
    against their pretrainings). `expect` maps "distortion" (PSNR) and/or "perception" (LPIPS, else NIQE) to
    the side the claim says is better."""

    text: str
    pairs: tuple[tuple[str, str], ...] = ()
    kind: str | None = None
    expect: tuple[tuple[str, str], ...] = ()


STUDY_CLAIMS = (
    Claim("v2 improves on v1 (richer training data, larger patches, a pixel-loss warmup before the GAN)",
          pairs=(("v2", "v1"),), expect=(("distortion", "a"), ("perception", "a"))),
    Claim("v3's perceptual (VGG feature) loss gives more realistic, less smoothed images than v2",
          pairs=(("v3", "v2"),), expect=(("perception", "a"),)),
    Claim("the GAN stage trades PSNR for perceptual quality", kind=KIND_CONTROL,
          expect=(("distortion", "b"), ("perception", "a"))),
    Claim("a relativistic discriminator (RaGAN, its proposed next step) improves perceptual quality over v3",
          pairs=(("ragan", "v3"),), expect=(("perception", "a"),)),
    Claim("ESRGAN's RRDB generator (the step after that) improves perceptual quality over RaGAN",
          pairs=(("esrgan", "ragan"),), expect=(("perception", "a"),)),
)


def _row(rows: dict, comparison: str, dataset: str, metric: str | None) -> dict | None:
    return rows.get((comparison, dataset, metric)) if metric else None


def _outcome(results: list[tuple[str, str]]) -> str:
    """A claim's outcome from its (state, expected side) pairs: only adjusted verdicts count."""
    agree = sum(1 for state, side in results if state == f"{side}-better")
    oppose = sum(1 for state, side in results if state in ("a-better", "b-better") and state != f"{side}-better")
    tested = sum(1 for state, _ in results if state in ("a-better", "b-better", "zero"))
    if not tested:
        return "not tested"
    if oppose:
        return "mixed" if agree else "contradicted"
    if agree == tested:
        return "supported"
    return "partly supported" if agree else "not shown"


def claim_sentence(claim: Claim, study: pl.DataFrame, datasets: list[str], perception: dict[str, str | None], *,
                   adjusted: bool) -> str:
    """One sentence: the claim, its outcome from the adjusted verdicts, and each verdict it rests on."""
    rows = {(r["comparison"], r["dataset"], r["metric"]): r for r in study.iter_rows(named=True)}
    comps = list(dict.fromkeys(
        (r["comparison"], r["kind"]) for r in study.iter_rows(named=True)
        if (claim.kind is not None and r["kind"] == claim.kind) or (r["a"], r["b"]) in claim.pairs))
    if not comps and claim.kind == KIND_CONTROL:
        return (f"The study claims {claim.text}: not tested (these results have no equal-budget control; the GAN "
                "stage against its pretraining adds generator updates, so it cannot separate the adversarial term "
                "from more training).")
    if not comps:
        return f"The study claims {claim.text}: not tested (these results have no such comparison)."
    if not adjusted:  # the older table's verdicts come from unadjusted intervals: none of them is used
        return f"The study claims {claim.text}: no adjusted verdict (this older study table has none)."
    counted: list[tuple[str, str]] = []
    parts, caveats = [], []
    for comparison, kind in comps:
        flags = list(dict.fromkeys(f for (c, _, _), r in rows.items() if c == comparison for f in _flags(r)))
        unequal = any(f.startswith("unequal budget") for f in flags)
        phrases = []
        for role, side in claim.expect:
            for dataset in datasets:
                metric = "psnr" if role == "distortion" else perception.get(dataset)
                r = _row(rows, comparison, dataset, metric)
                if metric is None:
                    phrases.append(f"{dataset}: no perception metric measured")
                    continue
                if r is None:
                    phrases.append(f"{dataset} {_name(metric)} not computed")
                    continue
                verdict = assess(r, adjusted=adjusted)
                phrases.append(f"{dataset} {_name(metric)} {verdict.short}")
                # A version step on unequal budgets measures the budget too: never counted as a version effect.
                if not (unequal and kind == KIND_STEP):
                    counted.append((verdict.state, side))
        note = ""
        if unequal and kind == KIND_STEP:
            note = " [unequal budget: not a version effect]"
        elif unequal:
            note = " [unequal budget by construction: the GAN stage adds generator updates]"
        if any(f == "selected on test data" for f in flags):
            note += " [selected on test data]"
        parts.append(f"{comparison}: " + ", ".join(phrases) + note)
        if unequal and kind == KIND_STEP:
            caveats.append(comparison)
    outcome = _outcome(counted)
    if outcome == "not tested" and all(not _has_interval(r) for r in rows.values() if r["n"]):
        outcome = "not tested (one seed: no seed-level interval)"
    elif outcome == "not tested" and caveats:
        outcome = "not tested as a version effect (unequal budget)"
    sides = claim.pairs[0] if len(claim.pairs) == 1 else (
        "the GAN stage", "its control" if claim.kind == KIND_CONTROL else "its pretraining")
    used = sorted({_name(m) for m in perception.values() if m})
    perceived = used[0] if len(used) == 1 else "perception"
    by_side: dict[str, list[str]] = {}
    for role, side in claim.expect:
        by_side.setdefault(sides[0] if side == "a" else sides[1], []).append("PSNR" if role == "distortion"
                                                                           else perceived)
    expected = " and ".join(f"{who} better on {' and on '.join(what)}" for who, what in by_side.items())
    return f"The study claims {claim.text} (expected {expected}): {outcome}; " + "; ".join(parts) + "."


def claims(study: pl.DataFrame, datasets: list[str], perception: dict[str, str | None], *,
           adjusted: bool) -> list[str]:
    return [claim_sentence(c, study, datasets, perception, adjusted=adjusted) for c in STUDY_CLAIMS]


def stability_finding(profile: pl.DataFrame) -> list[str]:
    """The stability claim (medium → good → stable), answered descriptively: it has no interval."""
    gan = profile.filter((pl.col("stage") == schema.STAGE_GAN) & ~pl.col("version").str.ends_with(dose.CONTROL_SUFFIX))
    if not gan.height:  # (a control has no discriminator: nothing to be stable)
        return []
    shares = ", ".join(f"{r['version']} {_pct(r['collapse_share'])}" for r in gan.iter_rows(named=True))
    gap = gan["collapse_gap"][0]
    stops = [f"{r['version']} {r['divergence_stops']} of {(r['n_trials'] or 0) + (r['failed'] or 0)}"
             for r in gan.iter_rows(named=True) if r["divergence_stops"]]
    drifts = ", ".join(f"{r['version']} {_num(r['psnr_drift'], 'psnr', sign=True)} dB"
                       for r in gan.iter_rows(named=True) if _finite(r["psnr_drift"]))
    return [f"The study claims GAN training grows more stable from v1 to v3 (medium → good → stable): measured, not "
            f"tested (no interval); share of GAN-stage reports with a D gap above {gap:g}: {shares}; "
            + (f"divergence stops: {', '.join(stops)}" if stops else "no divergence stops")
            + (f"; PSNR drift over the GAN stage: {drifts}." if drifts else ".")]


def _families(study: pl.DataFrame) -> str:
    counts = []
    for metric in METRIC_NAMES:
        part = study.filter((pl.col("metric") == metric) & pl.col("p_holm").is_finite())
        if part.height:
            counts.append(f"{plural(part.height, 'test')} for {METRIC_NAMES[metric]}")
    return ", ".join(counts)


def protocol(study: pl.DataFrame, *, adjusted: bool, one_seed: bool) -> str:
    """How to read the section: the unit, what an interval includes, the family, what a verdict means."""
    level = study["ci_level"].drop_nulls()
    level_text = f"{level[0]:.0%}" if level.len() else "the stated"
    if not adjusted:
        return ("Protocol of this older study table: paired differences a − b over (seed, image) pairs with a "
                f"{level_text} percentile-bootstrap interval, with no adjustment for the many comparisons; it has no "
                "adjusted verdicts, so this section gives none (the intervals are shown as they were computed).")
    families = _families(study)
    text = ("How to read the verdicts: the unit of replication is the training seed (each version is trained once "
            "per seed and scored on every image), and a − b is paired by seed and image. Each interval is a "
            f"{level_text} interval for the mean difference that includes the sources of variation named below; it is "
            "shown raw, not adjusted. The p-values of each metric's family (every consecutive-version comparison, "
            "every GAN stage against its pretraining and against its equal-budget control, every ladder arm against "
            "its 0 arm and the ladder's trend, on all datasets"
            + (f": {families}" if families else "") + ") are Holm-adjusted (p_holm), and only they give verdicts: "
            f"\u201ca better\u201d or \u201cb better\u201d means p_holm < {ALPHA:g}; \u201cnot distinguishable\u201d "
            "means this study could not tell the two apart, not that they are equal (MDD is the smallest difference it "
            "would detect with 80 % power). P(improve) is the chance that a random seed of a beats a random seed of b "
            "on the dataset mean (Agarwal et al. 2021). A comparison on unequal budgets (generator updates differing "
            "by more than 1 %) measures the budget and the recipe together and is never read as a version effect.")
    if one_seed:
        text += " With one training seed no seed-level interval exists: none is drawn and no verdict is given."
    return text


def variance_line(study: pl.DataFrame, *, present: frozenset[str]) -> str:
    """One line: which sources of variation each interval includes (study.parquet's variance_sources)."""
    if "variance_sources" not in present:
        return ("Sources of variation in each interval: not recorded (this study.parquet has no variance_sources "
                "column); its bootstrap resampled seeds and images.")
    by_source: dict[str, list[str]] = {}
    for r in study.filter(pl.col("n") > 0).iter_rows(named=True):
        by_source.setdefault(r["variance_sources"] or "not recorded", [])
        if r["comparison"] not in by_source[r["variance_sources"] or "not recorded"]:
            by_source[r["variance_sources"] or "not recorded"].append(r["comparison"])
    if not by_source:
        return "Sources of variation: no interval was computed."
    if len(by_source) == 1:
        return f"Each interval includes: {next(iter(by_source))}."
    return "Each interval includes: " + "; ".join(f"{source} ({', '.join(comps)})"
                                                 for source, comps in by_source.items()) + "."


def _size_words(trials: pl.DataFrame) -> set[str]:
    """The reduced sizes the trials' presets were built at, from their config names' size suffixes."""
    words = set()
    for value in trials["config_json"].drop_nulls().to_list():
        try:
            name = str(json.loads(value).get("name", ""))
        except (json.JSONDecodeError, AttributeError):
            continue
        suffix = next((s for s in result_rows.SIZE_SUFFIXES if name.endswith(s)), None)
        if suffix is None or suffix == "-paper":
            continue
        words.add(legacy.RENAMED_SIZE_SUFFIXES.get(suffix, suffix).removeprefix("-"))  # "-small" is today's cpu
    return words


def untested(profile: pl.DataFrame, trials: pl.DataFrame, versions: pl.DataFrame, *,
             perception: dict[str, str | None], present: frozenset[str]) -> list[str]:
    """What the original study claimed that this run could not test, and why."""
    out = []
    flagged = [r["version"] for r in profile.iter_rows(named=True) if UNTRAINED_VGG in json_list(r["flags"])]
    if flagged:
        out.append(f"Perceptual loss: {', '.join(flagged)} used untrained (random) VGG19 features (flag "
                   f"{UNTRAINED_VGG}), because no ImageNet weights were available. The study's claim that a "
                   "feature loss gives less smoothed, more realistic textures is not tested by this run.")
    used = set(perception.values()) - {None}
    if not used:
        out.append("Perceptual quality: no perception metric was measured (see Missing metrics), so nothing here "
                   "measures the perception side of the PSNR–perception trade-off; only the visual crops show it.")
    elif "lpips" not in used:
        out.append(f"Perceptual quality is measured by NIQE alone (no-reference, {direction('niqe')}; "
                   "LPIPS was not measured: see Missing metrics): NIQE scores how natural an image looks without "
                   "its HR, not how faithful it is to it.")
    missing = [v for v in STUDY_ORDER if v not in set(profile["version"].to_list())]
    if missing:
        out.append(f"Not run here: {', '.join(missing)}.")
    single = [r for r in profile.iter_rows(named=True)
              if r["stage"] != schema.STAGE_BASELINE and len(json_list(r["seeds"])) < 2]
    shared = [r["version"] for r in single if r["stage"] == schema.STAGE_PRETRAIN]
    if shared and "variance_sources" not in present:
        out.append(f"One pretraining run per generator, shared by every seed ({', '.join(shared)}): the intervals "
                   "of the GAN stages against it include the GAN stage's seed-to-seed variation, not the "
                   "pretraining's.")
    single_gan = [r["version"] for r in single if r["stage"] != schema.STAGE_PRETRAIN]
    if single_gan:
        out.append(f"One seed only for {', '.join(single_gan)}: no seed-level interval exists for them, so none is "
                   "drawn and their comparisons have no verdict.")
    sizes = _size_words(trials)
    if sizes:
        out.append(f"Model size and training length: reduced presets ({', '.join(sorted(sizes))}: fewer blocks and "
                   "features, short runs). The study's observations concern full-size models trained for tens of "
                   "epochs; this run tests the direction of the effects at a small scale only.")
    gan = profile.filter(pl.col("stage") == schema.STAGE_GAN)
    for column, what in (("patch_size", "patch size"), ("train_data", "training data")):
        values = set(gan[column].drop_nulls().to_list())
        if gan.height > 1 and len(values) == 1:
            value = values.pop()
            shown = f"{value}×{value}" if column == "patch_size" else value
            out.append(f"The {what} is the same for every version here ({shown}), so the study's change of "
                       f"{what} between versions is not tested.")
    return out


def method(study: pl.DataFrame, *, adjusted: bool) -> str:
    if not study.height:
        return "no paired comparison (fewer than two versions of the study)"
    r = study.row(0, named=True)
    level = f"{r['ci_level']:.0%}" if _finite(r["ci_level"]) else "?"
    if adjusted:
        methods = study["method"].drop_nulls().unique(maintain_order=True).to_list()
        return (f"Paired differences a − b; {level} intervals: {'; '.join(methods) or 'method not recorded'}. "
                "Each cell: the mean difference [raw interval], the Holm-adjusted verdict, P(improve) and the "
                "minimum detectable difference (MDD, 80 % power).")
    resamples = f"{r['n_resamples']:,} resamples" if r.get("n_resamples") is not None else "resamples not recorded"
    seed = f" (seed {r['bootstrap_seed']})" if r.get("bootstrap_seed") is not None else ""
    return (f"Paired differences a − b over (image, seed) pairs; {level} percentile bootstrap interval, {resamples}"
            f"{seed}, drawing seeds and images with replacement (two-level); not adjusted for multiplicity.")


def _name(metric: str) -> str:
    """A metric as a claim names it: "NIQE (no-reference)" for a no-reference metric, else its name."""
    return METRIC_NAMES.get(metric, metric) + ("" if getattr(schema.METRICS.get(metric), "full_reference", True)
                                               else " (no-reference)")
