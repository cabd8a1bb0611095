"""A reload delivered in the same batch as CDC changes keeps one live version per key at every instant.

A LOAD row sorts before every CDC row of its key (DESIGN rule 1) but carries the reload's transfer time, later than
the CDC rows it sorts before. A version ended at the next version's start in that order: the first load's version
then stayed live until the reload's time, beside the CDC versions that began before it (two rows "as of" 09:30), and a
CDC change equal to the reload's row was dropped as unchanged (the stale load value "as of" 09:30). Found by review.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of
from tests.conftest import write_dms_csv
from tests.dms_tables import people_config, read, run, seq

T = "2026-03-01 "
FIRST = "20260401080000000000-3HL4kqtJlcpXroDTDmJ"  # the landing router's version folder of a reload


def names_as_of(spark, config, at: str) -> list[str]:
    history = table_paths(config, config.tables["people"]).history
    return sorted(r.name for r in as_of(spark, history, datetime.fromisoformat(T + at)).where("id = 1").collect())


def overlapping_live_versions(spark, config) -> int:
    """Pairs of versions of one key whose non-empty, not-deleted intervals intersect (must be 0)."""
    h = read(spark, config, "history").where("_valid_to IS NULL OR _valid_to > _valid_from").where("NOT _is_deleted")
    a, b = h.alias("a"), h.alias("b")
    far = F.lit("9999-12-31").cast("timestamp")
    return a.join(
        b,
        (F.col("a.id") == F.col("b.id"))
        & (F.col("a._sequence") < F.col("b._sequence"))
        & (F.col("a._valid_from") < F.coalesce(F.col("b._valid_to"), far))
        & (F.col("b._valid_from") < F.coalesce(F.col("a._valid_to"), far)),
    ).count()


def land_in_order(config, files: list[tuple[str, list[list[str]]]]) -> None:
    for i, (name, records) in enumerate(files):  # the file source takes files oldest first
        folder = Path(config.tables["people"].source.path) / Path(name).parent
        path = write_dms_csv(folder, Path(name).name, records)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))


@pytest.mark.parametrize("same_batch", [True, False], ids=["reload-with-the-cdc", "reload-after-the-cdc"])
def test_a_reload_after_cdc_changes_leaves_one_live_version_at_every_instant(spark, tmp_path, same_batch):
    config = people_config(tmp_path)
    run_land = [("LOAD00000001.csv", [[T + "08:00:00", "1", "Ann", "1", "", ""]])]
    land_in_order(config, run_land)
    run(spark, config)
    cdc = ("20260301-090000000.csv", [
        ["U", T + "09:00:00", "1", "Ann B", "1", seq(1), "1"],
        ["U", T + "09:45:00", "1", "Ann C", "1", seq(2), "1"],
    ])  # fmt: skip
    reload = (f"version={FIRST}/LOAD00000001.csv", [[T + "10:00:00", "1", "Ann C", "1", "", ""]])
    if same_batch:
        land_in_order(config, [cdc, reload])
        run(spark, config)
    else:
        land_in_order(config, [cdc])
        run(spark, config)
        land_in_order(config, [reload])
        run(spark, config)

    assert names_as_of(spark, config, "08:30:00") == ["Ann"]
    assert names_as_of(spark, config, "09:30:00") == ["Ann B"]
    assert names_as_of(spark, config, "09:50:00") == ["Ann C"]
    assert names_as_of(spark, config, "10:30:00") == ["Ann C"]
    assert overlapping_live_versions(spark, config) == 0
    assert [r.name for r in read(spark, config, "latest").collect()] == ["Ann C"]


def test_a_cdc_change_equal_to_a_later_reload_row_is_still_a_version_at_its_own_time(spark, tmp_path):
    """The CDC row sorts after the reload's equal row; it was dropped as unchanged, so 09:30 showed the load value."""
    config = people_config(tmp_path)
    land_in_order(config, [("LOAD00000001.csv", [[T + "08:00:00", "1", "Ann", "1", "", ""]])])
    run(spark, config)
    land_in_order(config, [
        ("20260301-090000000.csv", [["U", T + "09:00:00", "1", "Ann B", "1", seq(1), "1"]]),
        (f"version={FIRST}/LOAD00000001.csv", [[T + "10:00:00", "1", "Ann B", "1", "", ""]]),
    ])  # fmt: skip
    run(spark, config)

    assert names_as_of(spark, config, "08:30:00") == ["Ann"]
    assert names_as_of(spark, config, "09:30:00") == ["Ann B"]
    assert names_as_of(spark, config, "10:30:00") == ["Ann B"]
    assert overlapping_live_versions(spark, config) == 0
