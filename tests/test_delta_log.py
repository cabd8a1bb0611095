"""The version and file count a batch reads after its own commits equal Delta's public answers, without a Spark job."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable

from lakehouse.delta_log import (
    StateWarmer,
    committed_files,
    committed_version,
    partition_columns,
    table_properties,
    warm_state,
)
from tests.spark_jobs import jobs_run_by

KEYS = ["delta.checkpointInterval", "delta.logRetentionDuration"]


def _public(spark, path: str) -> tuple[int, int, dict]:
    table = DeltaTable.forPath(spark, path)
    detail = table.detail().select("numFiles", "properties").first()
    properties = {key: (detail["properties"] or {}).get(key) for key in KEYS}
    return int(table.history(1).select("version").first()[0]), int(detail["numFiles"]), properties


def _committed(spark, path: str) -> tuple[int, int, dict]:
    return committed_version(spark, path), committed_files(spark, path), table_properties(spark, path, KEYS)


def test_after_each_kind_of_commit_the_committed_state_is_delta_s(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.range(0, 100, numPartitions=3).withColumnRenamed("id", "k").write.format("delta").save(path)
    commits = [
        lambda: spark.range(100, 110, numPartitions=2).withColumnRenamed("id", "k").write.format("delta")
        .mode("append").save(path),
        lambda: DeltaTable.forPath(spark, path).alias("t")
        .merge(spark.range(105, 120).withColumnRenamed("id", "k").alias("s"), "t.k = s.k")
        .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(),
        lambda: DeltaTable.forPath(spark, path).delete("k < 50"),
        lambda: DeltaTable.forPath(spark, path).optimize().executeCompaction(),
        lambda: spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')"),
        lambda: DeltaTable.forPath(spark, path).delete("k >= 115"),  # the table's log now has a checkpoint
    ]  # fmt: skip
    for commit in commits:
        commit()
        committed, jobs = jobs_run_by(spark, lambda: _committed(spark, path))
        assert committed == _public(spark, path)
        assert jobs == [], "the committed state should come from the driver's snapshot, not a Spark job"
    assert committed[2]["delta.checkpointInterval"] == "2"  # the other key: whatever the session's defaults gave
    commits[1]()
    _, jobs = jobs_run_by(spark, lambda: _public(spark, path))
    assert jobs, "DESCRIBE DETAIL after a commit rebuilds the table's state with Spark jobs (what the probe avoids)"


def test_a_table_this_process_has_not_opened_is_read_from_its_log(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.range(0, 10, numPartitions=2).write.format("delta").save(path)
    spark.range(10, 20, numPartitions=2).write.format("delta").mode("append").save(path)
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # as a new process would start
    assert _committed(spark, path) == _public(spark, path)
    assert _committed(spark, path)[:2] == (1, 4)


def test_no_table_at_the_path_is_delta_s_own_error(spark, tmp_path):
    with pytest.raises(Exception, match=r"(?i)not a delta table"):
        committed_files(spark, str(tmp_path / "nothing"))


def test_properties_set_by_another_writer_are_seen(spark, tmp_path):
    import deltalake

    path = str(tmp_path / "t")
    spark.range(0, 10).write.format("delta").save(path)
    before = table_properties(spark, path, KEYS)["delta.checkpointInterval"]  # None, or the session's default
    deltalake.DeltaTable(path).alter.set_table_properties({"delta.checkpointInterval": "7"})
    assert before != "7" and table_properties(spark, path, KEYS)["delta.checkpointInterval"] == "7"


def _merge_one_row(spark, path: str, key: int) -> None:
    source = spark.createDataFrame([(key, key * 10)], "k long, v long")
    DeltaTable.forPath(spark, path).alias("t").merge(source.alias("s"), "t.k = s.k").whenMatchedUpdateAll().execute()


def test_a_warmed_state_spares_the_next_merge_its_rebuild(spark, tmp_path):
    """After `warm_state`, the next MERGE into the table runs fewer Spark jobs: the state of the version it reads was
    built once, between the batches, and Delta reuses it (the same snapshot: no commit came between)."""
    path = str(tmp_path / "t")
    spark.range(0, 1000, numPartitions=4).selectExpr("id AS k", "id AS v").write.format("delta").save(path)
    _merge_one_row(spark, path, 1)
    _, cold = jobs_run_by(spark, lambda: _merge_one_row(spark, path, 2))
    _, warming = jobs_run_by(spark, lambda: warm_state(spark, [path, str(tmp_path / "no-table-here")]))
    version = committed_version(spark, path)
    _, warm = jobs_run_by(spark, lambda: _merge_one_row(spark, path, 3))
    assert warming, "building the state is Spark jobs"
    assert len(warm) < len(cold), f"the MERGE after the warm-up ran {len(warm)} jobs, a cold one {len(cold)}"
    assert committed_version(spark, path) == version + 1
    assert DeltaTable.forPath(spark, path).toDF().where("k IN (2, 3)").orderBy("k").collect() == [(2, 20), (3, 30)]


def test_the_warmer_builds_one_state_at_a_time_and_the_next_batch_waits_for_it(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.range(0, 100).selectExpr("id AS k", "id AS v").write.format("delta").save(path)
    warmer = StateWarmer(spark)
    warmer.start([path])
    thread = warmer._thread
    warmer.start([path])  # waits for the first before it starts the second
    assert thread is not None and not thread.is_alive()
    warmer.wait()
    assert warmer._thread is None
    warmer.wait()  # nothing started: returns


def test_partition_columns_are_the_newest_version_s_without_a_job_after_this_process_s_commit(spark, tmp_path):
    import deltalake
    import pyarrow as pa

    path = str(tmp_path / "t")
    rows = spark.range(0, 10).selectExpr("id", "id % 2 AS b", "id % 3 AS c")
    rows.write.format("delta").partitionBy("b").save(path)
    columns, jobs = jobs_run_by(spark, lambda: partition_columns(spark, path))
    assert columns == ["b"] and jobs == []
    rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy("c", "b").save(path)
    assert partition_columns(spark, path) == ["c", "b"]
    other = pa.table({"id": pa.array([1], pa.int64()), "b": pa.array([1], pa.int64()), "c": pa.array([1], pa.int64())})
    deltalake.write_deltalake(path, other, mode="overwrite", schema_mode="overwrite", partition_by=["id"])
    assert partition_columns(spark, path) == ["id"]  # set by another writer
