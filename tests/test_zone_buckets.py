"""The non-PHI zone's tables are partitioned by a hash bucket of their key, and a batch reads only its buckets.

The zone's keys are pseudonyms (random hex), so file statistics cannot narrow a MERGE to the batch's keys;
the bucket is what keeps a small batch's cost from growing with the zone. These tests remove the files of
every other bucket from disk: a batch that read them would fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from lakehouse.apply.consent_sync import applied_path
from lakehouse.apply.non_phi import BUCKET, non_phi_zone
from lakehouse.masking import pseudonym
from tests.privacy_lake import ZONE_TABLES, PrivacyLake

PATIENTS = range(1, 41)


def consented_patients(lake: PrivacyLake) -> None:
    for pid in PATIENTS:
        lake.consent(pid, True)
    lake.land("patients", [lake.patient(pid) for pid in PATIENTS])
    lake.run()


@pytest.fixture
def lake(lake_templates, monkeypatch) -> PrivacyLake:
    """Forty consented patients applied (made once, copied for each test: see LakeTemplates)."""
    return lake_templates.lake(consented_patients, monkeypatch)


def zone_path(lake: PrivacyLake, table: str, kind: str) -> Path:
    return Path(getattr(lake.zone, kind)(lake.config.tables[table]))


def bucket_of(column: str, buckets: int) -> F.Column:
    return F.pmod(F.xxhash64(F.col(column)), F.lit(buckets)).cast("int")


def without_bucket(frame):
    return frame.drop(BUCKET).orderBy("patient_id", "_sequence")


def test_the_zone_is_partitioned_by_the_hash_of_its_key(spark, lake):
    for table in ZONE_TABLES:
        for kind in ("history", "latest"):
            detail = spark.sql(f"DESCRIBE DETAIL delta.`{zone_path(lake, table, kind)}`").first()
            assert detail["partitionColumns"] == [BUCKET], (table, kind)
    latest = lake.non_phi("patients", "latest")
    assert latest.count() == len(PATIENTS)
    assert lake.zone.buckets == 8  # the default
    assert latest.where(F.col(BUCKET) != bucket_of("patient_id", 8)).count() == 0
    assert latest.select(BUCKET).distinct().count() >= 6  # 40 random pseudonyms over 8 buckets


def test_a_batch_reads_only_the_buckets_of_its_keys(spark, lake):
    mine = pseudonym(7, lake.zone.key)
    bucket = lake.non_phi("patients", "latest").where(F.col("patient_id") == mine).first()[BUCKET]
    before = lake.non_phi("patients", "history").where(F.col("patient_id") == mine).count()
    for kind in ("history", "latest"):
        others = [p for p in zone_path(lake, "patients", kind).glob(f"{BUCKET}=*") if p.name != f"{BUCKET}={bucket}"]
        assert others
        for folder in others:  # from disk only: the log still lists their files
            shutil.rmtree(folder)
    lake.land("patients", [lake.patient(7)])
    lake.land("patients", [lake.delete_patient(7)])
    lake.run(["patients"])
    mine_only = (F.col(BUCKET) == bucket) & (F.col("patient_id") == mine)  # the test's reads skip the removed files
    history = lake.non_phi("patients", "history").where(mine_only)
    assert history.count() == before + 2
    assert [r["_op"] for r in history.where(F.col("_is_current")).collect()] == ["D"]
    assert lake.non_phi("patients", "latest").where(mine_only).count() == 0


def stamp_of_an_earlier_release(spark, lake: PrivacyLake, table) -> None:
    """The stamp an earlier release left on the table's applied consent: the same policy, another zone layout id."""
    applied = applied_path(lake.zone, table)
    stamp = spark.sql(f"DESCRIBE HISTORY delta.`{applied}` LIMIT 1").first()["userMetadata"]
    spark.read.format("delta").load(applied).localCheckpoint().write.format("delta").mode("overwrite").option(
        "userMetadata", stamp.rsplit("|", 1)[0] + "|0123456789abcdef"
    ).save(applied)


def test_a_zone_of_the_previous_layout_is_rebuilt_with_the_buckets(spark, lake):
    """A zone written unpartitioned, without `_key_bucket` (the layout before it), and the same rows after."""
    expected = {
        kind: without_bucket(lake.non_phi("patients", kind)).localCheckpoint() for kind in ("history", "latest")
    }
    table = lake.config.tables["patients"]
    for kind in ("history", "latest"):
        path = str(zone_path(lake, "patients", kind))
        old = spark.read.format("delta").load(path).drop(BUCKET).localCheckpoint()
        old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    stamp_of_an_earlier_release(spark, lake, table)

    lake.run(["patients"])
    for kind in ("history", "latest"):
        path = str(zone_path(lake, "patients", kind))
        assert spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["partitionColumns"] == [BUCKET]
        rows = lake.non_phi("patients", kind)
        assert rows.where(F.col(BUCKET) != bucket_of("patient_id", 8)).count() == 0
        assert_df_equality(without_bucket(rows), expected[kind], ignore_nullable=True)


def test_a_new_bucket_count_rebuilds_the_zone_with_the_same_rows(spark, lake):
    expected = without_bucket(lake.non_phi("patients", "history")).localCheckpoint()
    privacy = lake.config.privacy.model_copy(update={"zone_buckets": 4})
    lake.config = lake.config.model_copy(update={"privacy": privacy})
    lake.zone = non_phi_zone(lake.config)
    assert lake.zone.buckets == 4
    lake.run(["patients"])
    history = lake.non_phi("patients", "history")
    assert sorted(r[0] for r in history.select(BUCKET).distinct().collect()) == [0, 1, 2, 3]
    assert history.where(F.col(BUCKET) != bucket_of("patient_id", 4)).count() == 0
    assert_df_equality(without_bucket(history), expected, ignore_nullable=True)


def test_a_zone_with_the_batch_id_of_layout_3_is_rebuilt_without_it(spark, lake):
    """Found by review: layout 3's tables keep `_batch_id` among their statistics columns, and an overwrite keeps
    the table's properties: the rebuild without the column failed until the property was set by hand."""
    from lakehouse.tables import history_properties, latest_properties

    expected = {
        kind: without_bucket(lake.non_phi("patients", kind)).localCheckpoint() for kind in ("history", "latest")
    }
    table = lake.config.tables["patients"]
    properties = {"history": history_properties(table), "latest": latest_properties(table)}  # layout 3's
    for kind in ("history", "latest"):
        stats = properties[kind]["delta.dataSkippingStatsColumns"]
        assert "_batch_id" in stats
        path = str(zone_path(lake, "patients", kind))
        old = spark.read.format("delta").load(path).withColumn("_batch_id", F.lit(7).cast("long")).localCheckpoint()
        old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy(BUCKET).save(path)
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.dataSkippingStatsColumns' = '{stats}')")
    stamp_of_an_earlier_release(spark, lake, table)

    lake.run(["patients"])
    for kind in ("history", "latest"):
        rows = lake.non_phi("patients", kind)
        assert "_batch_id" not in rows.columns
        assert_df_equality(without_bucket(rows), expected[kind], ignore_nullable=True)
