"""A change repeating an applied change's sequence with other values is reported, across batches as within one.

Within a batch two such rows are quarantined as `duplicate_sequence` (DESIGN rule 1). Across batches the second
was counted as a replay and nothing more: now it is still not applied (the first stays), but counted in the batch
record's `replay_conflicts` and logged. Found by review.
"""

from __future__ import annotations

import json
import logging

from tests.dms_tables import land, people_config, read, run, seq

T = "2026-03-01 "


def test_a_cross_batch_repeat_of_a_sequence_with_other_values_is_reported_and_the_first_kept(spark, tmp_path, caplog):
    config = people_config(tmp_path)
    land(config, "LOAD00000001.csv", [[T + "08:00:00", "1", "Ann", "1", "", ""]])
    land(config, "20260301-090000000.csv", [["U", T + "09:00:00", "1", "Ann B", "1", seq(1), "1"]])
    run(spark, config)
    land(config, "20260301-091000000.csv", [
        ["U", T + "09:00:00", "1", "Ann X", "1", seq(1), "1"],  # the sequence of the applied change, other values
        ["U", T + "09:05:00", "1", "Ann C", "1", seq(2), "1"],
    ])  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="lakehouse"):
        (batch,) = run(spark, config).batches

    assert (batch.replayed, batch.replay_conflicts, batch.applied, batch.quarantined) == (1, 1, 1, 0)
    assert batch.reconciles
    assert sorted(r.name for r in read(spark, config, "history").collect()) == ["Ann", "Ann B", "Ann C"]
    events = [json.loads(r.message) for r in caplog.records if r.message.startswith("{")]
    (logged,) = [e for e in events if e.get("event") == "replay_conflicts"]
    assert logged["rows"] == 1 and logged["table"] == "people"

    # A true replay (the same change again, in another file) is no conflict.
    land(config, "20260301-092000000.csv", [["U", T + "09:00:00", "1", "Ann B", "1", seq(1), "1"]])
    (again,) = run(spark, config).batches
    assert (again.replayed, again.replay_conflicts, again.applied) == (1, 0, 0)
