"""The read commands answer local tables with delta-rs: the rows must be Spark's, value for value."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from lakehouse.cli import main
from lakehouse.errors import LakehouseError, TableNotFoundError
from lakehouse.readers import Rows, as_of_local, count_rows, format_rows, latest_local, rows_of_spark
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of, latest_at
from tests.conftest import make_config, write_dms_csv
from tests.dms_tables import run, seq

# Every kind of value the readers convert: decimals, dates, both timestamp types (one at the ID304B open
# end), booleans, NULLs in every column.
TYPED = {
    "primary_key": ["id"],
    "source": {
        "kind": "dms",
        "timestamp_column": "ts",
        "change_seq_column": "seq",
        "columns": {
            "ts": "string",
            "id": "bigint",
            "amount": "decimal(12,2)",
            "born": "date",
            "seen_at": "timestamp",
            "local_at": "timestamp_ntz",
            "active": "boolean",
            "note": "string",
            "seq": "string",
        },
    },
}
LOAD = [
    [
        "2026-03-01 08:00:00",
        "1",
        "10.50",
        "1950-01-02",
        "9999-12-31 23:59:59",
        "2026-03-01 08:00:00",
        "true",
        "Ann",
        "",
    ],
    ["2026-03-01 08:00:00", "2", "", "", "", "", "", "", ""],
    ["2026-03-01 08:00:00", "3", "-0.01", "2001-12-31", "2026-02-28 23:59:59.999999", "", "false", "x,y", ""],
]
CDC = [
    ["U", "2026-03-01 09:00:00", "1", "11.00", "1950-01-02", "2026-03-01 09:00:00.5", "", "true", "Ann B", seq(1)],
    ["D", "2026-03-01 09:30:00", "3", "", "", "", "", "", "", seq(2)],
    ["I", "2026-03-01 10:00:00", "4", "99999999.99", "", "", "2026-03-01 10:00:00", "", "", seq(3)],
]


@pytest.fixture(scope="module")
def typed(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    config = make_config(root, {"typed": TYPED})
    landing = Path(config.tables["typed"].source.path)
    write_dms_csv(landing, "LOAD00000001.csv", LOAD)
    run(spark, config)
    write_dms_csv(landing, "20260301-090000000.csv", CDC)
    run(spark, config)
    return config, table_paths(config, config.tables["typed"])


def same(local: Rows | None, spark_rows: Rows) -> None:
    assert local is not None and local.reader == "delta-rs"
    assert dataclasses.replace(local, reader="spark") == spark_rows


@pytest.mark.parametrize(
    "at", ["2026-03-01 07:00:00", "2026-03-01 08:00:00", "2026-03-01 09:15:00", "2026-03-01 09:30:00", "2026-03-02"]
)
def test_as_of_through_delta_rs_equals_spark(spark, typed, at):
    _, paths = typed
    when = datetime.fromisoformat(at)
    for limit in (2, 20):
        same(
            as_of_local(paths.history, when, key=["id"], limit=limit),
            rows_of_spark(as_of(spark, paths.history, when), key=["id"], limit=limit),
        )


@pytest.mark.parametrize("version", [None, 1, 2])
def test_latest_through_delta_rs_equals_spark(spark, typed, version):
    _, paths = typed
    same(
        latest_local(paths.latest, key=["id"], limit=20, version=version),
        rows_of_spark(latest_at(spark, paths.latest, version=version), key=["id"], limit=20),
    )


def test_the_values_are_the_ones_written(typed):
    _, paths = typed
    rows = latest_local(paths.latest, key=["id"], limit=20)
    first = dict(zip(rows.columns, rows.rows[0], strict=True))
    assert str(first["amount"]) == "11.00" and first["local_at"] is None and first["note"] == "Ann B"
    assert first["seen_at"] == datetime(2026, 3, 1, 9, 0, 0, 500000)
    history = as_of_local(paths.history, datetime(2026, 3, 1, 8), key=["id"], limit=20)
    assert dict(zip(history.columns, history.rows[0], strict=True))["seen_at"] == datetime(9999, 12, 31, 23, 59, 59)
    assert [r[0] for r in rows.rows] == [1, 2, 4] and rows.total == 3


def test_counts_through_delta_rs_equal_spark(spark, typed):
    _, paths = typed
    for path in (paths.history, paths.latest, paths.quarantine):
        assert count_rows(path) == spark.read.format("delta").load(path).count()


def test_a_missing_table_or_version_is_a_clear_error(typed, tmp_path):
    _, paths = typed
    with pytest.raises(TableNotFoundError, match="run `lakehouse run` first"):
        latest_local(str(tmp_path / "nothing"), key=["id"], limit=5)
    with pytest.raises(LakehouseError, match=r"has no version 7; its versions are 0\.\.2"):
        latest_local(paths.latest, key=["id"], limit=5, version=7)


def test_tables_that_are_not_local_are_left_to_spark():
    assert as_of_local("s3://bucket/lake/t/history", datetime(2026, 3, 1), key=["id"], limit=5) is None
    assert count_rows("s3://bucket/lake/t/latest") is None


def test_read_commands_answer_without_spark(typed, tmp_path, monkeypatch, capsys):
    config, _ = typed
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False))

    def no_spark(*args, **kwargs):
        raise AssertionError("a local read must not start Spark")

    monkeypatch.setattr("lakehouse.cli._spark", no_spark)
    assert main(["--config", str(config_file), "as-of", "typed", "--at", "2026-03-01 09:15:00"]) == 0
    out = capsys.readouterr().out
    assert "typed as of 2026-03-01 09:15:00 (UTC): 3 rows" in out
    assert "|11.00 " in out and "|2026-03-01 09:00:00.500000|" in out
    assert main(["--config", str(config_file), "latest", "typed", "--version", "1", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "typed latest: 3 rows" in out and "only showing the first 1 rows" in out


def test_the_table_format_lines_up():
    rows = Rows(columns=["id", "name"], rows=[(1, None), (22, "Ann")], total=3, reader="delta-rs")
    assert format_rows(rows).splitlines() == [
        "+--+----+",
        "|id|name|",
        "+--+----+",
        "|1 |NULL|",
        "|22|Ann |",
        "+--+----+",
        "only showing the first 2 rows",
    ]
