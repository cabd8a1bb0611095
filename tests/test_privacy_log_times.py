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

from lakehouse.apply import privacy_log
from lakehouse.apply.non_phi import NonPhiZone
from lakehouse.apply.privacy_log import Event, append, append_all, forgotten, log_path, read_events
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


def test_a_forget_after_a_readmission_stays_last_when_its_host_clock_is_behind(spark, tmp_path):
    """Found by review: the log was ordered by the clock of the host that appended each event. A readmission from a
    host whose clock is ahead (an EMR stream) followed by a forget from one whose clock is behind (a laptop) sorted the
    forget first: the readmission looked like the last event and the forgotten patient went back into the zone.
    The log's order is now the order of its commits, whatever the clocks say."""
    zone = NonPhiZone(root=str(tmp_path / "zone"), key=MaskingKey(b"k" * 32), privacy=str(tmp_path / "privacy"))
    noon = datetime(2026, 1, 5, 12, 0)
    append(spark, zone, Event("forget_started", "p1", noon))
    append(spark, zone, Event("readmitted", "p1", noon + timedelta(hours=1)))  # a host an hour ahead
    append(spark, zone, Event("forget_started", "p1", noon + timedelta(minutes=30)))  # then one half an hour behind

    events = read_events(spark, zone)
    assert [e.event for e in events] == ["forget_started", "readmitted", "forget_started"]
    assert events[0].at < events[1].at < events[2].at
    assert forgotten(events) == {"p1"}


def test_an_append_that_raced_another_still_goes_after_it(spark, tmp_path, monkeypatch):
    """Two appends that read the log at once: the one that commits second finds the other's commit (Delta keeps
    one application transaction for the log's appends) and writes its event after it, not at its own clock."""
    zone = NonPhiZone(root=str(tmp_path / "zone"), key=MaskingKey(b"k" * 32), privacy=str(tmp_path / "privacy"))
    noon = datetime(2026, 1, 5, 12, 0)
    append(spark, zone, Event("forget_started", "p1", noon))
    real_head, raced = privacy_log._head, []

    def head_then_a_readmission_commits(spark, zone):  # the other writer commits between this one's read and write
        seen = real_head(spark, zone)
        if not raced:
            raced.append(True)
            append(spark, zone, Event("readmitted", "p1", noon + timedelta(hours=1)))
        return seen

    monkeypatch.setattr(privacy_log, "_head", head_then_a_readmission_commits)
    append(spark, zone, Event("forget_started", "p1", noon + timedelta(minutes=30)))

    events = read_events(spark, zone)
    assert [e.event for e in events] == ["forget_started", "readmitted", "forget_started"]
    assert forgotten(events) == {"p1"}
    assert len(spark.read.format("delta").load(log_path(zone)).collect()) == 3  # each event once
