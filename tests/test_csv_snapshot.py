"""CMS PECOS-style CSV snapshots: NPI rules, and a two-day sequence through the snapshot apply path.

Day 1 inserts; day 2 changes one row, drops one, adds one and keeps the rest; day 2 again is a no-op;
an older file after it is refused. Each test states one behaviour on the tables after that sequence.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakehouse.apply.snapshot import SnapshotRefused, apply_snapshot
from lakehouse.config import Config
from lakehouse.runner import run_once
from lakehouse.sources.csv_snapshot import normalise_header, npi_is_valid, npi_valid
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of

HEADER = [
    "NPI",
    "Ind_PAC_ID",
    "Provider Last Name",
    "Provider First Name",
    "pri_spec",
    "City/Town",
    "State",
    "ZIP Code",
]


def with_check_digit(first9: str) -> str:
    """A valid NPI: the first nine digits plus their Luhn check digit (prefix 80840)."""
    return next(first9 + d for d in "0123456789" if npi_is_valid(first9 + d))


A, B, C, D = (with_check_digit(n) for n in ("123456789", "100000001", "100000002", "100000003"))
LEADING_ZERO = with_check_digit("012345678")  # written without its leading zero, as spreadsheets do


def test_npi_check_digit_follows_the_cms_rule():
    assert npi_is_valid("1234567893")  # the example in the CMS NPI check-digit paper
    assert not npi_is_valid("1234567890")
    assert not npi_is_valid("123456789")
    assert not npi_is_valid("12345678a3")
    assert not npi_is_valid(None)


def test_spark_npi_rule_agrees_with_python(spark):
    values = [A, B, LEADING_ZERO, "1234567890", "1234567893", "abcdefghij", "", None, "12345678901"]
    rows = spark.createDataFrame([(v,) for v in values], "npi string").withColumn("ok", npi_valid("npi")).collect()
    assert {r.npi: r.ok for r in rows} == {v: npi_is_valid(v) for v in values}


def test_headers_normalise_to_snake_case():
    assert [normalise_header(h) for h in HEADER] == [
        "npi", "ind_pac_id", "provider_last_name", "provider_first_name", "pri_spec", "city_town", "state", "zip_code",
    ]  # fmt: skip


def write(folder: Path, name: str, rows: list[list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEADER, *rows])
    return path


DAY1 = [
    [A, "111", "Lee", "Ann", "CARDIOLOGY", "BOSTON", "MA", "02134"],
    [B, "222", "Diaz", "Bo", "FAMILY PRACTICE", "AUSTIN", "TX", "73301"],
    [C, "333", "Chen", "Cy", "NEPHROLOGY", "DALLAS", "TX", "75001"],
    [LEADING_ZERO.lstrip("0"), "444", "Okafor", "Di", "RADIOLOGY", "NEWARK", "NJ", "07101"],
    ["1234567890", "555", "Bad", "Check", "ANESTHESIOLOGY", "MIAMI", "FL", "33101"],  # fails the Luhn rule
    [A, "111", "Lee", "Ann", "CARDIOLOGY", "BOSTON", "MA", "02134"],  # the same row again
    [C, "999", "Chen", "Cyrus", "NEPHROLOGY", "DALLAS", "TX", "75001"],  # same NPI, different row
]
DAY2 = [
    [A, "111", "Lee", "Ann", "CARDIOLOGY", "CAMBRIDGE", "MA", "02139"],  # moved
    [C, "333", "Chen", "Cy", "NEPHROLOGY", "DALLAS", "TX", "75001"],
    [LEADING_ZERO.lstrip("0"), "444", "Okafor", "Di", "RADIOLOGY", "NEWARK", "NJ", "07101"],
    [D, "666", "Novak", "Ed", "UROLOGY", "DENVER", "CO", "80201"],  # new; B is gone
]


def pecos_config(root: Path) -> Config:
    return Config.model_validate(
        {
            "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "snapshots": {
                "clinicians": {
                    "kind": "csv",
                    "path": str(root / "landing" / "pecos"),
                    "primary_key": ["npi"],
                    "partition_by": ["state"],
                    "npi_columns": ["npi"],
                    "columns": {
                        "npi": "string",
                        "ind_pac_id": "string",
                        "provider_last_name": "string",
                        "provider_first_name": "string",
                        "pri_spec": "string",
                        "city_town": "string",
                        "state": "string",
                        "zip_code": "string",
                    },
                }
            },
        }
    )


@pytest.fixture(scope="module")
def pecos(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("pecos")
    config = pecos_config(root)
    folder = root / "landing" / "pecos"
    day1 = apply_snapshot(
        spark, config, "clinicians", str(write(folder, "DAC_NationalDownloadableFile_2026-11-01.csv", DAY1))
    )
    day2_path = str(write(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", DAY2))
    day2 = apply_snapshot(spark, config, "clinicians", day2_path)
    again = apply_snapshot(spark, config, "clinicians", day2_path)
    older = write(folder, "DAC_NationalDownloadableFile_2026-10-31.csv", DAY1)
    with pytest.raises(SnapshotRefused) as refused:
        apply_snapshot(spark, config, "clinicians", str(older))
    paths = table_paths(config, config.tables["clinicians"])
    return {"config": config, "paths": paths, "day1": day1, "day2": day2, "again": again, "refused": refused.value}


def load(spark, path: str):
    return spark.read.format("delta").load(path)


def test_latest_holds_the_newest_snapshot(spark, pecos):
    latest = load(spark, pecos["paths"].latest).select("npi", "city_town", "state").orderBy("npi")
    expected = spark.createDataFrame(
        [(LEADING_ZERO, "NEWARK", "NJ"), (A, "CAMBRIDGE", "MA"), (C, "DALLAS", "TX"), (D, "DENVER", "CO")],
        "npi string, city_town string, state string",
    ).orderBy("npi")
    assert_df_equality(latest, expected, ignore_nullable=True)


def test_changes_of_day_two_are_one_insert_one_update_one_delete(pecos):
    (day2,) = pecos["day2"].metrics
    assert (day2.inserted, day2.updated, day2.deleted) == (1, 1, 1)
    assert day2.reconciles


def test_history_keeps_the_id304b_scd2_columns(spark, pecos):
    rows = (
        load(spark, pecos["paths"].history)
        .where(F.col("npi") == A)
        .select("city_town", "effective_stp", "expiration_stp", "current_version_flg", "change_type")
        .orderBy("effective_stp")
        .collect()
    )
    assert [tuple(r) for r in rows] == [
        ("BOSTON", datetime(2026, 11, 1), datetime(2026, 11, 2), "N", "INSERT"),
        ("CAMBRIDGE", datetime(2026, 11, 2), datetime(9999, 12, 31, 23, 59, 59), "Y", "UPDATE"),
    ]


def test_a_gone_key_expires_with_a_delete_version(spark, pecos):
    rows = load(spark, pecos["paths"].history).where(F.col("npi") == B).orderBy("effective_stp").collect()
    assert [(r.change_type, r.current_version_flg, r.provider_last_name) for r in rows] == [
        ("INSERT", "N", "Diaz"),
        ("DELETE", "Y", "Diaz"),
    ]


def test_npi_without_its_leading_zero_is_padded(spark, pecos):
    assert load(spark, pecos["paths"].latest).where(F.col("npi") == LEADING_ZERO).count() == 1


def test_invalid_npi_and_conflicting_duplicate_are_quarantined(spark, pecos):
    quarantine = load(spark, pecos["paths"].quarantine)
    reasons = sorted((r.reason, r.source_file) for r in quarantine.collect())
    assert reasons == [
        ("duplicate_key", "DAC_NationalDownloadableFile_2026-11-01.csv"),
        ("invalid_npi", "DAC_NationalDownloadableFile_2026-11-01.csv"),
    ]
    (day1,) = pecos["day1"].metrics
    assert (day1.quarantined, day1.duplicates, day1.inserted) == (2, 1, 4)
    assert day1.reconciles


def test_the_kept_row_of_a_duplicate_key_does_not_depend_on_file_order(spark, pecos):
    # "333" sorts before "999" by content, wherever the rows stood in the file.
    row = load(spark, pecos["paths"].history).where((F.col("npi") == C) & (F.col("change_type") == "INSERT")).first()
    assert row.ind_pac_id == "333"


def test_the_same_snapshot_twice_changes_nothing(pecos):
    assert pecos["again"].status == "already_applied"
    assert pecos["again"].metrics == []


def test_an_older_snapshot_after_a_newer_one_is_refused(pecos):
    message = str(pecos["refused"])
    assert "2026-10-31" in message and "older than" in message and "nothing was written" in message


def test_tables_are_partitioned_by_state(pecos):
    assert sorted(p.name for p in Path(pecos["paths"].latest).glob("state=*")) == [
        "state=CO", "state=MA", "state=NJ", "state=TX",
    ]  # fmt: skip


def test_as_of_day_one_sees_day_one(spark, pecos):
    live = as_of(spark, pecos["paths"].history, datetime(2026, 11, 1, 12)).select("npi").orderBy("npi")
    assert [r.npi for r in live.collect()] == sorted([A, B, C, LEADING_ZERO])


def test_run_applies_a_feed_oldest_first_and_logs_a_late_older_file_as_refused(spark, tmp_path):
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    for day, rows, stamp in (("2026-11-01", DAY1, 1_000), ("2026-11-02", DAY2, 2_000)):
        os.utime(write(folder, f"DAC_NationalDownloadableFile_{day}.csv", rows), (stamp, stamp))
    (first,) = run_once(spark, config)
    assert first.ok, first.error
    assert [b.batch_id for b in first.batches] == [20261101, 20261102]
    os.utime(write(folder, "DAC_NationalDownloadableFile_2026-10-30.csv", DAY1), (3_000, 3_000))
    (second,) = run_once(spark, config)
    assert second.ok and second.batches == []
    assert any("refused" in note and "older than" in note for note in second.notes)
    log = spark.read.format("delta").load(f"{config.paths.lake}/_snapshots/clinicians").collect()
    assert sorted((r.source_file[-14:-4], r.status) for r in log) == [
        ("2026-10-30", "refused"),
        ("2026-11-01", "applied"),
        ("2026-11-02", "applied"),
    ]
