"""Read and write the tables of a results folder (`results.schema`), atomically and with clear errors.

Writers (benchmarks.evaluate, harness.sweeps.collect) call `write_results`; readers (reports) call `read_table`
and `read_json`. A file that is missing, truncated or of the wrong shape raises `ResultsError` naming it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from results import schema


class ResultsError(ValueError):
    """A results file that cannot be read or written; the message names the file and the problem."""


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`: readers (and a crash
    half-way) see the old file or the new one, never a truncated one."""
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise ResultsError(f"{path}: cannot be written ({err.strerror or err})") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a quota: the previous file (if any) is untouched
        tmp.unlink(missing_ok=True)
        kept = "the previous file is unchanged" if path.exists() else "nothing was written"
        raise ResultsError(f"{path}: could not be written ({err.strerror or err}); {kept}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, payload: Any) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str, allow_nan=True)
    return atomic_write(path, lambda p: p.write_text(text))


def _present(path: Path, required: bool) -> bool:
    if not path.exists() and required:
        raise ResultsError(f"{path}: results file missing")
    return path.exists()


def read_json(path: str | Path, *, required: bool = True) -> Any:
    path = Path(path)
    if not _present(path, required):
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: not a readable JSON file ({err})") from err


def write_table(path: str | Path, frame: pl.DataFrame) -> Path:
    return atomic_write(path, lambda p: frame.write_parquet(p))


def read_table(path: str | Path, columns: dict[str, str] | None = None, *, required: bool = True,
               unique: Sequence[str] = ()) -> pl.DataFrame | None:
    """A parquet table; with `columns`, conformed to them (missing ones become nulls, extras are kept).

    With `unique` (e.g. `("trial_id",)` for trials.parquet), two rows with the same values in those columns are
    an error naming the file and the repeated key: a table that lists a trial twice contradicts itself, and
    nothing downstream should count it twice."""
    path = Path(path)
    if not _present(path, required):
        return None
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise ResultsError(f"{path}: not a readable parquet file ({err})") from err
    if columns is not None:
        target = schema.polars_schema(columns)
        try:
            frame = frame.with_columns(
                [pl.lit(None, dtype=kind).alias(name) for name, kind in target.items() if name not in frame.columns]
                + [pl.col(name).cast(kind) for name, kind in target.items() if name in frame.columns]
            )
        except pl.exceptions.PolarsError as err:
            raise ResultsError(f"{path}: a column has the wrong type ({err})") from err
    if unique:
        _check_unique(path, frame, tuple(unique))
    return frame


def _check_unique(path: Path, frame: pl.DataFrame, key: tuple[str, ...]) -> None:
    absent = [name for name in key if name not in frame.columns]
    if absent:
        raise ResultsError(f"{path}: no column {', '.join(absent)} (needed to tell its rows apart)")
    repeated = frame.group_by(list(key)).len().filter(pl.col("len") > 1).sort(list(key))
    if repeated.height:
        shown = ", ".join("/".join(str(v) for v in row[:-1]) + f" ({row[-1]}x)"
                          for row in repeated.head(5).iter_rows())
        more = f" and {repeated.height - 5} more" if repeated.height > 5 else ""
        raise ResultsError(f"{path}: duplicate {'/'.join(key)}: {shown}{more}; each must appear once")


def check_writable(folder: str | Path) -> Path:
    """Create `folder` if needed and prove a file can be written there, before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ResultsError(f"{folder}: results folder is not writable ({err.strerror or err})") from err
    return folder


def write_results(folder: str | Path, *, scores: pl.DataFrame, summary: pl.DataFrame, run: dict,
                  trials: pl.DataFrame | None = None, history: pl.DataFrame | None = None) -> Path:
    """Write scores, summary (parquet + JSON), run.json and, when given, trials and history."""
    folder = check_writable(folder)
    write_table(folder / schema.SCORES_FILE, scores)
    write_table(folder / schema.SUMMARY_FILE, summary)
    write_json(folder / schema.SUMMARY_JSON, summary.to_dicts())
    write_json(folder / schema.RUN_FILE, run)
    if trials is not None:
        write_table(folder / schema.TRIALS_FILE, trials)
    if history is not None:
        write_table(folder / schema.HISTORY_FILE, history)
    return folder
