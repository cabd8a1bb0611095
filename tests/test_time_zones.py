"""The engine's answers do not depend on the driver's local time zone.

PySpark sends a naive datetime literal through time.mktime in the Python process's zone, and collect() turns a
TIMESTAMP into a naive datetime in that zone; spark.sql.session.timeZone=UTC changes neither. Production drivers
run in UTC, laptops do not: these tests set the process's zone (TZ) while they use the shared session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.changes.snapshot_diff import snapshot_changes
from lakehouse.readers import as_of_local, latest_local, rows_of_spark
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of, latest_at, parse_time
from tests.conftest import make_config, write_dms_csv
from tests.dms_tables import land, people_config, read, run, seq
from tests.test_readers import CDC, LOAD, TYPED, same


def micros(at: datetime) -> int:
    """A naive UTC time as Spark's unix_micros gives it."""
    return (at.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets the Python process's time zone; the one before is back after the test."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_a_snapshot_is_valid_from_midnight_utc_of_its_day_in_any_zone(spark, local_zone):
    local_zone("America/New_York")
    snapshot = spark.createDataFrame([(1, "a")], "id bigint, name string")
    changes = snapshot_changes(
        snapshot,
        snapshot.limit(0),
        key=["id"],
        values=["id", "name"],
        day=date(2026, 3, 2),
        source_file="340b_2026-03-02.json",
        batch_id=20260302,
    )
    (row,) = changes.select(F.unix_micros("_valid_from").alias("at"), "_sequence").collect()
    assert row["at"] == micros(datetime(2026, 3, 2))
    assert row["_sequence"].split("-")[1] == "20260302000000000000"


def test_a_late_change_in_the_repeated_hour_of_a_fall_back_lands_in_its_interval(spark, tmp_path, local_zone):
    # 2025-11-02 in New York: 01:30 happens twice, at 05:30 UTC (EDT) and at 06:30 UTC (EST).
    local_zone("America/New_York")
    config = people_config(tmp_path)
    day = "2025-11-02 "
    land(config, "LOAD00000001.csv", [[day + "04:00:00", "1", "Ann", "1", "", ""]])
    run(spark, config)
    land(config, "20251102-060000000.csv", [["U", day + "06:00:00", "1", "Ann Lee", "1", seq(10), "1"]])
    run(spark, config)
    # The late change is at 05:30 UTC, the first 01:30. The C library's mktime picks either 01:30 for a naive
    # time (by its last answer): after a winter time it picks the second, an hour after the change.
    time.mktime(datetime(2026, 1, 1).timetuple())
    land(config, "20251102-063000000.csv", [["U", day + "05:30:00", "1", "Ann Old", "1", seq(5), "1"]])
    run(spark, config)
    versions = (
        read(spark, config, "history")
        .orderBy("_sequence")
        .select("name", F.unix_micros("_valid_from"), F.unix_micros("_valid_to"))
        .collect()
    )
    at = {t: micros(datetime.fromisoformat(day + t)) for t in ("04:00:00", "05:30:00", "06:00:00")}
    assert [tuple(v) for v in versions] == [
        ("Ann", at["04:00:00"], at["05:30:00"]),
        ("Ann Old", at["05:30:00"], at["06:00:00"]),
        ("Ann Lee", at["06:00:00"], None),
    ]


def test_spark_rows_are_utc_whatever_the_zone_even_at_the_open_end(spark, local_zone):
    frame = spark.sql(
        "SELECT 1 AS id, TIMESTAMP '9999-12-31 23:59:59' AS expiration_stp, TIMESTAMP '2025-11-02 05:30:00.5' AS at, "
        "TIMESTAMP_NTZ '2026-03-01 08:00:00' AS local_at, CAST(NULL AS TIMESTAMP) AS gone, DATE '2026-03-02' AS day"
    )
    expected = [
        (
            1,
            datetime(9999, 12, 31, 23, 59, 59),
            datetime(2025, 11, 2, 5, 30, 0, 500000),
            datetime(2026, 3, 1, 8),
            None,
            date(2026, 3, 2),
        )
    ]
    for zone in ("Europe/Berlin", "America/New_York", "Asia/Kolkata"):
        local_zone(zone)
        rows = rows_of_spark(frame, key=["id"], limit=5)
        assert rows.rows == expected and rows.total == 1, zone


@pytest.fixture(scope="module")
def typed(spark, tmp_path_factory):
    """The table of tests/test_readers.py: every kind of value, an open end at 9999-12-31 23:59:59."""
    config = make_config(tmp_path_factory.mktemp("zones"), {"typed": TYPED})
    landing = Path(config.tables["typed"].source.path)
    write_dms_csv(landing, "LOAD00000001.csv", LOAD)
    run(spark, config)
    write_dms_csv(landing, "20260301-090000000.csv", CDC)
    run(spark, config)
    return table_paths(config, config.tables["typed"])


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_delta_rs_and_spark_answer_alike_in_any_zone(spark, typed, local_zone, zone):
    local_zone(zone)
    for at in ("2026-03-01 08:00:00", "2026-03-01 09:15:00"):
        when = datetime.fromisoformat(at)
        same(
            as_of_local(typed.history, when, key=["id"], limit=20),
            rows_of_spark(as_of(spark, typed.history, when), key=["id"], limit=20),
        )
    same(
        latest_local(typed.latest, key=["id"], limit=20),
        rows_of_spark(latest_at(spark, typed.latest), key=["id"], limit=20),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:00:00+02:00", datetime(2026, 3, 2, 8)),
        ("2026-03-02 10:00:00-05:00", datetime(2026, 3, 2, 15)),
        ("2026-03-02T01:00:00+02:00", datetime(2026, 3, 1, 23)),
        ("2026-03-02T10:00:00Z", datetime(2026, 3, 2, 10)),
        ("2026-03-02 10:00:00.5", datetime(2026, 3, 2, 10, 0, 0, 500000)),
        ("2026-03-02", datetime(2026, 3, 2)),
    ],
)
def test_a_time_with_an_offset_is_converted_to_utc(text, expected):
    assert parse_time(text) == expected


def test_a_few_rows_written_as_literals_keep_their_utc_times_in_any_zone(spark, local_zone):
    """The snapshot log's and the privacy log's times are UTC `now()`s written through `rows_frame`."""
    from lakehouse.tables import rows_frame

    local_zone("Asia/Kolkata")
    at = datetime(2026, 3, 2, 10, 0, 0, 250_000)
    frame = rows_frame(spark, [(1, at, date(2026, 3, 2))], "n INT, at TIMESTAMP, day DATE")
    (row,) = frame.select(F.unix_micros("at").alias("at"), F.col("day").cast("string").alias("day")).collect()
    assert (row["at"], row["day"]) == (micros(at), "2026-03-02")
