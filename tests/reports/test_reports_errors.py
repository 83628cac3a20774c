"""Bad results folders and unwritable outputs: `python -m reports.build` names the file and exits 2, no traceback."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import polars as pl
import pytest

from reports import build
from results import io, schema


def _copy(results_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    shutil.copytree(results_dir, folder, ignore=shutil.ignore_patterns("report"))
    return folder


def _cli(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    """`python -m reports.build FOLDER ...`, its `main` called in this process (an exit status, its output; an
    exception it does not turn into an error message fails the test, as a traceback would)."""
    argv = [str(folder), *extra]
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            build.main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["reports.build", *argv], code, out.getvalue(), err.getvalue())


def _assert_clear_error(done: subprocess.CompletedProcess, path: Path, words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert str(path) in done.stderr and words in done.stderr, done.stderr


@pytest.mark.parametrize("name", [schema.TRIALS_FILE, schema.SCORES_FILE, schema.HISTORY_FILE, schema.STUDY_FILE])
def test_malformed_parquet_names_the_file(study_results: Path, tmp_path: Path, name: str) -> None:
    folder = _copy(study_results, tmp_path)
    path = folder / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated
    _assert_clear_error(_cli(folder), path, "not a readable parquet file")


def test_not_parquet_at_all(results_dir: Path, tmp_path: Path) -> None:
    folder = _copy(results_dir, tmp_path)
    (folder / schema.SUMMARY_FILE).write_text("trial_id,dataset\nx,Set5\n")
    _assert_clear_error(_cli(folder), folder / schema.SUMMARY_FILE, "not a readable parquet file")


@pytest.mark.parametrize("text", ["{\"kind\": \"sweep\", ", "[1, 2]", "\xff\xfe"])
def test_corrupt_run_json_names_the_file(results_dir: Path, tmp_path: Path, text: str) -> None:
    folder = _copy(results_dir, tmp_path)
    (folder / schema.RUN_FILE).write_bytes(text.encode("latin-1"))
    _assert_clear_error(_cli(folder), folder / schema.RUN_FILE, "JSON")


def test_corrupt_summary_json_is_not_read(results_dir: Path, tmp_path: Path) -> None:
    """summary.json is summary.parquet for JSON readers; the report reads the parquet, so it still builds."""
    folder = _copy(results_dir, tmp_path)
    (folder / schema.SUMMARY_JSON).write_text("{broken")
    assert _cli(folder).returncode == 0


@pytest.mark.parametrize(("name", "column"), [(schema.TRIALS_FILE, "trial_id"), (schema.SCORES_FILE, "dataset"),
                                              (schema.STUDY_FILE, "ci_low")])
def test_missing_required_column_names_file_and_column(study_results: Path, tmp_path: Path, name: str,
                                                       column: str) -> None:
    folder = _copy(study_results, tmp_path)
    path = folder / name
    pl.read_parquet(path).drop(column).write_parquet(path)
    _assert_clear_error(_cli(folder), path, f"required column(s) missing: {column}")


def test_wrongly_typed_column_names_the_file(results_dir: Path, tmp_path: Path) -> None:
    folder = _copy(results_dir, tmp_path)
    path = folder / schema.SCORES_FILE
    pl.read_parquet(path).with_columns(pl.lit("high").alias("psnr")).write_parquet(path)
    _assert_clear_error(_cli(folder), path, "wrong type")


def test_missing_folder_and_missing_trials(tmp_path: Path) -> None:
    _assert_clear_error(_cli(tmp_path / "nowhere"), tmp_path / "nowhere", "no such directory")
    (tmp_path / "empty").mkdir()
    _assert_clear_error(_cli(tmp_path / "empty"), tmp_path / "empty" / schema.TRIALS_FILE, "missing")


def test_output_under_a_file_names_the_folder(results_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _assert_clear_error(_cli(results_dir, "--out", str(blocker / "report")), blocker / "report", "not writable")


def _without_root_override() -> list[str]:
    """A command prefix under which file permissions apply: root normally writes into read-only folders, so
    drop its DAC-override capabilities (util-linux `setpriv`)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.parametrize("locked", ["out", "results"])
