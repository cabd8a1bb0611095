"""CMS Doctors and Clinicians (PECOS) CSV snapshots: NPI rules, and a two-day sequence through the snapshot apply path.

The national file has one row per clinician, enrollment, group and practice address: a clinician with two
locations has two rows, and a clinician without a group practice has no org_pac_id (an empty key part).
Day 1 inserts; day 2 renames one clinician, closes a location, drops a solo clinician, adds one and keeps
the rest; day 2 again is a no-op; an older file after it is refused. Each test states one behaviour.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakehouse.apply.snapshot import SnapshotRefused, apply_snapshot, too_many_deletes
from lakehouse.cli import main
from lakehouse.config import Config, CsvSnapshotFeed, read_yaml
from lakehouse.demo_snapshots import write_pecos
from lakehouse.errors import InputError
from lakehouse.runner import run_once
from lakehouse.sources.csv_header import header_columns, normalise_header
from lakehouse.sources.csv_snapshot import load_csv_snapshot, npi_is_valid, npi_valid
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of

HEADER = [
    "NPI", "Ind_PAC_ID", "Ind_enrl_ID", "Provider Last Name", "Provider First Name", "pri_spec", "Facility Name",
    "org_pac_id", "City/Town", "State", "ZIP Code", "adrs_id",
]  # fmt: skip
KEY = ["npi", "ind_enrl_id", "org_pac_id", "adrs_id"]
LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"


def with_check_digit(first9: str) -> str:
    """A valid NPI: the first nine digits plus their Luhn check digit (prefix 80840)."""
    return next(first9 + d for d in "0123456789" if npi_is_valid(first9 + d))


A, B, C, D, E = (with_check_digit(n) for n in ("123456789", "100000001", "100000002", "100000003", "100000004"))
LEADING_ZERO = with_check_digit("012345678")  # written without its leading zero, as spreadsheets do
GROUP = ["CITY CARDIOLOGY", "4587965432"]
SOLO = ["", ""]  # no group practice: no facility name, no org_pac_id


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
        "npi", "ind_pac_id", "ind_enrl_id", "provider_last_name", "provider_first_name", "pri_spec", "facility_name",
        "org_pac_id", "city_town", "state", "zip_code", "adrs_id",
    ]  # fmt: skip


def write(folder: Path, name: str, rows: list[list[str]], *, line_end: str = "\r\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator=line_end).writerows([HEADER, *rows])
    return path


A_BOSTON = [A, "111", "I20040101000001", "Lee", "Ann", "CARDIOLOGY", *GROUP, "BOSTON", "MA", "021341234", "MA0213A1"]
A_CAMBRIDGE = [
    A,
    "111",
    "I20040101000001",
    "Lee",
    "Ann",
    "CARDIOLOGY",
    *GROUP,
    "CAMBRIDGE",
    "MA",
    "021391234",
    "MA0213A2",
]
B_SOLO = [B, "222", "I20050101000002", "Diaz", "Bo", "FAMILY PRACTICE", *SOLO, "AUSTIN", "TX", "733011234", "TX7330B1"]
C_DALLAS = [C, "333", "I20060101000003", "Chen", "Cy", "NEPHROLOGY", *GROUP, "DALLAS", "TX", "750011234", "TX7500C1"]
Z_NEWARK = [LEADING_ZERO.lstrip("0"), "444", "I20070101000004", "Okafor", "Di", "RADIOLOGY", *SOLO, "NEWARK", "NJ",
            "071011234", "NJ0710Z1"]  # fmt: skip
E_SOLO = [E, "777", "I20080101000005", "Kim", "Eun", "UROLOGY", *SOLO, "PORTLAND", "ME", "041011234", "ME0410E1"]
DAY1 = [
    A_BOSTON,
    A_CAMBRIDGE,  # the same clinician at a second practice location: a row of its own
    B_SOLO,
    C_DALLAS,
    Z_NEWARK,
    E_SOLO,
    ["1234567890", *A_BOSTON[1:]],  # fails the Luhn rule
    A_BOSTON,  # the same row again
    [*C_DALLAS[:4], "Cyrus", *C_DALLAS[5:]],  # same clinician, enrollment, group and address, different row
]
DAY2 = [
    [*A_BOSTON[:3], "Lee-Smith", *A_BOSTON[4:]],  # renamed; A_CAMBRIDGE closed
    B_SOLO,  # unchanged, with an empty org_pac_id
    C_DALLAS,
    Z_NEWARK,
    [D, "666", "I20090101000006", "Novak", "Ed", "UROLOGY", *SOLO, "DENVER", "CO", "802011234", "CO8020D1"],  # new
]  # E_SOLO is gone


def pecos_settings(root: Path, types: dict[str, str] | None = None, **feed: object) -> dict:
    """The configuration's YAML, as a dict."""
    return {
        "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
        "snapshots": {
            "clinicians": {
                "kind": "csv",
                "path": str(root / "landing" / "pecos"),
                "primary_key": KEY,
                "nullable_key_columns": ["org_pac_id"],
                "partition_by": ["state"],
                "npi_columns": ["npi"],
                "columns": {normalise_header(h): "string" for h in HEADER} | (types or {}),
                **feed,
            }
        },
    }


def pecos_config(root: Path, types: dict[str, str] | None = None, **feed: object) -> Config:
    return Config.model_validate(pecos_settings(root, types, **feed))


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


