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
            # Found by review: Spark's date cast keeps the day of any text after a space, an era included.
            ["I", "2026-03-01 09:00:00", "4", "0044-03-15 BC"],
            ["I", "2026-03-01 09:00:00", "5", "2024-01-02 +00"],
        ],
    )

    (batch,) = run(spark, config).batches

    assert {r.id: r.hired for r in read(spark, config, "latest").collect()} == {
        1: date(2024, 1, 2),
        2: date(2024, 1, 2),
    }
    assert batch.quarantine_reasons == {"type_mismatch": 3}
    rows = {r.source_row: r.detail for r in read(spark, config, "quarantine").collect()}
    assert "column hired: '2024-01-02 10:30:00' has a time of day" in rows[2] and "dialect: oracle" in rows[2]
    assert "column hired: '0044-03-15 BC' is not a plain date" in rows[3]
    assert "column hired: '2024-01-02 +00' is not a plain date" in rows[4]


def test_a_decimal_value_with_more_digits_after_the_point_than_the_scale_is_a_type_mismatch_never_rounded(
    spark, tmp_path
):
    """Found by review: Spark's cast rounds a value to the column's scale without a word (try_cast is NULL only when
    the whole part overflows). An Oracle NUMBER without precision is decimal(38,10), but DMS writes 12 digits after
    the point under NumberDatatypeScale=12, and floating text like 1.2345678901234567E-5 under -1. A value the
    type holds exactly, trailing zeros or an exponent and all, applies."""
    config = dated_config(
        tmp_path, {"ts": "string", "id": "bigint", "amount": "decimal(38,10)", "price": "numeric(10,2)"}
    )
    t = "2026-03-01 09:00:00"
    land(
        config,
        "20260301-100000000.csv",
        [
            ["I", t, "1", "1.50000000000000", "2.50"],  # zeros past the scale: nothing to lose
            ["I", t, "2", "1.5E-3", "1E1"],  # exact in exponent form
            ["I", t, "3", "0.123456789012", "1"],  # NumberDatatypeScale=12
            ["I", t, "4", "1.2345678901234567E-5", "1"],  # NumberDatatypeScale=-1
            ["I", t, "5", "1", "2.505"],
            ["I", t, "6", "-0.00000000001", "1"],  # would round to 0
            ["I", t, "7", "0E-20", "-0.000"],  # a zero is exact, whatever its exponent
        ],
    )

    (batch,) = run(spark, config).batches

    assert {r.id: (str(r.amount), str(r.price)) for r in read(spark, config, "latest").collect()} == {
        1: ("1.5000000000", "2.50"),
        2: ("0.0015000000", "10.00"),
        7: ("0E-10", "0.00"),
    }
    assert batch.quarantine_reasons == {"type_mismatch": 4}
    details = {r.source_row: r.detail for r in read(spark, config, "quarantine").collect()}
    assert details[2].startswith("column amount: '0.123456789012' has more digits after the point than its type ")
    assert "decimal(38,10)" in details[2] and "`columns:`" in details[2] and "NumberDatatypeScale" in details[2]
    assert details[3].startswith("column amount: '1.2345678901234567E-5' has more digits")
    assert details[4].startswith("column price: '2.505' has more digits") and "decimal(10,2)" in details[4]
    assert details[5].startswith("column amount: '-0.00000000001' has more digits")


@pytest.mark.parametrize(
    ("declared", "number_scale", "spark"),
    [
        ("NUMBER", None, "decimal(38,10)"),  # DMS's default
        ("NUMBER", 12, "decimal(38,12)"),
        ("NUMBER(*)", 0, "decimal(38,0)"),
        ("NUMBER", 38, "decimal(38,38)"),
        ("NUMBER", -1, "double"),  # DMS writes floating text
        ("NUMBER", -2, "string"),  # DMS writes VARCHAR
        ("NUMBER(10,2)", 12, "decimal(10,2)"),  # a NUMBER with precision keeps its own
        ("NUMBER(*,4)", 12, "decimal(38,4)"),
        # Oracle's INTEGER is NUMBER(*,0): a scale, so NumberDatatypeScale does not apply (found by review)
        ("NUMBER(*,0)", None, "decimal(38,0)"),
        ("NUMBER(*,0)", -1, "decimal(38,0)"),
        ("NUMBER(*,0)", -2, "decimal(38,0)"),
    ],
)
def test_an_oracle_number_without_precision_follows_the_endpoints_number_datatype_scale(declared, number_scale, spark):
    from lakehouse.sources.db_types import spark_type

    assert spark_type(declared, "oracle", number_scale=number_scale) == spark


@pytest.mark.parametrize("declared", ["tinyint(1)", "tinyint(1) unsigned", "tinyint", "tinyint(4)", "tinyint unsigned"])
def test_a_mysql_tinyint_1_is_a_small_integer_as_dms_writes_it(declared):
    """Found by review: tinyint(1) was a boolean, but DMS maps MySQL's TINYINT to INT1 with no case for (1), a
    display width: a tinyint(1) holding 2 or -1 was quarantined as type_mismatch. smallint holds -128..127 and
    an unsigned one's 0..255."""
    from lakehouse.sources.db_types import spark_type

    assert spark_type(declared, "mysql") == "smallint"


@pytest.mark.parametrize(
    ("declared", "dialect"),
    [
        ("INTERVAL DAY(2) TO SECOND(6)", "oracle"), ("INTERVAL YEAR(2) TO MONTH", "oracle"),
        ("interval day(9) to second(9)", "oracle"), ("INTERVAL DAY TO SECOND", "oracle"), ("interval", "postgres"),
        ("int4range", "postgres"), ("int8range", "postgres"), ("numrange", "postgres"), ("tsrange", "postgres"),
        ("tstzrange", "postgres"), ("daterange", "postgres"), ("point", "postgres"), ("line", "postgres"),
        ("lseg", "postgres"), ("box", "postgres"), ("path", "postgres"), ("polygon", "postgres"),
        ("circle", "postgres"), ("tsquery", "postgres"), ("tsvector", "postgres"),
        ("enum('open','closed (archived)')", "mysql"), ("set('a)','b,c','null')", "mysql"),
        ("enum('x)')", ""),
    ],
)  # fmt: skip
def test_types_dms_writes_as_text_are_strings(declared, dialect):
    """Found by review: onboarding aborted on these ordinary catalog types (two brackets, a `)` inside enum values,
    names not in the mapping); DMS writes them as text (STRING, CLOB)."""
    from lakehouse.sources.db_types import spark_type

    assert spark_type(declared, dialect) == "string"


def test_postgres_money_is_decimal_38_4_as_dms_writes_it():
    """Found by review: money was decimal(19,4), 15 digits before the point, but money reaches 92233720368547758.07
    (17) and DMS writes NUMERIC(38,4)."""
    from lakehouse.sources.db_types import spark_type

    assert spark_type("money", "postgres") == "decimal(38,4)"
    # SQL Server's money (and a money without a dialect) keeps decimal(19,4): its range fits, and its tables have it.
    assert spark_type("money", "sqlserver") == spark_type("money") == "decimal(19,4)"


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
         ["double", "float", "double", "date", "timestamp", "smallint"]),
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
