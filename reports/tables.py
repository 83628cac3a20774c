"""The report's tables of trials and images: the summary table (every trial's settings and mean scores, the best
per column marked), the per-image scores, and the run's metadata (run.json, each trial's config and flags).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from reports.load import Results
from reports.text import METRIC_NAMES, MISSING, Cell, higher_is_better
from reports.text import fmt as _fmt
from results import legacy, rows, schema

# ------------------------------------------------------------------------------------------ summary table


@dataclass
class SummaryTable:
    params: list[str]
    metrics: list[str]
    columns: list[tuple[str, str]]  # (dataset, metric)
    rows: list[dict]  # {"trial": row dict, "params": [Cell], "cells": [Cell]}
    footnotes: list[str] = field(default_factory=list)


# A pretraining uses the pixel loss alone: these settings do not apply to it (left blank in its row).
PRETRAIN_UNUSED = ("perceptual_weight", "adv_weight")


def _fmt_param(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _param_cell(trial: dict, name: str) -> Cell:
    pretraining = trial["stage"] == schema.STAGE_PRETRAIN
    if pretraining and name in PRETRAIN_UNUSED:
        return Cell("", "not used: a pretraining trains with the pixel loss only")
    if pretraining and name == "preset" and not legacy.PRETRAIN_NAME.fullmatch(str(trial["preset"])):
        return Cell(trial["version"], f"recorded as preset {trial['preset']!r} in this older results folder")
    return Cell(_fmt_param(trial[name]))


def _missing_title(metric: str) -> str:
    return f"{METRIC_NAMES[metric]} not computed: see Missing metrics at the top"


def summary_table(results: Results) -> SummaryTable:
    metrics = results.metrics
    columns = [(d, m) for d in results.datasets for m in metrics]
    by_key = {(r["trial_id"], r["dataset"]): r for r in results.summary.iter_rows(named=True)}
    best: dict[tuple[str, str], float] = {}
    for dataset, metric in columns:
        values = [r[metric] for (_, d), r in by_key.items() if d == dataset and _is_number(r[metric])]
        if values:
            best[dataset, metric] = max(values) if higher_is_better(metric) else min(values)
    trials = results.trials
    params = ["preset", "pixel_weight", "perceptual_weight", "adv_weight", "seed"]
    if (trials["stage"] == schema.STAGE_PRETRAIN).any():  # a two-stage run: say which row is which
        params.insert(1, "stage")
    params += [c for c in ("g_updates", "selection") if trials[c].drop_nulls().len()] + ["status"]
    out_rows = []
    for trial in trials.iter_rows(named=True):
        cells = []
        for dataset, metric in columns:
            row = by_key.get((trial["trial_id"], dataset))
            value = row[metric] if row else None
            if _is_number(value):
                is_best = (dataset, metric) in best and value == best[dataset, metric]
                cells.append(Cell(_fmt(value, metric), best=is_best, sort=repr(float(value))))
            elif row is None:
                cells.append(Cell(MISSING, f"trial failed: {_first_line(trial['error'])}"
                                  if trial["status"] == "failed" else f"no scores for {dataset}", missing=True))
            else:
                cells.append(Cell(MISSING, _missing_title(metric), missing=True))
        out_rows.append({"trial": trial, "params": [_param_cell(trial, p) for p in params], "cells": cells})
    footnotes = []
    if any(c.missing and c.title and c.title.endswith("Missing metrics at the top") for r in out_rows
           for c in r["cells"]):
        footnotes.append(f"{MISSING} where a metric was not computed: why is said once, under Missing metrics.")
    if any(t["status"] == "failed" for t in trials.iter_rows(named=True)):
        footnotes.append(f"{MISSING} on a failed trial: it has no scores (see Failed and stopped trials).")
    if "stage" in params:
        footnotes.append("A pretraining's perceptual and adversarial weights are blank: it uses the pixel loss only.")
    return SummaryTable(params, metrics, columns, out_rows, footnotes)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------------------- per-image scores, run metadata


def image_score_rows(results: Results) -> list[dict]:
    labels = results.labels
    rows_out = []
    for r in results.scores.sort("dataset", "image", "trial_id").iter_rows(named=True):
        cells = []
        for m in results.metrics:
            if _is_number(r[m]):
                cells.append(Cell(_fmt(r[m], m), sort=repr(float(r[m]))))
            else:
                cells.append(Cell(MISSING, _missing_title(m), missing=True))
        rows_out.append({"dataset": r["dataset"], "image": r["image"],
                         "trial": labels.get(r["trial_id"], r["trial_id"]), "cells": cells})
    return rows_out


def _pretty_json(value: str | None) -> str:
    if not value:
        return ""
    try:
        return json.dumps(json.loads(value), indent=2, sort_keys=True)
    except json.JSONDecodeError:
        return value


def _show(value: object) -> str:
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(map(str, value))
    if isinstance(value, dict | list):
        return json.dumps(value, indent=1, sort_keys=True, default=str)
    return _fmt_param(value)


def _share(value: object) -> str | None:
    return f"{100 * value:.1f} %" if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value) and 0 <= value <= 1 else None


def _show_overhead(value: object) -> str:
    """run.json's `overhead`: the share of wall time outside training steps and scoring (a number or a
    mapping with a `share`)."""
    share = _share(value)
    if share is not None:
        return f"{share} of the wall time outside training steps and scoring"
    if isinstance(value, dict) and _share(value.get("share")) is not None:
        rest = {k: v for k, v in value.items() if k != "share"}
        return (f"{_share(value['share'])} of the wall time outside training steps and scoring"
                + (f"\n{_show(rest)}" if rest else ""))
    return _show(value)


# run.json keys a newer harness adds, shown when present (never required), in this order
RUN_EXTRAS = {"validation": _show, "overhead": _show_overhead, "pretrain_cache": _show,
              # the weights' sha256 a resume reads: how many, not the digests
              schema.RUN_SCORED: lambda v: (f"{len((v or {}).get('weights') or {})} models' scores, kept by a resume "
                                            "while their weights are unchanged" if isinstance(v, dict) else _show(v)),
              # the missing metrics' reasons are said once, near the top
              "metrics_missing": lambda v: "see Missing metrics, near the top" if v else _show(v)}


def run_metadata(results: Results) -> dict:
    run = results.run
    fields = [(name, _show(run.get(name))) for name in schema.RUN_FIELDS if name != "protocol"]
    fields += [(name, show(run[name])) for name, show in RUN_EXTRAS.items() if name in run]
    fields += [(k, _show(v)) for k, v in run.items() if k not in schema.RUN_FIELDS and k not in RUN_EXTRAS]
    protocol = run.get("protocol") or {}
    protocol_rows = [(str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in
                     (protocol.items() if isinstance(protocol, dict) else [("protocol", protocol)])]
    trials = []
    for t in results.trials.iter_rows(named=True):
        trials.append({"label": t["label"] or t["trial_id"], "trial_id": t["trial_id"], "status": t["status"],
                       "steps": _fmt_param(t["steps"]),
                       "wall_s": MISSING if t["wall_s"] is None else f"{t['wall_s']:.1f}",
                       "device_hours": MISSING if t["device_hours"] is None else f"{t['device_hours']:.4f}",
                       "flags": rows.json_list(t["flags"]), "config": _pretty_json(t["config_json"])})
    total = results.trials["device_hours"].drop_nulls().sum()
    warnings = []
    for t in trials:
        for flag in t["flags"]:
            warnings.append(f"{t['label']}: {flag}")
    for key, value in protocol_rows:
        if "untrained" in f"{key} {value}".lower():
            warnings.append(f"protocol {key}: {value}")
    return {"fields": fields, "protocol": protocol_rows, "trials": trials, "total_device_hours": f"{total:.4f}",
            "warnings": warnings}