def test_read_only_output_folder_names_the_folder(results_dir: Path, tmp_path: Path, locked: str) -> None:
    """A read-only --out folder, or a read-only results folder (the default report/ cannot be made in it)."""
    folder = _copy(results_dir, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    target = out if locked == "out" else folder
    target.chmod(0o555)
    try:
        argv = [*_without_root_override(), sys.executable, "-m", "reports.build", str(folder)]
        argv += ["--out", str(out)] if locked == "out" else []
        done = subprocess.run(argv, capture_output=True, text=True)
    finally:
        target.chmod(0o755)
    _assert_clear_error(done, out if locked == "out" else folder / "report", "not writable")


def test_full_disk_during_the_build_names_the_file(results_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def full(out_dir: Path) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out_dir / "plotly.min.js"))

    monkeypatch.setattr(build, "_write_plotlyjs", full)
    with pytest.raises(io.ResultsError, match="plotly.min.js: cannot write the report"):
        build.build_report(results_dir, tmp_path / "report")
    assert not (tmp_path / "report" / "index.html").exists()


def test_stops_json_is_not_needed_by_the_report(study_results: Path, tmp_path: Path) -> None:
    folder = _copy(study_results, tmp_path)
    (folder / schema.STOPS_FILE).write_text(json.dumps(["not", "a", "mapping"]))
    assert _cli(folder).returncode == 0  # the study read it when computing; the report reads the study tables


@pytest.mark.parametrize(("name", "key"), [(schema.TRIALS_FILE, "trial_id"),
                                           (schema.SCORES_FILE, "trial_id/dataset/image"),
                                           (schema.SUMMARY_FILE, "trial_id/dataset"),
                                           (schema.STUDY_FILE, "comparison/dataset/metric")])
def test_a_table_that_lists_a_key_twice_names_the_file(study_results: Path, tmp_path: Path, name: str,
                                                       key: str) -> None:
    """A trial (or an image, a comparison) listed twice would be counted twice: an error, not a report."""
    folder = _copy(study_results, tmp_path)
    path = folder / name
    frame = pl.read_parquet(path)
    pl.concat([frame, frame.head(1)]).write_parquet(path)
    _assert_clear_error(_cli(folder), path, f"duplicate {key}")


def test_a_summary_that_disagrees_with_the_scores_is_recomputed_and_said(results_dir: Path, tmp_path: Path) -> None:
    folder = _copy(results_dir, tmp_path)
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    summary = pl.read_parquet(folder / schema.SUMMARY_FILE)
    target = (pl.col("trial_id") == "trial_001") & (pl.col("dataset") == "Set5")
    wrong = summary.with_columns(pl.when(target).then(pl.col("psnr") + 3.0).otherwise(pl.col("psnr")).alias("psnr"))
    wrong = wrong.filter(~((pl.col("trial_id") == "trial_000") & (pl.col("dataset") == "Set14")))  # a row lost
    wrong.write_parquet(folder / schema.SUMMARY_FILE)
    page = build.build_report(folder).read_text()
    box = page[page.index('id="problems-found"'):page.index("</div>", page.index('id="problems-found"'))]
    assert str(folder / schema.SUMMARY_FILE) in box and str(folder / schema.SCORES_FILE) in box
    assert "on 2 (trial, dataset) row(s)" in box and "trial_001/Set5 psnr" in box
    assert "trial_000/Set14: no summary row" in box
    # the table shows the means of the per-image scores, for both rows
    for trial, dataset in (("trial_001", "Set5"), ("trial_000", "Set14")):
        mean = scores.filter((pl.col("trial_id") == trial) & (pl.col("dataset") == dataset))["psnr"].mean()
        row = re.search(rf'<tr class="trial-row[^"]*">\s*<td class="text">[^<]*#{int(trial[-1])}</td>(.*?)</tr>',
                        page, re.S)
        assert row and f">{mean:.2f}<" in row.group(1)
    wrong_value = wrong.filter(target)["psnr"][0]
    assert f">{wrong_value:.2f}<" not in page.split('id="summary-table"')[1].split("</table>")[0]


def test_a_summary_that_agrees_says_nothing(results_dir: Path, tmp_path: Path) -> None:
    page = build.build_report(results_dir, tmp_path / "report").read_text()
    assert 'id="problems-found"' not in page


def test_without_a_summary_the_means_come_from_the_scores(results_dir: Path, tmp_path: Path) -> None:
    folder = _copy(results_dir, tmp_path)
    (folder / schema.SUMMARY_FILE).unlink()
    page = build.build_report(folder).read_text()
    assert 'id="problems-found"' not in page  # nothing contradicts: there is no summary to disagree
    scores = pl.read_parquet(folder / schema.SCORES_FILE)
    mean = scores.filter((pl.col("trial_id") == "trial_000") & (pl.col("dataset") == "Set5"))["psnr"].mean()
    assert f">{mean:.2f}<" in page.split('id="summary-table"')[1].split("</table>")[0]
