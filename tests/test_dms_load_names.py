"""Full-load files are known by their DMS names, whatever the load's kind (found by review).

A parallel load of type `ranges` without segment-names writes `<table>/SEGMENT1_LOAD00000001.csv`, … (DMS user
guide, "Parallel load of partitioned sources"). Those files were read as CDC files: with IncludeOpForFullLoad and
a TimestampColumnName, a load row was a change dated at the time DMS transferred it, so a change committed during
the load sorted before the stale load row, and latest kept the old value.
"""

from __future__ import annotations

import json

from tests.dms_tables import land, people_config, read, run, seq


def test_a_segment_load_row_sorts_before_a_change_committed_during_the_load(spark, tmp_path):
    config = people_config(tmp_path, op_in_full_load=True)
    # The load read Ann at 10:00 and transferred her row at 10:05; she was renamed at 10:01, during the load.
    land(config, "SEGMENT1_LOAD00000001.csv", [["I", "2026-03-01 10:05:00.000000", "1", "Ann", "1.0", "", ""]])
    land(
        config,
        "20260301-100200000.csv",
        [["U", "2026-03-01 10:01:00.000000", "1", "Ann Renamed", "1.0", seq(1), "1"]],
    )

    (batch,) = run(spark, config).batches

    assert batch.quarantine_reasons == {}
    latest = read(spark, config, "latest").collect()
    assert [(r.id, r.name) for r in latest] == [(1, "Ann Renamed")]
    history = read(spark, config, "history").orderBy("_sequence").collect()
    assert [(r.name, r._sequence[0]) for r in history] == [("Ann", "0"), ("Ann Renamed", "1")]


def test_a_row_without_any_time_is_quarantined_naming_its_file(spark, tmp_path):
    config = people_config(tmp_path, timestamp_column=None, change_seq_column=None)
    land(config, "changes.csv", [["I", "x", "1", "Ann", "1.0", "", ""]])

    (batch,) = run(spark, config).batches

    assert batch.quarantine_reasons == {"no_commit_time": 1}
    (row,) = read(spark, config, "quarantine").collect()
    assert "'changes.csv' is neither a DMS full-load name" in row.detail
    assert "no timestamp_column" in row.detail
    assert json.loads(row.raw)["name"] == "Ann"