def test_latest_holds_a_row_per_practice_location_of_the_newest_snapshot(spark, pecos):
    latest = load(spark, pecos["paths"].latest).select("npi", "adrs_id", "provider_last_name", "org_pac_id")
    expected = spark.createDataFrame(
        [
            (A, "MA0213A1", "Lee-Smith", GROUP[1]),
            (B, "TX7330B1", "Diaz", None),
            (C, "TX7500C1", "Chen", GROUP[1]),
            (D, "CO8020D1", "Novak", None),
            (LEADING_ZERO, "NJ0710Z1", "Okafor", None),
        ],
        "npi string, adrs_id string, provider_last_name string, org_pac_id string",
    )
    assert_df_equality(latest, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_second_practice_location_of_a_clinician_is_a_row_not_a_duplicate_key(spark, pecos):
    (day1,) = pecos["day1"].metrics
    assert day1.inserted == 6
    rows = load(spark, pecos["paths"].history).where((F.col("npi") == A) & (F.col("change_type") == "INSERT"))
    assert sorted(r.city_town for r in rows.collect()) == ["BOSTON", "CAMBRIDGE"]


def test_changes_of_day_two_are_one_insert_one_update_two_deletes(pecos):
    (day2,) = pecos["day2"].metrics
    assert (day2.inserted, day2.updated, day2.deleted) == (1, 1, 2)
    assert day2.reconciles


def test_a_row_without_a_group_keeps_its_key_from_day_to_day(spark, pecos):
    rows = load(spark, pecos["paths"].history).where(F.col("npi") == B).collect()
    assert [(r.change_type, r.org_pac_id, r.current_version_flg) for r in rows] == [("INSERT", None, "Y")]


def test_history_keeps_the_id304b_scd2_columns(spark, pecos):
    rows = (
        load(spark, pecos["paths"].history)
        .where((F.col("npi") == A) & (F.col("adrs_id") == "MA0213A1"))
        .select("provider_last_name", "effective_stp", "expiration_stp", "current_version_flg", "change_type")
        .orderBy("effective_stp")
        .collect()
    )
    assert [tuple(r) for r in rows] == [
        ("Lee", datetime(2026, 11, 1), datetime(2026, 11, 2), "N", "INSERT"),
        ("Lee-Smith", datetime(2026, 11, 2), datetime(9999, 12, 31, 23, 59, 59), "Y", "UPDATE"),
    ]


def test_a_closed_location_and_a_gone_solo_clinician_expire_with_delete_versions(spark, pecos):
    history = load(spark, pecos["paths"].history)
    closed = history.where((F.col("npi") == A) & (F.col("adrs_id") == "MA0213A2")).orderBy("effective_stp").collect()
    assert [(r.change_type, r.current_version_flg, r.city_town) for r in closed] == [
        ("INSERT", "N", "CAMBRIDGE"),
        ("DELETE", "Y", "CAMBRIDGE"),
    ]
    gone = history.where(F.col("npi") == E).orderBy("effective_stp").collect()
    assert [(r.change_type, r.org_pac_id, r.provider_last_name) for r in gone] == [
        ("INSERT", None, "Kim"),
        ("DELETE", None, "Kim"),
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
    assert (day1.quarantined, day1.duplicates, day1.inserted) == (2, 1, 6)
    assert day1.reconciles


def test_the_kept_row_of_a_duplicate_key_does_not_depend_on_file_order(spark, pecos):
    # "Cy" sorts before "Cyrus" by content, wherever the rows stood in the file.
    row = load(spark, pecos["paths"].history).where((F.col("npi") == C) & (F.col("change_type") == "INSERT")).first()
    assert row.provider_first_name == "Cy"


def test_the_same_snapshot_twice_changes_nothing(pecos):
    assert pecos["again"].status == "already_applied"
    assert pecos["again"].metrics == []


def test_an_older_snapshot_after_a_newer_one_is_refused(pecos):
    message = str(pecos["refused"])
    assert "2026-10-31" in message and "older than" in message and "nothing was written" in message


def test_tables_are_partitioned_by_state(pecos):
    assert sorted(p.name for p in Path(pecos["paths"].history).glob("state=*")) == [
        "state=CO", "state=MA", "state=ME", "state=NJ", "state=TX",
    ]  # fmt: skip


def test_as_of_day_one_sees_day_one(spark, pecos):
    live = as_of(spark, pecos["paths"].history, datetime(2026, 11, 1, 12)).select("npi").orderBy("npi")
    assert [r.npi for r in live.collect()] == sorted([A, A, B, C, E, LEADING_ZERO])


@pytest.mark.long  # ~65 s; the releases dated by their folders below are ordered alike (test_snapshot_files: by names)
def test_run_applies_snapshots_landed_together_by_the_date_in_their_names_never_their_file_times(spark, tmp_path):
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    # Landed at once, the newer one with the older modification time (S3 keeps them to the second).
    for day, rows, stamp in (("2026-11-01", DAY1, 2_000), ("2026-11-02", DAY2, 1_000), ("2026-11-03", DAY2, 2_000)):
        os.utime(write(folder, f"DAC_NationalDownloadableFile_{day}.csv", rows), (stamp, stamp))
    (first,) = run_once(spark, config)
    assert first.ok, first.error
    assert [b.batch_id for b in first.batches] == [20261101, 20261102, 20261103]
    assert [b.inserted for b in first.batches] == [6, 1, 0]


def test_releases_named_alike_are_dated_by_their_folders(spark, tmp_path):
    """CMS names every release DAC_NationalDownloadableFile.csv: landed in folders named by their dates, each is read
    (the folders were not looked into before, and the files were passed over in silence) and applied in date order."""
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    for day, rows, stamp in (("2026-11-02", DAY2, 1_000), ("2026-11-01", DAY1, 2_000)):
        os.utime(write(folder / day, "DAC_NationalDownloadableFile.csv", rows), (stamp, stamp))
    (run,) = run_once(spark, config)
    assert run.ok, run.error
    assert [(b.batch_id, b.inserted, b.deleted) for b in run.batches] == [(20261101, 6, 0), (20261102, 1, 2)]
    log = load(spark, f"{config.paths.lake}/_snapshots/clinicians").collect()
    assert sorted((str(r.snapshot_date), r.source_file, r.status) for r in log) == [
        ("2026-11-01", "DAC_NationalDownloadableFile.csv", "applied"),
        ("2026-11-02", "DAC_NationalDownloadableFile.csv", "applied"),
    ]


def test_a_refused_snapshot_fails_the_run_with_its_message_and_is_logged(spark, tmp_path):
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    write(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", DAY2)
    (first,) = run_once(spark, config)
    assert first.ok, first.error
    write(folder, "DAC_NationalDownloadableFile_2026-10-30.csv", DAY1)  # landed later, dated earlier
    (second,) = run_once(spark, config)
    assert not second.ok and second.batches == []
    assert "refused" in second.error and "older than" in second.error and "2026-10-30" in second.error
    log = spark.read.format("delta").load(f"{config.paths.lake}/_snapshots/clinicians").collect()
    assert sorted((r.source_file[-14:-4], r.status) for r in log) == [
        ("2026-10-30", "refused"),
        ("2026-11-02", "applied"),
    ]
    (third,) = run_once(spark, config)
    assert third.ok, third.error  # an older file refused stays refused: nothing is pending


def test_a_quarantined_row_holds_its_key_and_a_malformed_record_is_quarantined_not_padded(spark, tmp_path):
    """Day 2 breaks A's row (a letter in its numeric ind_pac_id), B's record (one field short) and C's (one field
    too many): all three are quarantined with their reason and text, and all three keep their day-1 row; E, gone
    from the file, is deleted. Before, a quarantined row's key counted as gone (the diff deleted the clinician),
    and Spark padded a short record with NULL and cut a long one to fit, then applied them."""
    config = pecos_config(tmp_path, types={"ind_pac_id": "bigint"})
    folder = tmp_path / "landing" / "pecos"
    first = [A_BOSTON, B_SOLO, C_DALLAS, E_SOLO]
    broken_a = [A_BOSTON[0], "11x", *A_BOSTON[2:]]
    short_b = B_SOLO[:-1]  # adrs_id missing: Spark would read NULL there
    long_c = [*C_DALLAS[:3], "Chen", "Jr", *C_DALLAS[4:]]  # "Chen, Jr" unquoted: one field too many
    day1 = apply_snapshot(
        spark, config, "clinicians", str(write(folder, "DAC_NationalDownloadableFile_2026-11-01.csv", first))
    )
    day2 = apply_snapshot(
        spark,
        config,
        "clinicians",
        str(write(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", [broken_a, short_b, long_c])),
    )
    assert (day1.metrics[0].inserted, day1.metrics[0].quarantined) == (4, 0)
    (m,) = day2.metrics
    assert (m.quarantined, m.inserted, m.updated, m.deleted) == (3, 0, 0, 1)  # only E, gone from the file, is deleted
    paths = table_paths(config, config.tables["clinicians"])
    latest = {r.npi: r for r in load(spark, paths.latest).collect()}
    assert sorted(latest) == sorted([A, B, C])
    assert (latest[A].ind_pac_id, latest[B].adrs_id, latest[C].provider_first_name) == (111, "TX7330B1", "Cy")
    reasons = sorted(r.reason for r in load(spark, paths.quarantine).collect())
    assert reasons == ["malformed_record", "malformed_record", "type_mismatch"]
    malformed = load(spark, paths.quarantine).where("reason = 'malformed_record'").orderBy("raw").collect()
    assert all("field count is not the header's 12" in r.detail for r in malformed)
    assert [r.raw.split(",")[0] for r in malformed] == sorted([B, C])  # the record's own text
    deletes = load(spark, paths.history).where("_is_deleted").select("npi").collect()
    assert [r.npi for r in deletes] == [E]


def test_a_quarantined_row_without_a_group_holds_only_the_solo_row_not_the_clinicians_group_rows(spark, tmp_path):
    """Found by review: an empty org_pac_id (a nullable key part: no group practice) on a quarantined row was read as
    "any group", so a duplicated solo row held the delete of the same clinician's group row at the same address
    (the group row stayed current as long as the duplicate recurred). Read whole, the row's empty group is its
    value: it holds only the solo row; a malformed record's unknown parts still hold any."""
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    a_solo = [*A_BOSTON[:6], *SOLO, *A_BOSTON[8:]]
    day1 = write(folder, "DAC_NationalDownloadableFile_2026-11-01.csv", [A_BOSTON, a_solo, B_SOLO])
    assert apply_snapshot(spark, config, "clinicians", str(day1)).metrics[0].inserted == 3
    renamed_solo = [*a_solo[:3], "Lee-Smith", *a_solo[4:]]  # the solo row twice, differing: one is quarantined
    day2 = write(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", [a_solo, renamed_solo, B_SOLO])
    (m,) = apply_snapshot(spark, config, "clinicians", str(day2)).metrics
    assert (m.quarantined, m.deleted) == (1, 1)  # the group row, gone from the file, is deleted
    latest = load(spark, table_paths(config, config.tables["clinicians"]).latest).collect()
    assert sorted((r.npi, r.org_pac_id) for r in latest) == sorted([(A, None), (B, None)])


def test_bytes_that_are_not_the_feeds_encoding_are_quarantined_and_the_right_encoding_reads_them(spark, tmp_path):
    """A Windows-1252 file read as UTF-8: the reader would turn its 'é' into U+FFFD and apply a changed name.
    The row is quarantined with a hint instead; with `encoding: windows-1252` the same file is applied as written."""
    renamed = [*A_BOSTON[:3], "Lée", *A_BOSTON[4:]]

    def write_cp1252(root: Path) -> Path:
        folder = root / "landing" / "pecos"
        folder.mkdir(parents=True)
        path = folder / "DAC_NationalDownloadableFile_2026-11-01.csv"
        with path.open("w", newline="", encoding="cp1252") as f:
            csv.writer(f).writerows([HEADER, renamed, B_SOLO])
        return path

    utf8 = pecos_config(tmp_path / "utf8")
    result = apply_snapshot(spark, utf8, "clinicians", str(write_cp1252(tmp_path / "utf8")))
    (m,) = result.metrics
    assert (m.inserted, m.quarantined) == (1, 1)
    (row,) = load(spark, table_paths(utf8, utf8.tables["clinicians"]).quarantine).collect()
    assert row.reason == "invalid_encoding" and "provider_last_name" in row.detail and "windows-1252" in row.detail

    config = pecos_config(tmp_path / "cp1252", encoding="windows-1252")
    result = apply_snapshot(spark, config, "clinicians", str(write_cp1252(tmp_path / "cp1252")))
    assert (result.metrics[0].inserted, result.metrics[0].quarantined) == (2, 0)
    names = {
        r.npi: r.provider_last_name
        for r in load(spark, table_paths(config, config.tables["clinicians"]).latest).collect()
    }
    assert names == {A: "Lée", B: "Diaz"}


def test_a_file_cut_inside_its_last_key_holds_that_record_and_the_keys_row(spark, tmp_path):
    """Found by review: a download stopped inside the last record's adrs_id (the file's last column, a key part)
    still gives a record with every field, so the cut key was inserted and the real one deleted. A file that does
    not end with a line break holds its last record (unterminated_record, in the quarantine and the load's notes):
    its key keeps its row, the rest of the file applies. Files ending in LF or CRLF apply whole."""
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    day1 = write(folder, "DAC_NationalDownloadableFile_2026-11-01.csv", [A_BOSTON, B_SOLO, C_DALLAS], line_end="\n")
    first = apply_snapshot(spark, config, "clinicians", str(day1))
    assert (first.metrics[0].inserted, first.metrics[0].quarantined, first.detail) == (3, 0, "")
    renamed = [*A_BOSTON[:3], "Lee-Smith", *A_BOSTON[4:]]
    day2 = write(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", [renamed, B_SOLO, C_DALLAS])
    data = day2.read_bytes()
    assert data.endswith(b",TX7500C1\r\n")
    day2.write_bytes(data[:-4])  # stopped inside C's adrs_id: TX7500
    second = apply_snapshot(spark, config, "clinicians", str(day2))
    (m,) = second.metrics
    assert (m.inserted, m.updated, m.deleted, m.quarantined) == (0, 1, 0, 1)
    paths = table_paths(config, config.tables["clinicians"])
    latest = sorted((r.npi, r.adrs_id, r.provider_last_name) for r in load(spark, paths.latest).collect())
    assert latest == sorted([(A, "MA0213A1", "Lee-Smith"), (B, "TX7330B1", "Diaz"), (C, "TX7500C1", "Chen")])
    (held,) = load(spark, paths.quarantine).collect()
    assert held.reason == "unterminated_record" and '"adrs_id":"TX7500"' in held.raw
    assert "does not end with a line break" in held.detail
    assert "does not end with a line break" in second.detail and "unterminated_record" in second.detail


def test_a_file_cut_inside_the_first_key_column_of_its_last_record_is_refused(spark, tmp_path):
    """A record cut inside its first field keeps no whole key column: no key could be held for it, and the
    clinician it names would be deleted. Such a file is refused; a file of only a header is refused as empty."""
    config = pecos_config(tmp_path)
    feed, table = config.snapshots["clinicians"], config.tables["clinicians"]
    path = write(tmp_path, "DAC_NationalDownloadableFile_2026-11-01.csv", [A_BOSTON, B_SOLO, C_DALLAS])
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(C.encode()) + 4])  # the last record is the first four digits of C's NPI
    with pytest.raises(InputError, match="does not end with a line break") as refused:
        load_csv_snapshot(spark, feed, str(path), table)
    assert "no whole key column" in str(refused.value) and "nothing was written" in str(refused.value)
    path.write_text(",".join(HEADER), encoding="utf-8")
    with pytest.raises(InputError, match="has no rows"):
        load_csv_snapshot(spark, feed, str(path), table)


def test_a_release_without_an_optional_column_still_holds_a_last_record_cut_in_its_key(spark, tmp_path):
    """Found by review: the NULL column of an optional column the release lacks was added before the cut record was
    looked at, so it passed for the file's last field and the cut adrs_id (the real last one) for whole."""
    config = pecos_config(tmp_path, optional_columns=["pri_spec"])
    spec = HEADER.index("pri_spec")
    text = io.StringIO()
    rows = [HEADER, A_BOSTON, B_SOLO, C_DALLAS]
    csv.writer(text, lineterminator="\n").writerows([[v for i, v in enumerate(r) if i != spec] for r in rows])
    path = tmp_path / "DAC_NationalDownloadableFile_2026-11-01.csv"
    path.write_text(text.getvalue()[:-4], encoding="utf-8")  # stopped inside C's adrs_id: TX7500
    loaded = load_csv_snapshot(spark, config.snapshots["clinicians"], str(path), config.tables["clinicians"])
    assert "columns this release lacks, NULL in its rows: pri_spec" in loaded.notes
    reasons = {(r.npi, r.adrs_id, r._reason) for r in loaded.tables["clinicians"].collect()}
    assert reasons == {(A, "MA0213A1", None), (B, "TX7330B1", None), (C, None, "unterminated_record")}


def test_a_feed_whose_files_never_end_with_a_line_break_may_apply_their_last_record(spark, tmp_path):
    """`require_final_newline: false`, for a producer that never ends its files with a line break, applies the last
    record of such a file; by default, and in the shipped feed, it is held. A gzipped file is checked where its
    text ends, not where its bytes do."""
    text = io.StringIO()
    csv.writer(text).writerows([HEADER, A_BOSTON, B_SOLO])
    body = gzip.compress(text.getvalue().removesuffix("\r\n").encode())
    counts = {}
    for strict in (True, False):
        config = pecos_config(tmp_path / str(strict), **({} if strict else {"require_final_newline": False}))
        path = Path(config.snapshots["clinicians"].path) / "DAC_NationalDownloadableFile_2026-11-01.csv.gz"
        path.parent.mkdir(parents=True)
        path.write_bytes(body)
        (m,) = apply_snapshot(spark, config, "clinicians", str(path)).metrics
        counts[strict] = (m.inserted, m.quarantined)
    assert counts == {True: (1, 1), False: (2, 0)}
    shipped = read_yaml(LOCAL_YAML.read_text(encoding="utf-8"))["snapshots"]["pecos_clinicians"]
    assert CsvSnapshotFeed.model_validate(shipped).require_final_newline


def test_a_valid_row_applies_beside_a_quarantined_row_of_its_key_whichever_sorts_first(spark, tmp_path):
    """Found by review: repeats were ranked with the quarantined rows of their key. A's bad row sorts first by
    content, so its good row was quarantined as a duplicate_key "of the first, kept" (nothing was kept); B's bad
    value read as NULL, so its good row with an empty value could be skipped as the same row again. The good rows
    apply, the bad ones are quarantined for what is wrong with them."""
    config = pecos_config(tmp_path, types={"ind_pac_id": "bigint"})
    bad_a = [A_BOSTON[0], "11x", *A_BOSTON[2:]]
    bad_b, blank_b = [B_SOLO[0], "22x", *B_SOLO[2:]], [B_SOLO[0], "", *B_SOLO[2:]]
    path = write(tmp_path / "landing" / "pecos", "DAC_NationalDownloadableFile_2026-11-01.csv",
                 [bad_a, A_BOSTON, blank_b, bad_b])  # fmt: skip
    (m,) = apply_snapshot(spark, config, "clinicians", str(path)).metrics
    assert (m.inserted, m.quarantined, m.duplicates) == (2, 2, 0)
    paths = table_paths(config, config.tables["clinicians"])
    assert {r.npi: r.ind_pac_id for r in load(spark, paths.latest).collect()} == {A: 111, B: None}
    quarantined = sorted((r.reason, r.raw) for r in load(spark, paths.quarantine).collect())
    assert [(reason, "11x" in raw or "22x" in raw) for reason, raw in quarantined] == [("type_mismatch", True)] * 2


def test_a_value_its_type_would_round_or_cut_is_quarantined(spark, tmp_path):
    """Found by review: Spark's cast rounded a decimal value to the column's scale without a word, and a date cast
    keeps the day of '2026-11-01 10:30:00' or '0044-03-15 BC'."""
    config = pecos_config(tmp_path, types={"ind_pac_id": "decimal(10,0)", "pri_spec": "date"})

    def row(base: list[str], pac_id: str, day: str) -> list[str]:
        return [base[0], pac_id, *base[2:5], day, *base[6:]]

    rows = [
        row(A_BOSTON, "111.000", "2026-11-01"),  # zeros past the scale: nothing to lose
        row(B_SOLO, "222.5", "2026-11-01"),
        row(C_DALLAS, "3.33E2", "2026-11-01 00:00:00"),  # exact in exponent form; midnight
        row(E_SOLO, "7.77E1", "2026-11-01"),
        row(Z_NEWARK, "444", "2026-11-01 10:30:00"),
        row(A_CAMBRIDGE, "111", "0044-03-15 BC"),
    ]
    path = write(tmp_path / "landing" / "pecos", "DAC_NationalDownloadableFile_2026-11-01.csv", rows)

    (m,) = apply_snapshot(spark, config, "clinicians", str(path)).metrics

    assert (m.inserted, m.quarantined) == (2, 4)
    paths = table_paths(config, config.tables["clinicians"])
    latest = {r.npi: (str(r.ind_pac_id), str(r.pri_spec)) for r in load(spark, paths.latest).collect()}
    assert latest == {A: ("111", "2026-11-01"), C: ("333", "2026-11-01")}
    quarantined = sorted((r.reason, r.detail) for r in load(spark, paths.quarantine).collect())
    assert [reason for reason, _ in quarantined] == ["type_mismatch"] * 4
    details = [detail for _, detail in quarantined]
    assert details[0].startswith("column ind_pac_id: '222.5' has more digits after the point than its type ")
    assert "decimal(10,0)" in details[0] and "`columns:`" in details[0]
    assert details[1].startswith("column ind_pac_id: '7.77E1' has more digits")
    assert details[2].startswith("column pri_spec: '0044-03-15 BC' has text after its day")
    assert details[3].startswith("column pri_spec: '2026-11-01 10:30:00' has text after its day")


def test_a_file_the_feed_does_not_read_is_named_in_the_runs_notes(spark, tmp_path):
    """A zipped download or a stray file in a CSV feed's folder was passed over in silence ("nothing new")."""
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos"
    write(folder, "DAC_NationalDownloadableFile_2026-11-01.csv", DAY1)
    (folder / "DAC_NationalDownloadableFile_2026-11-02.zip").write_bytes(b"PK")
    (folder / "readme.txt").write_text("x")
    (folder / "_SUCCESS").write_text("")  # hidden from file sources: not a file the feed could read
    (first,) = run_once(spark, config)
    assert first.ok, first.error
    assert [b.batch_id for b in first.batches] == [20261101]
    note = (
        "not read (a csv feed reads *.{csv,CSV,csv.gz,CSV.gz}): DAC_NationalDownloadableFile_2026-11-02.zip, readme.txt"
    )
    assert note in first.notes


def test_quotes_inside_a_value_are_read_as_rfc_4180_writes_them(spark, tmp_path):
    """A doubled quote inside a quoted value is one quote, and a backslash is just a character. With Spark's
    default escape (a backslash) the facility name kept its quotes doubled, and a value ending in a backslash ran
    into the records after it."""
    config = pecos_config(tmp_path)
    quoted = [*A_BOSTON[:6], 'ACME "BEST" CLINIC', *A_BOSTON[7:]]
    backslash = [*B_SOLO[:3], "Diaz, Jr\\", *B_SOLO[4:]]
    path = write(
        tmp_path / "landing" / "pecos", "DAC_NationalDownloadableFile_2026-11-01.csv", [quoted, backslash, C_DALLAS]
    )
    assert '"ACME ""BEST"" CLINIC"' in path.read_text() and '"Diaz, Jr\\"' in path.read_text()
    (m,) = apply_snapshot(spark, config, "clinicians", str(path)).metrics
    assert (m.inserted, m.quarantined) == (3, 0)
    rows = {r.npi: r for r in load(spark, table_paths(config, config.tables["clinicians"]).latest).collect()}
    assert (rows[A].facility_name, rows[B].provider_last_name, rows[C].provider_last_name) == (
        'ACME "BEST" CLINIC',
        "Diaz, Jr\\",
        "Chen",
    )


@pytest.mark.parametrize(
    ("deletes", "live", "refused"),
    [
        (0, 0, False),
        (9, 40, False),  # 22%, but fewer than 10 rows: a small table's ordinary day
        (10, 40, True),
        (10, 101, False),  # under 10%
        (11, 101, True),
        (3, 3, True),  # every row of a small table
        (2, 3, False),
    ],
)
def test_a_snapshot_is_refused_for_deleting_more_than_a_tenth_and_at_least_ten_rows(deletes, live, refused):
    assert too_many_deletes(deletes, live, CsvSnapshotFeed.model_fields["max_delete_fraction"].default) is refused


def clinicians(count: int) -> list[list[str]]:
    return [
        [with_check_digit(f"2{i:08d}"), f"{i}", f"I2010010100{i:04d}", f"Last{i}", "Ann", "UROLOGY", *SOLO, "AUSTIN",
         "TX", "733011234", f"TX7330{i:04d}"]
        for i in range(count)
    ]  # fmt: skip


def test_a_file_cut_short_is_refused_for_its_deletes_and_applied_when_the_operator_allows_them(spark, tmp_path, capsys):
    """A download cut half-way reads as a snapshot without half the clinicians: every key it lacks would be
    deleted (and exported as deleted). The run refuses it and writes nothing; `snapshot load --allow-deletes`
    applies it when the source really dropped them."""
    settings = pecos_settings(tmp_path)
    config = Config.model_validate(settings)
    folder = tmp_path / "landing" / "pecos"
    write(folder, "DAC_NationalDownloadableFile_2026-11-01.csv", clinicians(40))
    (first,) = run_once(spark, config)
    assert first.ok, first.error
    day2 = write(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", clinicians(40)[:39])  # one gone: applied
    data = day2.read_bytes()
    day3 = folder / "DAC_NationalDownloadableFile_2026-11-03.csv"
    day3.write_bytes(data[: data.index(b"Last20,")])  # cut inside the 21st clinician's record
    (second,) = run_once(spark, config)
    assert not second.ok and "would delete more of a table than max_delete_fraction 0.1" in second.error
    # 20 clinicians are whole, and the cut record's NPI holds its row (the record is quarantined)
    assert "clinicians: 18 of 39 live rows, 46%" in second.error and "--allow-deletes" in second.error
    assert [(m.deleted, m.inserted) for m in second.batches] == [(1, 0)]  # day 2, and nothing of day 3
    paths = table_paths(config, config.tables["clinicians"])
    assert load(spark, paths.latest).count() == 39
    assert load(spark, paths.history).where("_batch_id = 20261103").count() == 0
    log = {
        (r.source_file[-14:-4], r.status) for r in load(spark, f"{config.paths.lake}/_snapshots/clinicians").collect()
    }
    assert log == {("2026-11-01", "applied"), ("2026-11-02", "applied"), ("2026-11-03", "refused")}
    # The refused file is in the stream's checkpoint: the next run (a flow's retry) found "nothing new" and passed,
    # and the deployed flow reported success (found by review). It fails until the refusal is resolved.
    (third,) = run_once(spark, config)
    assert not third.ok and "nothing new" in third.notes
    still = "DAC_NationalDownloadableFile_2026-11-03.csv (2026-11-03) was refused and is still not applied"
    assert still in third.error

    yaml_file = tmp_path / "lakehouse.yaml"
    yaml_file.write_text(yaml.safe_dump(settings))
    assert main(["--config", str(yaml_file), "snapshot", "load", str(day3), "--allow-deletes"]) == 0
    assert re.search(
        r"clinicians\s+inserted\s+0\s+updated\s+0\s+deleted\s+18\s+quarantined\s+1", capsys.readouterr().out
    )
    assert load(spark, paths.latest).count() == 21
    (fourth,) = run_once(spark, config)
    assert fourth.ok, fourth.error  # resolved: applied by the operator


# CMS's header before 2024 (e.g. the 2023 releases): short names where today's file has words.
HEADER_BEFORE_2024 = {
    "Provider Last Name": "lst_nm", "Provider First Name": "frst_nm", "Provider Middle Name": "mid_nm",
    "Facility Name": "org_nm", "City/Town": "cty", "State": "st", "ZIP Code": "zip", "Telephone Number": "phn_numbr",
}  # fmt: skip


def test_a_cms_file_with_the_header_before_2024_reads_as_todays_through_the_shipped_feed(spark, tmp_path):
    shipped = read_yaml(LOCAL_YAML.read_text(encoding="utf-8"))["snapshots"]["pecos_clinicians"]
    (today,) = write_pecos(tmp_path / "today", clinicians=12)[:1]
    with today.open(encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f))
    old = [HEADER_BEFORE_2024.get(h, h) for h in header]
    assert old != header and "lst_nm" in old
    before = tmp_path / "before" / today.name
    before.parent.mkdir()
    with before.open("w", encoding="utf-8", newline="") as f:  # with a column today's file no longer has
        csv.writer(f).writerows([[*old, "hosp_afl_1"], *[[*row, "010001"] for row in rows]])

    latest, detail = {}, {}
    for name, path in (("today", today), ("before", before)):
        settings = pecos_settings(tmp_path / f"lake_{name}")
        settings["snapshots"] = {"clinicians": {**shipped, "path": str(path.parent)}}
        config = Config.model_validate(settings)
        detail[name] = apply_snapshot(spark, config, "clinicians", str(path)).detail
        latest[name] = load(spark, table_paths(config, config.tables["clinicians"]).latest).drop("_source_file")

    # Older still (found by review): CMS's releases before its Telehlth column; the shipped feed takes it as NULL.
    oldest = tmp_path / "oldest" / today.name
    oldest.parent.mkdir()
    telehealth = old.index("Telehlth")
    with oldest.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([[v for i, v in enumerate(row) if i != telehealth] for row in [old, *rows]])
    settings = pecos_settings(tmp_path / "lake_oldest")
    settings["snapshots"] = {"clinicians": {**shipped, "path": str(oldest.parent)}}
    config = Config.model_validate(settings)
    detail["oldest"] = apply_snapshot(spark, config, "clinicians", str(oldest)).detail
    latest["oldest"] = load(spark, table_paths(config, config.tables["clinicians"]).latest).drop("_source_file")
    settings["snapshots"]["clinicians"]["optional_columns"] = []
    with pytest.raises(
        InputError, match=r"no column\(s\) \['telehlth'\].*older releases lack goes in the feed's optional_"
    ):
        load_csv_snapshot(
            spark, Config.model_validate(settings).snapshots["clinicians"], str(oldest), config.tables["clinicians"]
        )

    assert detail == {
        "today": "",
        "before": "header columns no column reads, ignored: hosp_afl_1",
        "oldest": "columns this release lacks, NULL in its rows: telehlth",
    }
    assert latest["today"].count() > 10
    assert latest["before"].where("provider_last_name IS NULL OR city_town IS NULL").count() == 0
    assert_df_equality(latest["before"], latest["today"], ignore_row_order=True, ignore_column_order=True)
    assert latest["today"].where("telehlth IS NOT NULL").count() > 0
    assert latest["oldest"].where("telehlth IS NOT NULL").count() == 0
    without = latest["today"].withColumn("telehlth", F.lit(None).cast("string"))
    assert_df_equality(latest["oldest"], without, ignore_row_order=True, ignore_column_order=True)


def test_an_alias_never_replaces_a_column_the_header_has():
    feed = CsvSnapshotFeed.model_validate(
        {"path": "x", "primary_key": ["npi"], "columns": {"npi": "string", "state": "string"},
         "header_aliases": {"st": "state", "State Code": "state"}}
    )  # fmt: skip
    assert header_columns(["NPI", "State", "st"], feed) == ["npi", "state", "st"]
    assert header_columns(["NPI", "st", "State Code"], feed) == ["npi", "state", "state_code"]
    with pytest.raises(ValueError, match=r"header_aliases fill \['city'\]"):
        CsvSnapshotFeed.model_validate({**feed.model_dump(), "header_aliases": {"cty": "city"}})
    with pytest.raises(ValueError, match=r"optional_columns names key columns \['npi'\]"):
        CsvSnapshotFeed.model_validate({**feed.model_dump(), "optional_columns": ["npi"]})
    with pytest.raises(ValueError, match=r"optional_columns names \['telehlth'\], which are not in columns"):
        CsvSnapshotFeed.model_validate({**feed.model_dump(), "optional_columns": ["telehlth"]})


def test_a_snapshot_feeds_tables_get_their_upkeep_log_retention_and_vacuum_when_due(spark, tmp_path):
    """Found by review: only DMS tables had upkeep; a feed's tables kept Delta's default log retention (not the
    configured export horizon) and the files each day's MERGE replaced piled up, never vacuumed."""
    from delta.tables import DeltaTable

    from lakehouse.config import MaintenanceSettings
    from lakehouse.delta_log import table_properties

    settings = {"compaction": {"method": "none"}, "vacuum": {"retention_hours": 0, "every_hours": 1}}
    config = pecos_config(tmp_path).model_copy(update={"maintenance": MaintenanceSettings.model_validate(settings)})
    folder = tmp_path / "landing" / "pecos"
    apply_snapshot(spark, config, "clinicians", str(write(folder, "DAC_NationalDownloadableFile_2026-11-01.csv", DAY1)))
    paths = table_paths(config, config.tables["clinicians"])
    wanted = config.maintenance.table_properties()["delta.logRetentionDuration"]  # the export's fallback horizon
    assert table_properties(spark, paths.history, ["delta.logRetentionDuration"]) == {
        "delta.logRetentionDuration": wanted
    }
    day1_files = set(Path(paths.latest).rglob("*.parquet"))
    marker = Path(paths.checkpoint) / "_vacuumed"
    os.utime(marker, (marker.stat().st_mtime - 7200,) * 2)  # the last VACUUM was two hours ago

    apply_snapshot(spark, config, "clinicians", str(write(folder, "DAC_NationalDownloadableFile_2026-11-02.csv", DAY2)))
    live = {Path(urlparse(f).path) for f in spark.read.format("delta").load(paths.latest).inputFiles()}
    assert day1_files - live  # day 2 replaced some of latest's files ...
    assert set(Path(paths.latest).rglob("*.parquet")) == live  # ... and its VACUUM, due, removed them
    operations = {r[0] for r in DeltaTable.forPath(spark, paths.history).history().select("operation").collect()}
    assert "VACUUM END" in operations or set(Path(paths.history).rglob("*.parquet")) == {
        Path(urlparse(f).path) for f in spark.read.format("delta").load(paths.history).inputFiles()
    }


def test_a_refusal_is_pending_only_while_no_file_of_its_day_or_later_is_applied():
    from datetime import date as day
    from datetime import datetime as at

    from lakehouse.apply.snapshot import unresolved_refusals

    applied = [(day(2026, 11, 2), "b.csv", "applied", None, at(2026, 11, 2, 6))]
    cut = (day(2026, 11, 3), "c.csv", "refused", "too many deletes", at(2026, 11, 3, 6))
    later = at(2026, 11, 3, 9)
    assert unresolved_refusals([*applied, cut]) == [(day(2026, 11, 3), "c.csv", "too many deletes")]
    assert unresolved_refusals([*applied, cut, (day(2026, 11, 3), "c.csv", "applied", None, later)]) == []  # forced
    assert unresolved_refusals([*applied, cut, (day(2026, 11, 4), "d.csv", "applied", None, later)]) == []  # newer
    assert (
        unresolved_refusals([*applied, (day(2026, 11, 1), "a.csv", "refused", "older", later)]) == []
    )  # never to apply
    assert unresolved_refusals([*applied, (None, "x.zip", "refused", "unreadable", later)]) == []  # no date
    assert unresolved_refusals([*applied, (day(2026, 11, 2), "e.csv", "refused", "second file", later)]) == []
    # A content-dated file named as the one applied for its day, refused after it for a different content: pending.
    changed = (day(2026, 11, 2), "b.csv", "refused", "content differs", later)
    assert unresolved_refusals([*applied, changed]) == [(day(2026, 11, 2), "b.csv", "content differs")]
    assert unresolved_refusals([*applied, changed, (day(2026, 11, 3), "b.csv", "applied", None, later)]) == []


def test_a_file_whose_path_holds_a_space_or_a_percent_is_applied_from_the_folder(spark, tmp_path):
    """Found by review: the folder's stream gives a file's path as a URI (a space is %20), which the CSV reader
    took as a name of its own (%20 and all): not found. A file as people name them applies."""
    config = pecos_config(tmp_path)
    folder = tmp_path / "landing" / "pecos" / "2026-11-01 release 100%"
    write(folder, "DAC_NationalDownloadableFile.csv", [A_BOSTON, B_SOLO])
    (run,) = run_once(spark, config)
    assert run.ok, run.error
    assert [b.inserted for b in run.batches] == [2]


def test_a_csv_file_without_a_date_is_never_told_to_use_a_content_date(spark, tmp_path):
    """Found by review: the refusal of a name without a date suggested `date.source: content`, which the
    configuration refuses for a CSV feed; it names what a CSV feed can do."""
    config = pecos_config(tmp_path)
    path = write(tmp_path / "landing" / "pecos", "DAC_NationalDownloadableFile.csv", [A_BOSTON])
    with pytest.raises(InputError, match="no date in its name") as refused:
        apply_snapshot(spark, config, "clinicians", str(path))
    assert "date.pattern" in str(refused.value) and "content" not in str(refused.value)


@pytest.mark.parametrize("second", ["ZIP_CODE", "zip code"])
def test_two_header_names_of_one_column_refuse_the_file_naming_both(spark, tmp_path, second):
    """Found by review: `ZIP Code` and `ZIP_CODE` both normalise to zip_code, and the read failed in Spark with
    AMBIGUOUS_REFERENCE (`zip code`, which Spark numbers as a repeat, was reported as no zip_code at all). Which of
    the two holds the column cannot be told: the file is refused, naming both."""
    config = pecos_config(tmp_path)
    feed, table = config.snapshots["clinicians"], config.tables["clinicians"]
    path = tmp_path / "DAC_NationalDownloadableFile_2026-11-01.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([[*HEADER, second], [*A_BOSTON, "02134"]])
    with pytest.raises(InputError) as refused:
        load_csv_snapshot(spark, feed, str(path), table)
    message = str(refused.value)
    assert "DAC_NationalDownloadableFile_2026-11-01.csv" in message and f"'ZIP Code', '{second}'" in message
    assert "zip_code" in message and "nothing was written" in message and "Rename" in message


def test_two_header_names_of_a_column_no_column_reads_are_both_ignored(spark, tmp_path):
    """Two header names the feed does not read that normalise alike (`Notes`, `NOTES`) refuse nothing: both are
    ignored, named in the load's notes, and the file applies."""
    config = pecos_config(tmp_path)
    feed, table = config.snapshots["clinicians"], config.tables["clinicians"]
    path = tmp_path / "DAC_NationalDownloadableFile_2026-11-01.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([[*HEADER, "Notes", "NOTES"], [*A_BOSTON, "a", "b"], [*B_SOLO, "c", "d"]])
    loaded = load_csv_snapshot(spark, feed, str(path), table)
    assert loaded.notes == ["header columns no column reads, ignored: notes, notes_2"]
    rows = loaded.tables["clinicians"].collect()
    assert sorted((r.npi, r._reason) for r in rows) == sorted([(A, None), (B, None)])


MUNOZ = [*B_SOLO[:3], "MUÑOZ", "José", *B_SOLO[5:]]


def write_encoded(path: Path, rows: list[list[str]], encoding: str) -> Path:
    """A PECOS file in `encoding`; gzipped when its name ends in .gz."""
    text = io.StringIO()
    csv.writer(text).writerows([HEADER, *rows])
    data = text.getvalue().encode(encoding)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_utf8_file_for_a_windows_1252_feed_is_refused_not_stored_garbled(spark, tmp_path, suffix):
    """Found by review: read as windows-1252, a UTF-8 file's MUÑOZ was stored as MUÃ\u2018OZ, with nothing quarantined
    (every byte is windows-1252 text). A file that decodes as UTF-8 and has characters beyond ASCII is refused
    for a single-byte encoding, saying what to set; an ASCII file reads the same in both and applies."""
    config = pecos_config(tmp_path, encoding="windows-1252")
    folder = Path(config.snapshots["clinicians"].path)
    utf8 = write_encoded(folder / f"DAC_NationalDownloadableFile_2026-11-01{suffix}", [A_BOSTON, MUNOZ], "utf-8")
    with pytest.raises(InputError) as refused:
        apply_snapshot(spark, config, "clinicians", str(utf8))
    message = str(refused.value)
    assert utf8.name in message and "is UTF-8 text" in message and "encoding is windows-1252" in message
    assert "encoding: utf-8" in message and "auto" in message and "nothing was written" in message
    assert not Path(table_paths(config, config.tables["clinicians"]).latest).exists()

    ascii_only = write_encoded(folder / f"DAC_NationalDownloadableFile_2026-11-02{suffix}", [A_BOSTON], "utf-8")
    (m,) = apply_snapshot(spark, config, "clinicians", str(ascii_only)).metrics
    assert (m.inserted, m.quarantined) == (1, 0)


def test_encoding_auto_reads_a_utf8_file_and_a_windows_1252_file_alike_and_says_which_it_used(spark, tmp_path):
    """`encoding: auto`: a file that decodes as UTF-8 is read as UTF-8, any other as windows-1252. The same rows
    written in each are the same rows: day 2 (windows-1252) changes nothing day 1 (UTF-8) applied."""
    config = pecos_config(tmp_path, encoding="AUTO")
    assert config.snapshots["clinicians"].encoding == "auto"
    folder = Path(config.snapshots["clinicians"].path)
    clinicians = config.tables["clinicians"]
    day1 = write_encoded(folder / "DAC_NationalDownloadableFile_2026-11-01.csv", [A_BOSTON, MUNOZ], "utf-8")
    first = apply_snapshot(spark, config, "clinicians", str(day1))
    assert (first.metrics[0].inserted, first.metrics[0].quarantined) == (2, 0)
    assert "read as UTF-8 (encoding: auto)" in first.detail
    names = {
        r.npi: (r.provider_last_name, r.provider_first_name)
        for r in load(spark, table_paths(config, clinicians).latest).collect()
    }
    assert names == {A: ("Lee", "Ann"), B: ("MUÑOZ", "José")}

    day2 = write_encoded(folder / "DAC_NationalDownloadableFile_2026-11-02.csv", [A_BOSTON, MUNOZ], "cp1252")
    assert "MUÑOZ".encode("cp1252") in day2.read_bytes()
    second = apply_snapshot(spark, config, "clinicians", str(day2))
    (m,) = second.metrics
    assert (m.inserted, m.updated, m.deleted, m.quarantined) == (0, 0, 0, 0)
    assert "read as windows-1252 (encoding: auto: it is not UTF-8 text)" in second.detail
    latest = load(spark, table_paths(config, clinicians).latest).where(F.col("npi") == B).collect()
    assert [(r.provider_last_name, r.provider_first_name) for r in latest] == [("MUÑOZ", "José")]
