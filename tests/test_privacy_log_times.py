"""The privacy log's times are UTC instants, read back as such whatever the machine's time zone.

Found by review: the log's `at` was collected as the machine's local time, so on a laptop in New York a forget at
06:10 UTC on the night the clocks fall back (01:10 EST) sorted before a readmission at 05:30 UTC (01:30 EDT): the
patient's last event looked like the readmission and the forgotten patient went back into the zone. And more than
256 events were written through `createDataFrame`, which took their naive UTC times as local ones.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from lakehouse.apply.non_phi import NonPhiZone
from lakehouse.apply.privacy_log import Event, append_all, forgotten, log_path, read_events
from lakehouse.masking import MaskingKey


@pytest.fixture
def new_york(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_events_keep_their_order_across_a_fall_back_hour_on_a_machine_east_or_west_of_utc(spark, tmp_path, new_york):
    zone = NonPhiZone(root=str(tmp_path / "zone"), key=MaskingKey(b"k" * 32), privacy=str(tmp_path / "privacy"))
    readmitted = Event("readmitted", "p1", datetime(2025, 11, 2, 5, 30))  # 01:30 EDT
    forgot = Event("forgotten", "p1", datetime(2025, 11, 2, 6, 10))  # 01:10 EST, 40 minutes later
    append_all(spark, zone, [readmitted, forgot])

    events = read_events(spark, zone)
    assert [(e.event, e.at) for e in events] == [("readmitted", readmitted.at), ("forgotten", forgot.at)]
    assert forgotten(events) == {"p1"}


def test_more_events_than_literals_are_written_at_their_utc_times(spark, tmp_path, new_york):
    zone = NonPhiZone(root=str(tmp_path / "zone"), key=MaskingKey(b"k" * 32), privacy=str(tmp_path / "privacy"))
    start = datetime(2025, 11, 2, 4, 0)
    many = [Event("forgotten", f"p{i}", start + timedelta(minutes=i)) for i in range(300)]
    append_all(spark, zone, many)

    assert sorted((e.patient, e.at) for e in read_events(spark, zone)) == sorted((e.patient, e.at) for e in many)
    stored = spark.read.format("delta").load(log_path(zone)).select("patient", F.date_format("at", "HH:mm"))
    assert dict(stored.collect())["p0"] == "04:00"  # the instant itself, shown in the session's UTC
