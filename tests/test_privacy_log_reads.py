"""The privacy log is read again only when it has a new commit, and every new commit is seen.

A batch, a consent sync and a forget each read the log several times (0.3 s each on the privacy lake, a dozen per
run); a local log's rows are kept by its newest commit file. A forget appended by another writer, or a log put back
from a copy and committed to again up to the same version, must never be answered from the rows kept.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import deltalake
import pyarrow as pa

from lakehouse.apply.non_phi import NonPhiZone
from lakehouse.apply.privacy_log import Event, append, forgotten, log_path, read_events
from lakehouse.masking import MaskingKey
from tests.spark_jobs import jobs_run_by

NOON = datetime(2026, 1, 5, 12, 0)


def _zone(tmp_path) -> NonPhiZone:
    return NonPhiZone(root=str(tmp_path / "zone"), key=MaskingKey(b"k" * 32), privacy=str(tmp_path / "privacy"))


def test_a_log_read_again_without_a_new_commit_runs_no_job_and_each_append_is_seen(spark, tmp_path):
    zone = _zone(tmp_path)
    assert read_events(spark, zone) == []
    append(spark, zone, Event("forgotten", "p1", NOON))
    first, jobs = jobs_run_by(spark, lambda: read_events(spark, zone))
    assert [e.patient for e in first] == ["p1"] and jobs
    again, jobs = jobs_run_by(spark, lambda: read_events(spark, zone))
    assert again == first and jobs == []

    append(spark, zone, Event("readmitted", "p1", NOON + timedelta(hours=1)))
    assert [e.event for e in read_events(spark, zone)] == ["forgotten", "readmitted"]
    assert forgotten(read_events(spark, zone)) == set()


def test_an_event_appended_by_another_writer_is_seen(spark, tmp_path):
    zone = _zone(tmp_path)
    append(spark, zone, Event("readmitted", "p2", NOON))
    assert forgotten(read_events(spark, zone)) == set()
    rows = deltalake.DeltaTable(log_path(zone)).to_pyarrow_table()
    later = pa.Table.from_pylist(
        [{**row, "event": "forgotten", "at": NOON + timedelta(hours=2)} for row in rows.to_pylist()], rows.schema
    )
    deltalake.write_deltalake(log_path(zone), later, mode="append")
    assert forgotten(read_events(spark, zone)) == {"p2"}


def test_a_log_put_back_from_a_copy_and_committed_to_again_is_read_anew(spark, tmp_path):
    zone = _zone(tmp_path)
    append(spark, zone, Event("forgotten", "p3", NOON))
    copy = tmp_path / "copy"
    shutil.copytree(log_path(zone), copy)
    append(spark, zone, Event("readmitted", "p3", NOON + timedelta(hours=1)))
    assert forgotten(read_events(spark, zone)) == set()  # version 1: p3 re-admitted

    shutil.rmtree(log_path(zone))
    shutil.copytree(copy, log_path(zone))  # the log as it was at version 0
    append(spark, zone, Event("forgotten", "p4", NOON + timedelta(hours=2)))  # version 1 again, other events
    assert forgotten(read_events(spark, zone)) == {"p3", "p4"}


def test_an_append_is_found_committed_though_another_landed_after_the_version_was_read(spark, tmp_path, monkeypatch):
    """Found by review: an append checks its tag among the commits since the version it read; one more append landing
    between the version's read and that check hid the tag, and the event was appended a second time."""
    from delta.tables import DeltaTable

    from lakehouse.apply import privacy_log

    zone = _zone(tmp_path)
    for hours in range(3):  # versions 0, 1, 2
        append(spark, zone, Event("forgotten", f"p{hours}", NOON + timedelta(hours=hours)))
    tag = DeltaTable.forPath(spark, log_path(zone)).history().where("version = 1").first()["userMetadata"]
    assert privacy_log._committed(spark, zone, 0, tag)
    newest = privacy_log._version
    monkeypatch.setattr(privacy_log, "_version", lambda spark, path: newest(spark, path) - 1)  # read before version 2
    assert privacy_log._committed(spark, zone, 0, tag)
    assert not privacy_log._committed(spark, zone, 1, tag)
