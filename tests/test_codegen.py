"""A small micro-batch runs Spark's expressions interpreted, in its own query's session only, and its rows in one
partition, with the same result."""

from __future__ import annotations

from delta.tables import DeltaTable

import lakehouse.runner as runner
from lakehouse import codegen
from lakehouse.codegen import INTERPRETED, interpreted, is_small
from tests.dms_tables import people_config, run
from tests.test_exactly_once import assert_same_tables, land_all

MODE = "spark.sql.codegen.factoryMode"


def test_a_small_batch_runs_interpreted_in_its_query_only_and_writes_what_generated_code_writes(
    spark, tmp_path, monkeypatch
):
    """The same files (inserts, updates, a late change, a delete, a key change, a quarantined row) into two lakes,
    one as a small batch (interpreted, one partition) and one with the size limit at zero: the same history, latest
    and quarantine."""
    modes: list[str | None] = []
    one_partition: list[bool] = []
    real = runner.apply_batch

    def recording(files, *args, **kwargs):
        modes.append(files.sparkSession.conf.get(MODE, None))
        one_partition.append(kwargs["small"])
        return real(files, *args, **kwargs)

    monkeypatch.setattr(runner, "apply_batch", recording)
    before = spark.conf.get(MODE, None)
    small, compiled = people_config(tmp_path / "small"), people_config(tmp_path / "compiled")
    land_all(small)
    run(spark, small)
    monkeypatch.setattr(codegen, "SMALL_BATCH_BYTES", 0)
    land_all(compiled)
    run(spark, compiled)

    assert modes[0] == "NO_CODEGEN" and modes[1] != "NO_CODEGEN", modes
    assert one_partition == [True, False]  # the small batch's rows in one partition too
    assert spark.conf.get(MODE, None) == before  # the query's own session was set, not the one that started it
    assert_same_tables(spark, small, compiled)


def test_a_batch_is_small_only_below_both_limits_and_with_every_table_size_known(spark, tmp_path, monkeypatch):
    table = str(tmp_path / "t")
    spark.range(100).write.format("delta").save(table)
    size = DeltaTable.forPath(spark, table).detail().first()["sizeInBytes"]

    assert is_small(spark, 1000, [table])
    assert not is_small(spark, codegen.SMALL_BATCH_BYTES + 1, [table])
    assert not is_small(spark, 1000, [table, str(tmp_path / "no-table-here")])
    monkeypatch.setattr(codegen, "SMALL_TABLE_BYTES", size - 1)
    assert not is_small(spark, 1000, [table])


def test_the_session_gets_its_own_settings_back_after_the_batch(spark):
    session = spark.newSession()
    session.conf.set("spark.sql.codegen.wholeStage", "true")
    with interpreted(session, True):
        assert {key: session.conf.get(key) for key in INTERPRETED} == INTERPRETED
        assert session.range(10).selectExpr("sum(id * 2)").first()[0] == 90
    assert session.conf.get("spark.sql.codegen.wholeStage") == "true"
    assert session.conf.get(MODE, None) is None
    with interpreted(session, False):
        assert session.conf.get(MODE, None) is None
