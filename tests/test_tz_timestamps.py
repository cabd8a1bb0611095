"""A time with a zone is stored as its UTC instant, whatever form DMS writes it in (found by review).

DMS writes Oracle's TIMESTAMP WITH [LOCAL] TIME ZONE as text (STRING) and SQL Server's datetimeoffset as text
(WSTRING), in CSV and in Parquet (a STRING column); PostgreSQL's timestamptz is a DATETIME (a Parquet TIMESTAMP).
Spark's cast reads every offset form (Z, +hh, +hhmm, +hh:mm, a space before it or not, 9 fraction digits), but a
region name only as the tz database spells it: Oracle prints its region names upper case, so
'2021-03-14 01:00:00.000000 AMERICA/LOS_ANGELES' was quarantined as not a timestamp. A region's wall time in the
hour its clocks go back names two instants: it is the first, as java.time (and so Spark, Athena, Trino) reads it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakehouse.sources.db_types import timestamp_problem, timestamp_text
from tests.conftest import make_config
from tests.dms_tables import land, read, run

UTC_TEXT = "yyyy-MM-dd HH:mm:ss.SSSSSS"  # the instant's figures in the session's zone, UTC

# What DMS may write for a time with a zone, and the instant it is.
FORMS = [
    ("2021-03-14 01:00:00.000000000 -07:00", "2021-03-14 08:00:00.000000"),  # Oracle TZH:TZM, 9 digits
    ("2021-03-14 01:00:00.123456789 -07:00", "2021-03-14 08:00:00.123456"),  # nanoseconds: Spark keeps micros
    ("2021-03-14 01:00:00.000000 AMERICA/LOS_ANGELES", "2021-03-14 09:00:00.000000"),  # Oracle TZR (PST)
    ("2021-03-14 03:00:00.000000 AMERICA/LOS_ANGELES", "2021-03-14 10:00:00.000000"),  # the same day in PDT
    ("2021-03-14 01:00:00.000000 US/PACIFIC", "2021-03-14 09:00:00.000000"),
    ("2021-03-14 01:00:00.000000 US/PACIFIC ", "2021-03-14 09:00:00.000000"),  # a blank after it, as a CHAR pads
    ("2021-03-14 08:00:00.000000 AMERICA/ARGENTINA/BUENOS_AIRES", "2021-03-14 11:00:00.000000"),
    ("2021-03-14 08:00:00.000000 AMERICA/PORT-AU-PRINCE", "2021-03-14 12:00:00.000000"),
    ("2021-03-14 01:00:00.000000 ETC/GMT+7", "2021-03-14 08:00:00.000000"),
    ("2021-03-14 01:00:00.000000 America/Los_Angeles", "2021-03-14 09:00:00.000000"),
    ("2021-03-14 01:00:00.0000000 -07:00", "2021-03-14 08:00:00.000000"),  # SQL Server datetimeoffset(7)
    ("2021-03-14 08:00:00.000000+00", "2021-03-14 08:00:00.000000"),  # PostgreSQL's +hh
    ("2021-03-14 13:30:00.000000+05:30", "2021-03-14 08:00:00.000000"),
    ("2021-03-14 13:30:00.000000 +0530", "2021-03-14 08:00:00.000000"),
    ("2021-03-14 08:00:00.000000Z", "2021-03-14 08:00:00.000000"),  # a Parquet TIMESTAMP adjusted to UTC
    ("2021-03-14 08:00:00.000000", "2021-03-14 08:00:00.000000"),  # DMS DATETIME: UTC already
    ("2021-11-07 01:30:00 -08:00", "2021-11-07 09:30:00.000000"),  # the repeated hour with an offset: one instant
    ("2021-11-07 01:30:00 US/PACIFIC", "2021-11-07 08:30:00.000000"),  # without one: the first of the two
    ("2021-10-31 01:59:59 EUROPE/LONDON", "2021-10-31 00:59:59.000000"),
]


def test_every_form_dms_writes_reads_as_its_utc_instant(spark):
    texts = spark.createDataFrame([(text,) for text, _ in FORMS], "text string")

    read_back = texts.select(
        "text",
        F.date_format(F.try_to_timestamp(timestamp_text(F.col("text"))), UTC_TEXT).alias("utc"),
        timestamp_problem(F.col("text")).alias("problem"),
    )

    expected = spark.createDataFrame([(*form, None) for form in FORMS], "text string, utc string, problem string")
    assert_df_equality(read_back, expected, ignore_row_order=True)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2021-03-14 01:00:00 MARS/OLYMPUS", "has the time zone region 'MARS/OLYMPUS', which the tz database does not"),
        ("2021-03-14 01:00:00 -07:00 PDT", "is not a valid timestamp (yyyy-mm-dd hh:mm:ss[.fraction], then "),
        ("14-MAR-21 01.00.00.000000 AM -07:00", "is not a valid timestamp"),
    ],
)  # fmt: skip
def test_a_text_that_is_not_an_instant_says_why(spark, text, problem):
    (row,) = spark.createDataFrame([(text,)], "text string").select(timestamp_problem(F.col("text"))).collect()

    assert row[0].startswith(problem)


def tz_config(root: Path, **source: object):
    table = {
        "primary_key": ["id"],
        "source": {
            "kind": "dms",
            "dialect": "oracle",
            "timestamp_column": "ts",
            "columns": {"ts": "VARCHAR2(30)", "id": "NUMBER(10)", "at": "TIMESTAMP(9) WITH TIME ZONE"},
            **source,
        },
    }
    return make_config(root, {"people": table})


def test_an_oracle_time_with_a_zone_is_stored_as_its_utc_instant_and_an_unreadable_one_quarantined(spark, tmp_path):
    config = tz_config(tmp_path)
    t = "2026-03-01 09:00:00"
    land(
        config,
        "20260301-100000000.csv",
        [
            ["I", t, "1", "2021-03-14 01:00:00.000000000 -07:00"],
            ["I", t, "2", "2021-03-14 01:00:00.000000 AMERICA/LOS_ANGELES"],
            ["I", t, "3", "2021-03-14 01:00:00.000000 US/PACIFIC"],
            ["I", t, "4", "2021-11-07 01:30:00.000000 US/PACIFIC"],
            ["I", t, "5", "2021-03-14 01:00:00.000000 MARS/OLYMPUS"],
            ["I", t, "6", "2021-11-07 01:30:00.000000000 -08:00"],
            ["I", t, "7", "2021-11-07 01:30:00 America/Los_Angeles"],  # the repeated hour: the first instant
        ],
    )

    (batch,) = run(spark, config).batches

    latest = read(spark, config, "latest").select("id", F.date_format("at", UTC_TEXT).alias("at"))
    expected = spark.createDataFrame(
        [
            (1, "2021-03-14 08:00:00.000000"),
            (2, "2021-03-14 09:00:00.000000"),
            (3, "2021-03-14 09:00:00.000000"),
            (4, "2021-11-07 08:30:00.000000"),
            (6, "2021-11-07 09:30:00.000000"),
            (7, "2021-11-07 08:30:00.000000"),
        ],
        "id bigint, at string",
    )
    assert_df_equality(latest, expected, ignore_row_order=True)
    assert batch.quarantine_reasons == {"type_mismatch": 1}
    details = {r.source_row: r.detail for r in read(spark, config, "quarantine").collect()}
    assert details[4] == (
        "column at: '2021-03-14 01:00:00.000000 MARS/OLYMPUS' has the time zone region 'MARS/OLYMPUS', which the tz "
        "database does not know"
    )


def test_a_parquet_file_holds_the_zone_as_text_or_as_a_utc_timestamp_and_both_read_as_the_instant(spark, tmp_path):
    config = tz_config(
        tmp_path,
        format="parquet",
        columns={"ts": "VARCHAR2(30)", "id": "NUMBER(10)", "at": "TIMESTAMP WITH TIME ZONE", "pg": "TIMESTAMP"},
    )
    stamp = pa.array([1615708800000000, 1615708800000000], pa.timestamp("us", tz="UTC"))  # 2021-03-14 08:00 UTC
    table = pa.table(
        {
            "ts": ["2026-03-01 09:00:00", "2026-03-01 09:00:00"],
            "id": [1, 2],
            "at": ["2021-03-14 01:00:00.000000000 -07:00", "2021-03-14 00:00:00.000000 AMERICA/LOS_ANGELES"],
            "pg": stamp,  # what a PostgreSQL timestamptz (DMS: DATETIME) is in a Parquet file
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    folder = Path(config.tables["people"].source.path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "LOAD00000001.parquet").write_bytes(out.getvalue())

    run(spark, config)

    latest = read(spark, config, "latest").select(
        "id", F.date_format("at", UTC_TEXT).alias("at"), F.date_format("pg", UTC_TEXT).alias("pg")
    )
    instant = "2021-03-14 08:00:00.000000"
    expected = spark.createDataFrame([(1, instant, instant), (2, instant, instant)], "id bigint, at string, pg string")
    assert_df_equality(latest, expected, ignore_row_order=True, ignore_nullable=True)
