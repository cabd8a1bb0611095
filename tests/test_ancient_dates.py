"""Dates before the Gregorian calendar's start (1582-10-15) are data: sources write them as placeholders (.NET's
0001-01-01T00:00:00 in the 340B export, an Oracle DATE of year 1, a MySQL '1000-01-01'). Spark 3.5 refuses by
default to write them to Parquet (it would have to choose between its old hybrid calendar and the proleptic one);
the engine writes them proleptic, as Athena, Trino and delta-rs read them, and reads them back unchanged."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from lakehouse.errors import SnapshotError
from lakehouse.sources.opais import parse_export
from lakehouse.sources.opais_load import arrow_to_spark
from lakehouse.tables import table_paths
from tests.conftest import make_config, write_dms_csv
from tests.dms_tables import run
from tests.test_opais_parse import entity

ANCIENT = [
    ("1", "0001-01-01", "0001-01-01 00:00:00"),
    ("2", "1500-06-15", "1582-10-04 23:59:59.5"),  # the last day of the Julian calendar
    ("3", "2026-03-01", "2026-03-01 09:00:00"),
]


def test_a_dms_table_applies_dates_before_1582_and_every_reader_sees_them_unchanged(spark, tmp_path):
    config = make_config(
        tmp_path,
        {
            "visits": {
                "primary_key": ["id"],
                "source": {
                    "kind": "dms",
                    "format": "csv",
                    "timestamp_column": "ts",
                    "columns": {"ts": "string", "id": "bigint", "born": "date", "seen": "timestamp"},
                },
            }
        },
    )
    records = [["I", "2026-03-01 10:00:00", i, d, t] for i, d, t in ANCIENT]
    write_dms_csv(Path(config.tables["visits"].source.path), "20260301-100000000.csv", records)
    (batch,) = run(spark, config).batches
    assert (batch.applied, batch.quarantined) == (3, 0)

    # Compared as text in Spark: Python's datetime.fromtimestamp, which PySpark's collect uses, fails on
    # 0001-01-01 00:00 itself (it looks a day back, at year 0).
    as_text = {int(i): (d, t) for i, d, t in ANCIENT}
    expected = {int(i): (date.fromisoformat(d), datetime.fromisoformat(t)) for i, d, t in ANCIENT}
    paths = table_paths(config, config.tables["visits"])
    for path in (paths.history, paths.latest):
        rows = (
            spark.read.format("delta")
            .load(path)
            .select("id", F.col("born").cast("string"), F.col("seen").cast("string"))
        )
        assert {r["id"]: (r["born"], r["seen"]) for r in rows.collect()} == as_text
        other = DeltaTable(path).to_pyarrow_table(columns=["id", "born", "seen"]).to_pylist()  # delta-rs
        assert {r["id"]: (r["born"], r["seen"].replace(tzinfo=None)) for r in other} == expected


def test_a_340b_placeholder_date_of_year_one_is_parsed_and_written(spark, tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"coveredEntities": [entity(terminationDate="0001-01-01T00:00:00")]}))
    columns = {"ce_id": "bigint", "termination_date": "timestamp"}
    frame = arrow_to_spark(spark, parse_export(export).tables["dim_ce"], columns)
    frame.write.format("delta").save(str(tmp_path / "dim_ce"))
    stored = spark.read.format("delta").load(str(tmp_path / "dim_ce")).select(F.col("termination_date").cast("string"))
    assert stored.first()[0] == "0001-01-01 00:00:00"


def test_a_340b_date_of_year_zero_is_refused_by_name(tmp_path):
    """Year 0 is no date: Python refuses it, and Arrow's fast path must not take it as one."""
    export = tmp_path / "export.json"
    export.write_text(json.dumps({"coveredEntities": [entity(terminationDate="0000-01-01T00:00:00")]}))
    with pytest.raises(SnapshotError, match="terminationDate: '0000-01-01T00:00:00' is not a datetime"):
        parse_export(export)
