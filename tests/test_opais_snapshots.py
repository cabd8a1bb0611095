"""The 340B OPAIS export through the snapshot path: two days, a failure half-way, a replay, an older file.

Day 1 and day 2 come from the synthetic generator (inserts, changes, deletions of entities and of
children between them). The strongest checks compare whole tables: latest must equal what the parser
reads from day 2, and "as of" day 1 in history must equal what it reads from day 1, for all eight
entities.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

import lakehouse.apply.snapshot as snapshot_apply
from lakehouse.apply.snapshot import SnapshotRefused, apply_snapshot
from lakehouse.config import Config
from lakehouse.sources.opais import parse_export
from lakehouse.sources.opais_entities import ENTITIES
from lakehouse.sources.opais_load import arrow_to_spark
from lakehouse.sources.opais_synth import write_export
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of

ENTITY_COUNT = 40


class Interrupted(Exception):
    """Stands in for a crash half-way through a snapshot."""


def opais_config(root: Path) -> Config:
    return Config.model_validate(
        {
            "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "snapshots": {"opais": {"kind": "opais", "path": str(root / "landing" / "opais")}},
        }
    )


@pytest.fixture(scope="module")
def opais(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("opais")
    config = opais_config(root)
    folder = root / "landing" / "opais"
    folder.mkdir(parents=True)
    files = []
    for day in (0, 1):
        path = folder / f"OPA_CE_DAILY_PUBLIC_2026-11-0{day + 1}.zip"
        write_export(path, entities=ENTITY_COUNT, seed=3, day=day, zip=True)
        files.append(path)
    day1 = apply_snapshot(spark, config, "opais", str(files[0]))

    # Day 2 fails after its third table; the rerun must finish it and converge.
    real, calls = snapshot_apply.apply_changes, []

    def failing(*args, **kwargs):
        calls.append(kwargs["table"].name)
        if len(calls) == 4:
            raise Interrupted
        return real(*args, **kwargs)

    snapshot_apply.apply_changes = failing
    try:
        with pytest.raises(Interrupted):
            apply_snapshot(spark, config, "opais", str(files[1]))
    finally:
        snapshot_apply.apply_changes = real
    day2 = apply_snapshot(spark, config, "opais", str(files[1]))
    again = apply_snapshot(spark, config, "opais", str(files[1]))
    older = folder / "OPA_CE_DAILY_PUBLIC_2026-10-31.zip"
    older.write_bytes(files[0].read_bytes())
    with pytest.raises(SnapshotRefused) as refused:
        apply_snapshot(spark, config, "opais", str(older))
    return {"config": config, "files": files, "day1": day1, "day2": day2, "again": again, "refused": refused.value}


def delta(spark, opais, table: str, kind: str):
    config = opais["config"]
    return spark.read.format("delta").load(getattr(table_paths(config, config.tables[table]), kind))


def parsed(spark, path: Path, table: str):
    return arrow_to_spark(spark, parse_export(path).tables[table], ENTITIES[table].columns)


@pytest.mark.parametrize("table", list(ENTITIES))
def test_latest_equals_the_newest_export(spark, opais, table):
    columns = list(ENTITIES[table].columns)
    actual = delta(spark, opais, table, "latest").select(*columns)
    expected = parsed(spark, opais["files"][1], table)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize("table", list(ENTITIES))
def test_history_as_of_day_one_equals_the_first_export(spark, opais, table):
    columns = list(ENTITIES[table].columns)
    history = table_paths(opais["config"], opais["config"].tables[table]).history
    actual = as_of(spark, history, datetime(2026, 11, 1, 12)).select(*columns)
    expected = parsed(spark, opais["files"][0], table)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_day_two_inserts_changes_and_deletes_entities_and_children(spark, opais):
    def day_two(table: str) -> set[str]:
        history = delta(spark, opais, table, "history").where(F.col("effective_stp") == datetime(2026, 11, 2))
        return {r[0] for r in history.select("change_type").distinct().collect()}

    assert day_two("dim_ce") == {"INSERT", "UPDATE", "DELETE"}
    for child in ("dim_ce_npi", "dim_ce_contract_pharmacy", "dim_ce_shipping_address"):
        assert {"INSERT", "DELETE"} <= day_two(child), child
    assert all(m.reconciles for m in opais["day2"].metrics)


def test_a_deleted_entity_is_expired_with_a_delete_version(spark, opais):
    deleted = delta(spark, opais, "dim_ce", "history").where(F.col("change_type") == "DELETE").collect()
    assert deleted
    for row in deleted:
        assert (row.current_version_flg, row.effective_stp) == ("Y", datetime(2026, 11, 2))
        assert row.name is not None  # a delete carries the values it deletes


def test_open_versions_expire_at_the_id304b_end_of_time(spark, opais):
    current = delta(spark, opais, "dim_ce", "history").where(F.col("current_version_flg") == "Y")
    assert {r.expiration_stp for r in current.select("expiration_stp").distinct().collect()} == {
        datetime(9999, 12, 31, 23, 59, 59)
    }


def test_the_interrupted_snapshot_converged_and_was_logged_once(spark, opais):
    log = spark.read.format("delta").load(f"{opais['config'].paths.lake}/_snapshots/opais").collect()
    assert sorted((str(r.snapshot_date), r.status) for r in log) == [
        ("2026-11-01", "applied"),
        ("2026-11-02", "applied"),
    ]
    # Each version of a key exists once: nothing was written twice by the rerun.
    for table, entity in ENTITIES.items():
        history = delta(spark, opais, table, "history")
        assert history.groupBy(*entity.primary_key, "effective_stp").count().where("count > 1").count() == 0, table


def test_the_same_export_twice_changes_nothing(opais):
    assert opais["again"].status == "already_applied"


def test_an_older_export_after_a_newer_one_is_refused(opais):
    assert "older than" in str(opais["refused"])


def test_effective_time_is_the_snapshot_date_not_the_clock(spark, opais):
    starts = {r[0] for r in delta(spark, opais, "dim_ce", "history").select("effective_stp").distinct().collect()}
    assert starts == {datetime(2026, 11, 1), datetime(2026, 11, 2)}
