"""results.io: tables and JSON written atomically; unreadable or unwritable files are errors naming them."""

from __future__ import annotations

import errno
from pathlib import Path

import polars as pl
import pytest

from results import io, rows, schema


def test_a_full_disk_keeps_the_previous_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / schema.TRIALS_FILE
    before = rows.trials_frame([rows.trial_row("bicubic", label="bicubic", status=schema.STATUS_BASELINE)])
    io.write_table(path, before)

    def full(self, file, *args, **kwargs):  # polars writes part of the file, then the disk is full
        Path(file).write_bytes(b"PAR1 half a table")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    with pytest.raises(io.ResultsError, match="No space left on device") as err:
        io.write_table(path, before)
    assert str(path) in str(err.value) and "previous file is unchanged" in str(err.value)
    monkeypatch.undo()
    assert io.read_table(path, schema.TRIAL_COLUMNS).equals(before)
    assert [p.name for p in tmp_path.iterdir()] == [schema.TRIALS_FILE]  # no temporary file left behind


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{truncated")
    with pytest.raises(io.ResultsError, match="run.json: not a readable JSON"):
        io.read_json(tmp_path / "run.json")
    (tmp_path / "scores.parquet").write_bytes(b"not parquet")
    with pytest.raises(io.ResultsError, match="scores.parquet: not a readable parquet"):
        io.read_table(tmp_path / "scores.parquet")
    with pytest.raises(io.ResultsError, match="missing"):
        io.read_table(tmp_path / "absent.parquet")
    assert io.read_table(tmp_path / "absent.parquet", required=False) is None


def test_a_column_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    pl.DataFrame({"trial_id": ["a"], "psnr": ["high"]}).write_parquet(tmp_path / "scores.parquet")
    with pytest.raises(io.ResultsError, match="wrong type"):
        io.read_table(tmp_path / "scores.parquet", schema.SCORE_COLUMNS)


def test_an_output_path_under_a_file_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(io.ResultsError, match="not writable"):
        io.check_writable(tmp_path / "file" / "results")


def test_one_trial_row_builder_for_every_writer() -> None:
    config = {"name": "v3-tiny", "loss": {"pixel_weight": 0.01, "perceptual_weight": 1.0, "adv_weight": 5e-3},
              "train": {"seed": 2, "init_from": "/runs/s/trials/pretrain-abc"}}
    row = rows.trial_row("t1", label="v3", status=schema.STATUS_OK, config=config, steps=10, wall_s=36.0, devices=2,
                         init_from="pretrain-abc")
    assert row["preset"] == "v3" and row["seed"] == 2 and row["stage"] == schema.STAGE_GAN
    assert row["device_hours"] == pytest.approx(0.02) and row["init_from"] == "pretrain-abc"
    frame = rows.trials_frame([row])
    assert list(frame.columns) == list(schema.TRIAL_COLUMNS)
    small = rows.trial_row("t2", label="v1", status=schema.STATUS_OK, config={"name": "v1-small"})
    assert small["preset"] == "v1"
    baseline = rows.trial_row("bicubic", label="bicubic", status=schema.STATUS_BASELINE, preset="bicubic")
    assert baseline["stage"] == schema.STAGE_BASELINE and baseline["config_json"] is None


def test_duplicate_ids_are_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / schema.TRIALS_FILE
    row = rows.trial_row("v3_0", label="v3", status=schema.STATUS_OK)
    rows.trials_frame([row, rows.trial_row("v2_0", label="v2", status=schema.STATUS_OK), row]).write_parquet(path)
    assert io.read_table(path, schema.TRIAL_COLUMNS).height == 3  # without the option: read as it is
    with pytest.raises(io.ResultsError, match=r"trials.parquet: duplicate trial_id: v3_0 \(2x\)") as err:
        io.read_table(path, schema.TRIAL_COLUMNS, unique=("trial_id",))
    assert str(path) in str(err.value) and "v2_0" not in str(err.value)
    rows.trials_frame([row]).write_parquet(path)
    assert io.read_table(path, schema.TRIAL_COLUMNS, unique=("trial_id",)).height == 1
    pl.DataFrame({"x": [1]}).write_parquet(path)
    with pytest.raises(io.ResultsError, match="no column trial_id"):
        io.read_table(path, unique=("trial_id",))
