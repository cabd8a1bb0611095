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


def test_a_narrower_type_applies_and_one_the_table_cannot_take_is_named_with_both_types(spark, tmp_path):
    before = config_with(tmp_path)
    land(before, "20260301-090000000.csv", [["I", "2026-03-01 09:00:00", "1", "t", "3"]])
    assert run_once(spark, before)[0].ok

    narrower = config_with(tmp_path, visits="int")  # an int the bigint column holds: applied as before
    land(narrower, "20260301-100000000.csv", [["U", "2026-03-01 10:00:00", "1", "f", "4"]])
    (second,) = run_once(spark, narrower)
    assert second.ok, second.error
    paths = table_paths(narrower, narrower.tables["flags"])
    latest = spark.read.format("delta").load(paths.latest)
    assert latest.select("active", F.col("visits").cast("int")).collect() == [(False, 4)]

    other = config_with(tmp_path, active="smallint")  # tinyint(1)'s new mapping over a boolean column
    land(other, "20260301-110000000.csv", [["U", "2026-03-01 11:00:00", "1", "2", "4"]])
    (third,) = run_once(spark, other)
    assert not third.ok
    assert "flags" in third.error and "active" in third.error
    assert "boolean" in third.error and "smallint" in third.error and "columns:" in third.error
    assert spark.read.format("delta").load(paths.history).count() == 2  # nothing of the refused batch
