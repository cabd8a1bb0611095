"""A column whose type in `columns:` no longer matches its table's (a YAML edit, a mapping that changed between
releases) is named with both types and what to do; a type the table's type holds still applies."""

from __future__ import annotations

import copy
from pathlib import Path

from pyspark.sql import functions as F

from lakehouse.runner import run_once
from lakehouse.tables import table_paths
from tests.conftest import make_config, write_dms_csv

FLAGS = {
    "primary_key": ["id"],
    "source": {
        "kind": "dms",
        "format": "csv",
        "timestamp_column": "ts",
        "columns": {"ts": "string", "id": "bigint", "active": "boolean", "visits": "bigint"},
    },
}


def config_with(root: Path, **types: str):
    table = copy.deepcopy(FLAGS)
    table["source"]["columns"].update(types)
    return make_config(root, {"flags": table})


def land(config, name: str, rows: list[list[str]]) -> None:
    write_dms_csv(Path(config.tables["flags"].source.path), name, rows)


def test_a_column_whose_configured_type_the_table_cannot_hold_is_named_with_both_types(spark, tmp_path):
    before = config_with(tmp_path)
    land(before, "20260301-090000000.csv", [["I", "2026-03-01 09:00:00", "1", "t", "3"]])
    (first,) = run_once(spark, before)
    assert first.ok, first.error

    after = config_with(tmp_path, active="smallint")
    land(after, "20260301-100000000.csv", [["U", "2026-03-01 10:00:00", "1", "2", "4"]])
    (second,) = run_once(spark, after)

    assert not second.ok
    assert "flags" in second.error and "active" in second.error
    assert "boolean" in second.error and "smallint" in second.error and "columns:" in second.error
    history = spark.read.format("delta").load(table_paths(after, after.tables["flags"]).history)
    assert history.count() == 1


def test_a_narrower_configured_type_the_table_holds_still_applies(spark, tmp_path):
    before = config_with(tmp_path)
    land(before, "20260301-090000000.csv", [["I", "2026-03-01 09:00:00", "1", "t", "3"]])
    assert run_once(spark, before)[0].ok

    after = config_with(tmp_path, visits="int")
    land(after, "20260301-100000000.csv", [["U", "2026-03-01 10:00:00", "1", "f", "4"]])
    (second,) = run_once(spark, after)

    assert second.ok, second.error
    latest = spark.read.format("delta").load(table_paths(after, after.tables["flags"]).latest)
    assert latest.select("active", F.col("visits").cast("int")).collect() == [(False, 4)]
