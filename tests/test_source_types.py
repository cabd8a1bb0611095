"""Column types written as the source database names them mean what that database means (found by review).

The YAML's column types may be the source's own, but they were mapped without knowing the source: an Oracle DATE
(DMS: DATETIME, with a time of day) became a Spark date, and Spark's cast keeps 2024-01-02 of 2024-01-02 10:30:00,
the time lost without a word; an Oracle or SQL Server FLOAT (a double) became a 4-byte float.
"""

from __future__ import annotations

from datetime import date

import pytest

from lakehouse.config import load_config
from tests.conftest import make_config
from tests.dms_tables import land, read, run
from tests.test_config import config_error, document, people, write


def dated_config(root, columns: dict[str, str]):
    table = {"primary_key": ["id"], "source": {"kind": "dms", "timestamp_column": "ts", "columns": columns}}
    return make_config(root, {"people": table})


def test_a_date_value_with_a_time_of_day_is_a_type_mismatch_never_cut(spark, tmp_path):
    config = dated_config(tmp_path, {"ts": "string", "id": "bigint", "hired": "date"})
    land(
        config,
        "20260301-100000000.csv",
        [
            ["I", "2026-03-01 09:00:00", "1", "2024-01-02"],
            ["I", "2026-03-01 09:00:00", "2", "2024-01-02 00:00:00"],  # midnight: nothing to lose
            ["I", "2026-03-01 09:00:00", "3", "2024-01-02 10:30:00"],
        ],
    )

    (batch,) = run(spark, config).batches

    assert {r.id: r.hired for r in read(spark, config, "latest").collect()} == {
        1: date(2024, 1, 2),
        2: date(2024, 1, 2),
    }
    assert batch.quarantine_reasons == {"type_mismatch": 1}
    (row,) = read(spark, config, "quarantine").collect()
    assert row.source_row == 2 and "column hired: '2024-01-02 10:30:00' has a time of day" in row.detail
    assert "dialect: oracle" in row.detail


# --- the YAML's types, with and without the source's dialect ------------------------------------------------------


def loaded(tmp_path, columns: dict[str, str], **source) -> dict[str, str]:
    table = people()
    table["source"].update(columns={"ts": "string", "id": "bigint", **columns}, **source)
    return load_config(write(tmp_path, document(people=table))).tables["people"].source.columns


@pytest.mark.parametrize(
    ("dialect", "columns", "spark"),
    [
        ("oracle", ["DATE", "FLOAT", "REAL", "NUMBER(10)", "VARCHAR2(30)", "timestamp"],
         ["timestamp", "double", "double", "bigint", "string", "timestamp"]),
        ("sqlserver", ["FLOAT", "real", "datetime2(7)", "date", "timestamp", "tinyint"],
         ["double", "float", "timestamp", "date", "string", "smallint"]),
        ("mysql", ["REAL", "float(10,2)", "double", "date", "datetime", "tinyint(1)"],
         ["double", "float", "double", "date", "timestamp", "boolean"]),
        ("postgres", ["float", "real", "float8", "date", "timestamptz", "numeric(10,2)"],
         ["double", "float", "double", "date", "timestamp", "decimal(10,2)"]),
    ],
)  # fmt: skip
def test_with_a_dialect_the_types_are_read_as_that_database_means_them(tmp_path, dialect, columns, spark):
    names = [f"c{i}" for i in range(len(columns))]

    mapped = loaded(tmp_path, dict(zip(names, columns, strict=True)), dialect=dialect)

    assert [mapped[n] for n in names] == spark
    assert (mapped["ts"], mapped["id"]) == ("string", "bigint")  # Spark's names the source means alike


def test_without_a_dialect_a_bare_float_among_source_names_is_refused_naming_table_column_and_what_to_write(tmp_path):
    """A double in PostgreSQL, Oracle and SQL Server, a 4-byte float in MySQL and Spark: it was read as the latter.
    Among Spark's own names only, it is Spark's float (a valid Spark SQL type is never refused)."""
    table = people()
    table["source"]["columns"]["weight"] = "FLOAT"
    assert loaded(tmp_path, {"weight": "float"})["weight"] == "float"

    table["source"]["columns"]["name"] = "varchar(40)"
    error = config_error(write(tmp_path, document(people=table)))

    assert error.key == "tables.people.source.columns"
    assert "column 'weight' has type 'FLOAT'" in str(error) and "(varchar(40))" in str(error)
    assert "write double (or float(24)" in str(error) and "dialect:" in str(error)


def test_without_a_dialect_an_oracle_tables_date_is_refused(tmp_path):
    table = people()
    table["source"]["columns"].update(salary="NUMBER(8,2)", hired="DATE")

    error = config_error(write(tmp_path, document(people=table)))

    assert error.key == "tables.people.source.columns"
    assert "column 'hired' has type 'DATE'" in str(error) and "Oracle's (NUMBER(8,2))" in str(error)
    assert "write timestamp, or set `dialect: oracle`" in str(error)


def test_without_a_dialect_spark_names_keep_their_spark_meaning(tmp_path):
    """The shipped configurations and earlier tables keep loading: `date` is Spark's date (a value with a time is
    quarantined, above), `real` Spark's 4-byte REAL, a float with its size is that size."""
    mapped = loaded(tmp_path, {"born": "date", "score": "real", "small": "float(24)", "wide": "float(53)"})

    assert (mapped["born"], mapped["score"], mapped["small"], mapped["wide"]) == ("date", "float", "float", "double")


def test_an_unknown_dialect_is_refused(tmp_path):
    table = people()
    table["source"]["dialect"] = "db2"

    error = config_error(write(tmp_path, document(people=table)))

    assert error.key == "tables.people.source.dialect"
    assert "'postgres'" in str(error) and "'sqlserver'" in str(error)
