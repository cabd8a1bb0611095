"""Column types written as the source database names them mean what that database means (found by review).

The YAML's column types may be the source's own, but they were mapped without knowing the source: an Oracle DATE
(DMS: DATETIME, with a time of day) became a Spark date, and Spark's cast keeps 2024-01-02 of 2024-01-02 10:30:00,
the time lost without a word; an Oracle or SQL Server FLOAT (a double) became a 4-byte float.
"""

from __future__ import annotations

from datetime import date

from tests.conftest import make_config
from tests.dms_tables import land, read, run


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
