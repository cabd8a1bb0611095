"""Snapshot files across runs and jobs: a day left half-applied, a file delivered again, files landing together.

Found by review: a 340B day whose apply failed after some of its eight tables had committed was left so when
another file was applied next (a job per file, or a `snapshot load` by hand); the next day's diff against latest
then left latest and history apart for good. A corrected export re-uploaded under the name already applied was
passed over as applied already. The snapshot-load job applied the file it was started for even when an older
one had landed beside it, which was then refused as older and lost.
"""

from __future__ import annotations

import csv
import importlib.util
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

import lakehouse.apply.snapshot as snapshot_apply
from lakehouse.apply.snapshot import SnapshotRefused, already_applied, apply_snapshot, log_path
from lakehouse.config import Config
from lakehouse.sources.opais_synth import write_export
from lakehouse.sources.snapshot import file_digest
from lakehouse.tables import table_paths
from tests.test_snapshot_machine import feed_config

ROOT = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    """Stands in for a crash half-way through a snapshot."""


def opais_config(root: Path) -> Config:
    return Config.model_validate(
        {
            "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "snapshots": {"opais": {"kind": "opais", "path": str(root / "landing" / "opais")}},
        }
    )


def write_people(folder: Path, day: date, rows: dict[str, str], *, suffix: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"people_{day.isoformat()}{suffix}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "name"], *sorted(rows.items())])
    return path


def log_entries(spark, config: Config, feed: str) -> list[tuple[str, str, str]]:
    log = spark.read.format("delta").load(log_path(config, feed)).collect()
    return sorted((str(r.snapshot_date), r.source_file, r.status) for r in log)


def assert_latest_is_historys_present(spark, config: Config) -> None:
    for table in config.tables.values():
        paths = table_paths(config, table)
        columns = [*table.columns, "_sequence"]
        latest = spark.read.format("delta").load(paths.latest).select(*columns)
        history = spark.read.format("delta").load(paths.history)
        present = history.where(F.col("_is_current") & ~F.col("_is_deleted")).select(*columns)
        assert_df_equality(latest, present, ignore_row_order=True, ignore_nullable=True)


def fail_fourth_table(spark, config: Config, path: Path) -> None:
    """Apply `path` with the fourth table's write failing, while others are written beside it."""
    real, calls = snapshot_apply.apply_changes, []

    def failing(*args, **kwargs):
        calls.append(kwargs["table"].name)
        if len(calls) == 4:
            raise Interrupted
        return real(*args, **kwargs)

    snapshot_apply.apply_changes = failing
    try:
        with pytest.raises(Interrupted):
            apply_snapshot(spark, config, "opais", str(path))
    finally:
        snapshot_apply.apply_changes = real


@pytest.fixture
def opais_days(tmp_path):
    folder = tmp_path / "landing" / "opais"
    folder.mkdir(parents=True)
    files = []
    for day in range(3):
        path = folder / f"OPA_CE_DAILY_PUBLIC_2026-11-0{day + 1}.zip"
        write_export(path, entities=12, seed=5, day=day * 30, zip=True)  # a month of edits apart: I, U and D
        files.append(path)
    return opais_config(tmp_path), files


@pytest.mark.long  # 2-3 min; test_snapshot_machine finishes a half-applied day first too
def test_a_half_applied_day_is_finished_before_the_next_day_which_is_refused_while_its_file_is_gone(spark, opais_days):
    """Before, day 3 was diffed against a latest that only some tables had brought to day 2: a key inserted on day 2
    never reached latest, a key deleted on day 2 stayed live there. While day 2's file is gone, day 3 is refused
    naming it (and kept pending), writing nothing; landed again, the next run finishes day 2 first, then day 3.
    One lake for both (each half-applied lake takes minutes to build)."""
    config, files = opais_days
    apply_snapshot(spark, config, "opais", str(files[0]))
    fail_fourth_table(spark, config, files[1])
    half_applied = log_entries(spark, config, "opais")
    kept = files[1].read_bytes()
    files[1].unlink()
    with pytest.raises(SnapshotRefused) as refused:
        apply_snapshot(spark, config, "opais", str(files[2]))
    message = str(refused.value)
    assert "OPA_CE_DAILY_PUBLIC_2026-11-02.zip (2026-11-02) is not finished" in message
    assert str(files[1]) in message and "land it there again" in message
    assert refused.value.day == date(2026, 11, 3)  # kept pending, like the other refusals
    assert log_entries(spark, config, "opais") == half_applied  # nothing written: day 2 is still half-applied

    files[1].write_bytes(kept)
    result = apply_snapshot(spark, config, "opais", str(files[2]))
    assert result.status == "applied"
    assert_latest_is_historys_present(spark, config)
    assert "finished OPA_CE_DAILY_PUBLIC_2026-11-02.zip (2026-11-02) first" in result.detail
    assert [e for e in log_entries(spark, config, "opais") if e[2] == "applied"] == [
        ("2026-11-01", "OPA_CE_DAILY_PUBLIC_2026-11-01.zip", "applied"),
        ("2026-11-02", "OPA_CE_DAILY_PUBLIC_2026-11-02.zip", "applied"),
        ("2026-11-03", "OPA_CE_DAILY_PUBLIC_2026-11-03.zip", "applied"),
    ]


def test_a_corrected_file_under_an_applied_name_is_refused_naming_both_digests(spark, tmp_path):
    config = feed_config(tmp_path)
    folder = tmp_path / "landing" / "people"
    day = date(2026, 11, 23)
    path = write_people(folder, day, {"1": "Ann", "2": "Bo"})
    first = apply_snapshot(spark, config, "people", str(path))
    assert first.status == "applied"
    applied_digest = file_digest(str(path))
    write_people(folder, day, {"1": "Ann", "2": "Bob"})  # corrected, re-uploaded under the same key
    corrected_digest = file_digest(str(path))
    with pytest.raises(SnapshotRefused) as refused:
        apply_snapshot(spark, config, "people", str(path))
    message = str(refused.value)
    assert applied_digest in message and corrected_digest in message
    assert refused.value.day == day
    assert already_applied(config, "people", str(path)) is None  # the command without Spark does not pass it either
    write_people(folder, day, {"1": "Ann", "2": "Bo"})  # the very file again
    assert apply_snapshot(spark, config, "people", str(path)).status == "already_applied"
    assert already_applied(config, "people", str(path)).status == "already_applied"


def test_a_log_entry_from_before_digests_matches_any_content(spark, tmp_path):
    config = feed_config(tmp_path)
    folder = tmp_path / "landing" / "people"
    path = write_people(folder, date(2026, 11, 23), {"1": "Ann"})
    apply_snapshot(spark, config, "people", str(path))
    spark.sql(f"UPDATE delta.`{log_path(config, 'people')}` SET digest = NULL")
    write_people(folder, date(2026, 11, 23), {"1": "Bo"})
    assert apply_snapshot(spark, config, "people", str(path)).status == "already_applied"


def test_a_file_dated_after_tomorrow_is_refused_naming_it(spark, tmp_path):
    config = feed_config(tmp_path)
    folder = tmp_path / "landing" / "people"
    today = datetime.now(UTC).date()
    assert apply_snapshot(spark, config, "people", str(write_people(folder, today, {"1": "A"}))).status == "applied"
    tomorrow = write_people(folder, today + timedelta(days=1), {"1": "B"})  # a zone ahead of UTC: already today
    assert apply_snapshot(spark, config, "people", str(tomorrow)).status == "applied"
    typo = write_people(folder, today + timedelta(days=30), {"1": "C"})
    with pytest.raises(SnapshotRefused, match=rf"{typo.name} is dated {today + timedelta(days=30)}, after tomorrow"):
        apply_snapshot(spark, config, "people", str(typo))


def load_job():
    spec = importlib.util.spec_from_file_location("snapshot_load_job", ROOT / "batch" / "snapshot_load.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job


def test_the_snapshot_load_job_applies_older_files_that_landed_first(spark, tmp_path):
    """Found by review: the trigger starts a job per object, and day 2's job may start first: day 1 was then
    refused as older, and lost from history."""
    config = feed_config(tmp_path)
    folder = tmp_path / "landing" / "people"
    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(4)]
    files = [write_people(folder, d, {"1": "Ann", "2": f"Bo{n}", "3": "Cy"}) for n, d in enumerate(days)]
    job = load_job()
    results = job.apply_landed(spark, config, "people", str(files[2]))
    assert [(r.file, r.status) for r in results] == [(f.name, "applied") for f in files[:3]]
    assert job.apply_landed(spark, config, "people", str(files[0]))[-1].status == "already_applied"
    results = job.apply_landed(spark, config, "people", str(files[3]))
    assert [(r.file, r.status) for r in results] == [(files[3].name, "applied")]
    assert [e[:2] for e in log_entries(spark, config, "people") if e[2] == "applied"] == [
        (str(d), f.name) for d, f in zip(days, files, strict=True)
    ]


def test_the_snapshot_load_job_passes_over_files_already_decided(spark, tmp_path):
    """A file older than the newest applied day, or refused before, is not met again: it would only be refused."""
    config = feed_config(tmp_path)
    folder = tmp_path / "landing" / "people"
    job = load_job()
    day1 = write_people(folder, date(2026, 11, 1), {"1": "Ann"})
    job.apply_landed(spark, config, "people", str(day1))
    second = write_people(folder, date(2026, 11, 1), {"1": "Bo"}, suffix="_b")  # a second file for the day
    day2 = write_people(folder, date(2026, 11, 2), {"1": "Cy"})
    results = job.apply_landed(spark, config, "people", str(day2))
    assert [(r.file, r.status) for r in results] == [(day2.name, "applied")]
    assert second.exists()


def test_a_bad_earlier_file_is_logged_refused_and_later_days_still_apply(spark, tmp_path):
    """Found by review: an earlier landed file that cannot be read (here a header and no rows) stopped the job of
    every later day on it (it raised, was never decided), so nothing new was applied until someone removed it."""
    config = feed_config(tmp_path)
    folder = tmp_path / "landing" / "people"
    job = load_job()
    day1 = write_people(folder, date(2026, 11, 1), {"1": "Ann"})
    assert job.apply_landed(spark, config, "people", str(day1))[-1].status == "applied"
    empty = folder / "people_2026-11-02.csv"
    empty.write_text("id,name\n", encoding="utf-8")  # a header and no rows: refused when read
    day3 = write_people(folder, date(2026, 11, 3), {"1": "Cy"})

    results = job.apply_landed(spark, config, "people", str(day3))

    assert [(r.file, r.status) for r in results] == [(empty.name, "refused"), (day3.name, "applied")]
    day4 = write_people(folder, date(2026, 11, 4), {"1": "Di"})
    assert [(r.file, r.status) for r in job.apply_landed(spark, config, "people", str(day4))] == [
        (day4.name, "applied")
    ]
