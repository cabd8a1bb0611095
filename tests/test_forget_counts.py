"""A forget counts the rows its own commits deleted, reading only the commits since its intent.

It read the table's whole history each time (every batch's commit of a long-running table); now the commits since
the version its intent saw, and all of them again when a writer committed between its version read and that read.
"""

from __future__ import annotations

from datetime import datetime

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakehouse.apply import forget
from lakehouse.apply.privacy_log import Event


def _tagged_delete(spark, path: str, tag: str, condition: str) -> None:
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", tag)
    try:
        DeltaTable.forPath(spark, path).delete(condition)
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


def test_rows_deleted_counts_the_forget_s_commits_since_its_intent_also_when_a_writer_commits_between(
    spark, tmp_path, monkeypatch
):
    limits = []  # the history each count read: only the commits since the intent, unless a writer came between
    history = DeltaTable.history
    monkeypatch.setattr(DeltaTable, "history", lambda self, limit=None: limits.append(limit) or history(self, limit))
    path = str(tmp_path / "t")
    spark.range(10).withColumn("p", F.col("id") % 3).write.format("delta").save(path)  # version 0
    intent = Event("forget_started", "x", datetime(2026, 1, 1), "f1", {"t": 0})
    _tagged_delete(spark, path, "f1", "p = 1")  # version 1: 3 rows, this forget's
    _tagged_delete(spark, path, "other", "p = 2")  # version 2: another forget's
    assert forget._rows_deleted(spark, path, intent, "t") == 3
    assert limits == [2]

    more = spark.range(10, 13).withColumn("p", F.lit(1).cast("long"))
    more.write.format("delta").mode("append").save(path)  # version 3
    _tagged_delete(spark, path, "f1", "p = 1")  # version 4: 3 more (a resumed forget)
    assert forget._rows_deleted(spark, path, intent, "t") == 6
    later = Event("forget_started", "x", datetime(2026, 1, 1), "f1", {"t": 4})
    assert forget._rows_deleted(spark, path, later, "t") == 0
    assert limits == [2, 4]

    stale = forget._version  # the version read before a writer's commit landed: the newest commits miss version 1
    monkeypatch.setattr(forget, "_version", lambda spark, path: stale(spark, path) - 3)
    assert forget._rows_deleted(spark, path, intent, "t") == 6
    assert limits == [2, 4, 1, None]
