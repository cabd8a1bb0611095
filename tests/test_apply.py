"""History (SCD2) and latest (SCD1) from DMS files: ordering, late data, deletes, duplicates."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from chispa import assert_df_equality

from lakehouse.runner import run_once
from tests.conftest import make_config
from tests.dms_tables import PEOPLE, land, people_config, read, run, seq


def latest_rows(spark, config):
    return read(spark, config, "latest").select("id", "name", "score").orderBy("id")


def history_rows(spark, config):
    return (
        read(spark, config, "history")
        .select("id", "name", "_op", "_valid_from", "_valid_to", "_is_current", "_is_deleted")
        .orderBy("id", "_sequence")
    )


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_full_load_then_cdc_keeps_every_version_and_the_latest(spark, tmp_path):
    config = people_config(tmp_path)
    land(
        config,
        "LOAD00000001.csv",
        [
            ["2026-03-01 08:00:00.000000", "1", "Ann", "+3.23800011e+01", "", ""],
            ["2026-03-01 08:00:00.000000", "2", "Bob", "1.5", "", ""],
        ],
    )
    land(
        config,
        "20260301-090000000.csv",
        [
            ["U", "2026-03-01 09:00:00.000000", "1", "Ann Lee", "40", seq(1), "1"],
            ["I", "2026-03-01 09:00:01.000000", "3", "Cy", "", seq(2), ""],
        ],
    )
    result = run(spark, config)

    assert result.batches[0].rows_read == 4 and result.batches[0].applied == 4
    expected = spark.createDataFrame(
        [(1, "Ann Lee", 40.0), (2, "Bob", 1.5), (3, "Cy", None)], "id bigint, name string, score double"
    )
    assert_df_equality(latest_rows(spark, config), expected, ignore_nullable=True)
    expected_history = spark.createDataFrame(
        [
            (1, "Ann", "I", ts("2026-03-01 08:00:00"), ts("2026-03-01 09:00:00"), False, False),
            (1, "Ann Lee", "U", ts("2026-03-01 09:00:00"), None, True, False),
            (2, "Bob", "I", ts("2026-03-01 08:00:00"), None, True, False),
            (3, "Cy", "I", ts("2026-03-01 09:00:01"), None, True, False),
        ],
        "id bigint, name string, _op string, _valid_from timestamp, _valid_to timestamp, _is_current boolean, "
        "_is_deleted boolean",
    )
    assert_df_equality(history_rows(spark, config), expected_history, ignore_nullable=True)


def test_dms_float_notation_is_read_exactly(spark, tmp_path):
    config = people_config(tmp_path)
    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00", "1", "Ann", "+3.23800011e+01", "", ""]])
    run(spark, config)
    assert latest_rows(spark, config).first()["score"] == 32.3800011


def test_header_csv_gzip_and_parquet_files_apply_alike(spark, tmp_path):
    with_header = copy.deepcopy(PEOPLE)
    with_header["source"]["header"] = True  # DMS AddColumnName=true
    parquet = copy.deepcopy(PEOPLE)
    parquet["source"]["format"] = "parquet"
    config = make_config(tmp_path, {"people": with_header, "people_pq": parquet})
    header = ["Op", "id", "ts", "name", "score", "seq", "BI_id"]  # columns named, in another order
    land(
        config, "20260301-090000000.csv", [header, ["I", "1", "2026-03-01 09:00:00", "Ann", "1.5", seq(1), ""]], gz=True
    )
    folder = tmp_path / "landing" / "people_pq"
    folder.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "Op": ["I", "U"],
                "ts": ["2026-03-01 09:00:00", "2026-03-01 09:01:00"],
                "id": [1, 1],
                "name": ["Ann", "Ann B"],
                "score": [1.5, 2.0],
                "seq": [seq(1), seq(2)],
                "BI_id": [None, 1],
            }
        ),
        folder / "20260301-090000000.parquet",
    )

    runs = run_once(spark, config)

    assert all(r.ok for r in runs), [r.error for r in runs]
    assert [r["name"] for r in read(spark, config, "latest").collect()] == ["Ann"]
    assert [r["name"] for r in read(spark, config, "latest", table="people_pq").collect()] == ["Ann B"]


def test_tables_keep_a_change_feed_only_where_asked_and_statistics_of_the_filtered_columns(spark, tmp_path):
    from delta.tables import DeltaTable

    from lakehouse.tables import ensure_tables, table_paths

    config = people_config(tmp_path)
    plain = config.tables["people"]
    fed = plain.model_copy(update={"name": "people_fed", "change_feed": True})

    def properties(path: str) -> tuple[str | None, str | None]:
        found = DeltaTable.forPath(spark, path).detail().first()["properties"]
        return found.get("delta.enableChangeDataFeed"), found.get("delta.dataSkippingStatsColumns")

    found = {}
    for table in (plain, fed):
        paths = table_paths(config, table)
        ensure_tables(spark, table, paths)
        found[table.name] = {kind: properties(getattr(paths, kind)) for kind in ("history", "latest", "quarantine")}
    history_stats = "`id`,`_valid_from`,`_valid_to`,`_batch_id`"
    latest_stats = "`id`,`_valid_from`,`_batch_id`"
    quarantine_stats = "`batch_id`,`source_file`,`source_row`,`reason`"
    assert found == {
        "people": {
            "history": ("false", history_stats),
            "latest": ("false", latest_stats),
            "quarantine": ("false", quarantine_stats),
        },
        "people_fed": {
            "history": ("true", history_stats),
            "latest": ("false", latest_stats),
            "quarantine": ("false", quarantine_stats),
        },
    }

    land(config, "LOAD00000001.csv", [["2026-03-01 08:00:00", "1", "Ann", "1.5", "", ""]])
    run(spark, config)
    log = Path(table_paths(config, plain).history) / "_delta_log"
    actions = [json.loads(line) for commit in sorted(log.glob("*.json")) for line in commit.read_text().splitlines()]
    stats = [json.loads(a["add"]["stats"]) for a in actions if "add" in a]
    assert stats and all(set(s["nullCount"]) == {"id", "_valid_from", "_valid_to", "_batch_id"} for s in stats)


def test_of_one_change_in_two_files_the_row_of_the_first_file_by_name_is_kept_whatever_its_folder(spark):
    from lakehouse.changes.dedup import mark_duplicates

    rows = [
        ("s3://b/x/2026/03/02/20260302-080000000.csv", 0),  # a copy, in a folder that sorts first
        ("s3://b/x/2026/03/01/20260301-100000000.csv", 3),
    ]
    changes = spark.createDataFrame(
        [(7, "U", "Ann", "1-seq", f, r, None, None) for f, r in rows],
        "id bigint, _op string, name string, _sequence string, _source_file string, _source_row bigint, "
        "_reason string, _detail string",
    )

    marked = mark_duplicates(changes, ["id"], ["name"]).collect()

    assert {(r._source_file.rsplit("/", 1)[1], r._duplicate) for r in marked} == {
        ("20260301-100000000.csv", False),
        ("20260302-080000000.csv", True),
    }


def test_columns_dms_wrote_as_no_sup_value_keep_the_keys_value_before_the_update(spark, tmp_path):
    """Oracle with PRIMARY KEY supplemental logging: an update carries the key and the columns it changed, DMS writes
    CsvNoSupValue for the others (UseCsvNoSupValue=true). They keep the key's value before the update, through two
    partial updates in one file, a later batch, a delete (which carries the filled values), a real NULL and a key
    change (which takes them from the old key)."""
    config = people_config(tmp_path, no_sup_value="_NOSUP_")
    land(
        config,
        "LOAD00000001.csv",
        [
            ["2026-03-01 08:00:00.000000", "1", "Ann", "10", "", ""],
            ["2026-03-01 08:00:00.000000", "2", "Bob", "20", "", ""],
        ],
    )
    land(
        config,
        "20260301-090000000.csv",
        [
            ["U", "2026-03-01 09:00:00.000000", "1", "_NOSUP_", "11", seq(1), "_NOSUP_"],
            ["U", "2026-03-01 09:00:01.000000", "1", "Ann Lee", "_NOSUP_", seq(2), "_NOSUP_"],
            ["U", "2026-03-01 09:00:02.000000", "2", "", "_NOSUP_", seq(3), "_NOSUP_"],  # a real NULL name
        ],
    )
    result = run(spark, config)
    assert result.batches[0].quarantined == 0
    land(config, "20260301-100000000.csv", [["U", "2026-03-01 10:00:00.000000", "1", "_NOSUP_", "12", seq(4), ""]])
    run(spark, config)
    land(config, "20260301-110000000.csv", [["D", "2026-03-01 11:00:00.000000", "2", "_NOSUP_", "_NOSUP_", seq(5), ""]])
    run(spark, config)
    # A key change without every column takes them from the old key; a later partial update of the new key too.
    land(config, "20260301-120000000.csv", [["U", "2026-03-01 12:00:00.000000", "9", "_NOSUP_", "13", seq(6), "1"]])
    run(spark, config)
    land(config, "20260301-130000000.csv", [["U", "2026-03-01 13:00:00.000000", "9", "_NOSUP_", "14", seq(7), ""]])
    run(spark, config)

    expected = spark.createDataFrame([(9, "Ann Lee", 14.0)], "id bigint, name string, score double")
    assert_df_equality(latest_rows(spark, config), expected, ignore_nullable=True)
    versions = read(spark, config, "history").orderBy("id", "_sequence").select("id", "name", "score", "_op").collect()
    assert [tuple(v) for v in versions] == [
        (1, "Ann", 10.0, "I"),
        (1, "Ann", 11.0, "U"),
        (1, "Ann Lee", 11.0, "U"),
        (1, "Ann Lee", 12.0, "U"),
        (1, "Ann Lee", 12.0, "D"),
        (2, "Bob", 20.0, "I"),
        (2, None, 20.0, "U"),
        (2, None, 20.0, "D"),
        (9, "Ann Lee", 13.0, "U"),
        (9, "Ann Lee", 14.0, "U"),
    ]
