"""Build the HTML report of a results folder: `python -m reports.build RESULTS_DIR [--out DIR]`.

Reads the files named in `results.schema` with polars (never harness, Ray or torch) and writes a folder
whose `index.html` works offline from disk: plotly.js is copied next to it once, image crops are PNG files
beside it, and every user-derived string goes through Jinja2's autoescaping. A study's folder (the tables of
`results.study.compute_study`) gets a "Study" section at the top (`reports.study_section`). A metric that is
missing is said once, near the top, with its reason; the perception axis is LPIPS where it was measured, else
NIQE. An unreadable or malformed results file, a table that lists a key twice (`reports.load`), or an output
folder that cannot be written, stops the build with a `ResultsError` naming the file (the CLI prints it and
exits with status 2); a summary.parquet that disagrees with scores.parquet is recomputed from the scores, and
the page says so.

The page is assembled here; its parts live in `reports.overview` (missing metrics, the perception axis, the summary
paragraph), `reports.tables`, `reports.charts`, `reports.crops` and the study's `reports.study_section`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import jinja2
import plotly
import plotly.offline

from reports import figures
from reports.charts import charts
from reports.crops import CROP_DISPLAY, safe_name, visual_comparisons
from reports.load import Results, load_results
from reports.overview import auto_summary, missing_metrics, perception_metrics
from reports.pareto_section import pareto_section
from reports.study_section import StudySection, study_section
from reports.tables import image_score_rows, run_metadata, summary_table
from reports.text import METRIC_NAMES
from results import io, schema

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


def _write_plotlyjs(out_dir: Path) -> str:
    name = f"plotly-{safe_name(plotly.offline.get_plotlyjs_version(), 20)}.min.js"
    target = out_dir / name
    script = plotly.offline.get_plotlyjs()
    if not target.exists() or target.stat().st_size != len(script.encode()):
        target.write_text(script, encoding="utf-8")
    return name


def study(results: Results, perception: dict[str, str | None] | None = None) -> StudySection | None:
    return study_section(results.study, results.study_versions, results.study_profile, results.trials,
                         results.datasets, present=results.present.get(schema.STUDY_FILE),
                         perception=perception if perception is not None else perception_metrics(results),
                         metrics=results.metrics, dose=results.study_dose)


def build_report(results_dir: Path | str, out_dir: Path | str | None = None) -> Path:
    """Write the report of `results_dir` to `out_dir` (default `results_dir/report`); returns index.html.

    Raises `results.io.ResultsError` (naming the file) for an unreadable or malformed results file and for an
    output folder that cannot be written."""
    results = load_results(Path(results_dir))
    default = (results.root / schema.REPORT_INDEX).parent
    out = io.check_writable(Path(out_dir) if out_dir is not None else default)
    try:
        return _build(results, out)
    except OSError as err:  # a full disk, or permissions changed under us
        where = err.filename or out
        raise io.ResultsError(f"{where}: cannot write the report ({err.strerror or err})") from err


def _build(results: Results, out: Path) -> Path:
    perception = perception_metrics(results)
    drawn = charts(results, perception)
    trials = list(results.trials.iter_rows(named=True))
    page = _environment().get_template("report.html").render(
        title=f"enhance-this report: {results.root.name}",
        study=study(results, perception),
        pareto=pareto_section(results.root),  # a Pareto search's front (reports.pareto_section), else None
        missing=missing_metrics(results),
        problems=results.problems,
        plotly_js=_write_plotlyjs(out),
        plotly_template=figures.template_json(),
        summary=summary_table(results),
        metrics=results.metrics,
        metric_names=METRIC_NAMES,
        higher_is_better=schema.HIGHER_IS_BETTER,
        paragraph=auto_summary(results),
        planes=drawn.planes,
        curves=drawn.curves,
        trial_curves=drawn.trials,
        comparisons=visual_comparisons(results, out),
        crop_display=CROP_DISPLAY,
        image_rows=image_score_rows(results),
        meta=run_metadata(results),
        failed=[t for t in trials if t["status"] == "failed"],
        stopped=[t for t in trials if t["status"] == "stopped"],
        has_history=results.history is not None,
    )
    index = out / Path(schema.REPORT_INDEX).name
    io.atomic_write(index, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    log.info("report written to %s", index)
    return index


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the HTML report of a results folder.")
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: RESULTS_DIR/report)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        index = build_report(args.results_dir, args.out)
    except io.ResultsError as err:
        parser.exit(2, f"error: {err}\n")
    print(index)


if __name__ == "__main__":
    main()
