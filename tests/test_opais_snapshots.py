"""The 340B OPAIS export through the snapshot path and on into PostgreSQL.

Day 1 and day 2 come from the synthetic generator (inserts, changes, deletions of entities and of
children between them). After day 1 the dimensions are exported to a real PostgreSQL server (full
load); day 2 is applied with a failure half-way and a rerun, then exported with a crash between the
rows and the bookkeeping and a rerun. The strongest checks compare whole tables: latest must equal what
the parser reads from day 2, "as of" day 1 in history what it reads from day 1, and PostgreSQL the Delta
history, for all eight entities.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

import lakehouse.apply.snapshot as snapshot_apply
from lakehouse.apply.snapshot import SnapshotRefused, apply_snapshot
from lakehouse.config import Config
from lakehouse.errors import SnapshotError
from lakehouse.sinks.postgres import ExportBusyError, connect, export_lock
from lakehouse.sinks.postgres_export import export_postgres
from lakehouse.sources.opais import parse_export
from lakehouse.sources.opais_entities import ENTITIES
from lakehouse.sources.opais_load import arrow_to_spark
from lakehouse.sources.opais_synth import EXPORT_NAME, write_export
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of
from tests.delta_readers import assert_readable_by_delta_rs

ENTITY_COUNT = 40


class Interrupted(Exception):
    """Stands in for a crash half-way through a snapshot."""


def opais_config(root: Path, schema: str) -> Config:
    return Config.model_validate(
        {
            "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "snapshots": {"opais": {"kind": "opais", "path": str(root / "landing" / "opais")}},
            "postgres": {"schema": schema, "lock_timeout_seconds": 1},
        }
    )


@pytest.fixture(scope="module")
def opais(spark, tmp_path_factory, postgres):
    root = tmp_path_factory.mktemp("opais")
    settings = replace(postgres, schema="dims")
    config = opais_config(root, settings.schema)
    folder = root / "landing" / "opais"
    folder.mkdir(parents=True)
    files = []
    for day in (0, 1):
        path = folder / f"OPA_CE_DAILY_PUBLIC_2026-11-0{day + 1}.zip"
        write_export(path, entities=ENTITY_COUNT, seed=3, day=day * 30, zip=True)  # a month apart: I, U and D
        files.append(path)
    day1 = apply_snapshot(spark, config, "opais", str(files[0]))
    full_load = export_postgres(spark, config, settings=settings)

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

    # The export of day 2 crashes between the rows and the bookkeeping of its second table, then reruns.
    exported = []

    def crash():
        exported.append(1)
        if len(exported) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        export_postgres(spark, config, settings=settings, crash_hook=crash)
    after_crash = _pg_versions(settings)
    incremental = export_postgres(spark, config, settings=settings)
    up_to_date = export_postgres(spark, config, settings=settings)
    again = apply_snapshot(spark, config, "opais", str(files[1]))
    older = folder / "OPA_CE_DAILY_PUBLIC_2026-10-31.zip"
    older.write_bytes(files[0].read_bytes())
    with pytest.raises(SnapshotRefused) as refused:
        apply_snapshot(spark, config, "opais", str(older))
    # An export of a quarter of the entities (filtered upstream, or cut and re-zipped) would delete most rows.
    partial_export = folder / "OPA_CE_DAILY_PUBLIC_2026-11-03.zip"
    write_export(partial_export, entities=ENTITY_COUNT // 4, seed=3, day=30, zip=True)
    with pytest.raises(SnapshotRefused) as too_many_deletes:
        apply_snapshot(spark, config, "opais", str(partial_export))
    # Day 2's export with two fields renamed by HRSA: read as NULL, they would change every dim_ce row.
    renamed = folder / "OPA_CE_DAILY_PUBLIC_2026-11-04.zip"
    _rename_fields(files[1], renamed, participating="isParticipating", editDate="lastEditDate")
    try:
        renamed_fields = apply_snapshot(spark, config, "opais", str(renamed))
    except SnapshotError as exc:
        renamed_fields = exc
    return {
        "config": config,
        "settings": settings,
        "files": files,
        "day1": day1,
        "day2": day2,
        "again": again,
        "refused": refused.value,
        "too_many_deletes": too_many_deletes.value,
        "renamed_fields": renamed_fields,
        "full_load": full_load,
        "after_crash": after_crash,
        "incremental": incremental,
        "up_to_date": up_to_date,
    }


def _rename_fields(source: Path, target: Path, **names: str) -> None:
    """The export at `source` with fields of every entity renamed (old=new), as HRSA might rename them."""
    with zipfile.ZipFile(source) as archive:
        document = json.loads(archive.read(EXPORT_NAME))
    document["coveredEntities"] = [{names.get(k, k): v for k, v in e.items()} for e in document["coveredEntities"]]
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(EXPORT_NAME, json.dumps(document))


def _pg_versions(settings) -> dict[str, int]:
    with connect(settings) as conn:
        rows = conn.execute(f"SELECT table_name, exported_version FROM {settings.schema}.lakehouse_export").fetchall()
    return dict(rows)


def _pg_rows(settings, table: str, columns: list[str]) -> list[tuple]:
    with connect(settings) as conn:
        return conn.execute(f"SELECT {', '.join(columns)} FROM {settings.schema}.{table}").fetchall()


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
    # Logged as started before its first write, the interrupted day's entry became applied by the rerun: one each.
    assert sorted((str(r.snapshot_date), r.status) for r in log) == [
        ("2026-11-01", "applied"),
        ("2026-11-02", "applied"),
    ]
    assert len({r.digest for r in log if str(r.snapshot_date) == "2026-11-02"}) == 1  # one file, one SHA-256
    # Each version of a key exists once: nothing was written twice by the rerun.
    for table, entity in ENTITIES.items():
        history = delta(spark, opais, table, "history")
        assert history.groupBy(*entity.primary_key, "effective_stp").count().where("count > 1").count() == 0, table


def test_fields_no_column_reads_are_named_in_the_result_with_their_counts(opais):
    """The generator writes fields no column reads (as HRSA may add one): ignored, never in silence."""
    detail = opais["day1"].detail
    listed = "contractPharmacies[].wholesaler (1)"
    assert detail == f"JSON fields no column reads, ignored (objects that have them): {listed}"


def test_the_same_export_twice_changes_nothing(opais):
    assert opais["again"].status == "already_applied"


def test_an_older_export_after_a_newer_one_is_refused(opais):
    assert "older than" in str(opais["refused"])


def test_an_export_that_would_delete_most_rows_is_refused_and_writes_nothing(opais):
    """Refused before any table is written: latest still equals day 2's export (test_latest_equals_the_newest_export)
    and the message names each table that would lose too much."""
    message = str(opais["too_many_deletes"])
    assert "would delete more of a table than max_delete_fraction 0.1 (snapshots.opais)" in message
    assert re.search(r"dim_ce: \d+ of \d+ live rows", message) and "nothing was written" in message
    assert opais["too_many_deletes"].day is not None  # logged with the refusal, whatever dates the feed


def test_an_export_with_renamed_fields_is_refused_as_it_is_read_and_writes_nothing(spark, opais):
    """Found by review: participating and editDate renamed were read as NULL, an update of every dim_ce row (exported
    to PostgreSQL) that the delete guard does not see. The file is refused like a cut one: latest still holds day 2
    (test_latest_equals_the_newest_export) and the snapshot log has no day 2026-11-04
    (test_the_interrupted_snapshot_converged_and_was_logged_once)."""
    error = opais["renamed_fields"]
    assert isinstance(error, SnapshotError), error
    message = str(error)
    assert "participating (dim_ce.participating), editDate (dim_ce.edit_date)" in message
    entities = parse_export(opais["files"][1]).stats.entities
    assert f"isParticipating ({entities}), lastEditDate ({entities})" in message  # in every entity: the new names
    assert "Nothing of this snapshot was applied" in message
    assert delta(spark, opais, "dim_ce", "latest").where(F.col("participating").isNull()).count() == 0


def test_effective_time_is_the_snapshot_date_not_the_clock(spark, opais):
    starts = {r[0] for r in delta(spark, opais, "dim_ce", "history").select("effective_stp").distinct().collect()}
    assert starts == {datetime(2026, 11, 1), datetime(2026, 11, 2)}


# --- the PostgreSQL export ---------------------------------------------------------------------------------


def test_first_export_is_a_full_load_of_every_dimension(opais):
    assert {r.table: r.mode for r in opais["full_load"]} == dict.fromkeys(ENTITIES, "full")
    assert all(r.rows > 0 for r in opais["full_load"])


def test_a_crash_between_rows_and_bookkeeping_leaves_the_old_version(opais):
    full = {r.table: r.to_version for r in opais["full_load"]}
    crashed = list(ENTITIES)[1]
    assert opais["after_crash"][crashed] == full[crashed]


def test_the_rerun_exports_incrementally_from_the_change_feed(opais):
    assert {r.mode for r in opais["incremental"]} <= {"incremental", "up_to_date"}
    assert [r.mode for r in opais["up_to_date"]] == ["up_to_date"] * len(ENTITIES)


@pytest.mark.parametrize("table", list(ENTITIES))
def test_postgres_equals_the_delta_history(spark, opais, table):
    columns = [*ENTITIES[table].columns, "effective_stp", "expiration_stp", "current_version_flg", "change_type"]
    history = delta(spark, opais, table, "history").select(*columns).collect()
    assert sorted(map(tuple, history), key=repr) == sorted(_pg_rows(opais["settings"], table, columns), key=repr)


def test_a_second_export_at_once_waits_then_refuses(spark, opais):
    settings = opais["settings"]
    with connect(settings) as holder, export_lock(holder, settings.schema), pytest.raises(ExportBusyError):
        export_postgres(spark, opais["config"], settings=settings)


def test_every_dimension_table_reads_with_delta_rs(spark, opais):
    assert assert_readable_by_delta_rs(spark, opais["config"].paths.lake) == 3 * len(ENTITIES) + 1  # + the log


@pytest.mark.long  # ~90 s; the export machine covers full exports (change files gone, a repair) and incremental ones
def test_a_dimension_made_again_is_exported_in_full_and_the_others_from_their_change_feed(spark, postgres, tmp_path):
    """Found by review: a dimension rebuilt from the snapshots starts its versions again, and the export took it as up
    to date, or read its change feed from the old table's version (rows skipped or mixed). The Delta table's id is
    kept with the exported version: the table made again is exported in full, its rows replaced by its history, and
    the other tables go on from their change feed."""
    settings = replace(postgres, schema="remade")
    config = opais_config(tmp_path, settings.schema)
    folder = tmp_path / "landing" / "opais"
    folder.mkdir(parents=True)
    days = [folder / f"OPA_CE_DAILY_PUBLIC_2026-11-0{day + 1}.zip" for day in (0, 1)]
    for day, path in enumerate(days):
        write_export(path, entities=ENTITY_COUNT // 4, seed=5, day=day * 30, zip=True)
        apply_snapshot(spark, config, "opais", str(path))
    assert {r.mode for r in export_postgres(spark, config, settings=settings)} == {"full"}
    lake = tmp_path / "lake"
    shutil.rmtree(lake / "dim_ce")  # dim_ce made again from day 1; the others get day 1 as a newer change
    shutil.rmtree(lake / "_snapshots")
    apply_snapshot(spark, config, "opais", str(days[0]), allow_deletes=True)
    modes = {r.table: r.mode for r in export_postgres(spark, config, settings=settings)}
    assert modes.pop("dim_ce") == "full"
    assert set(modes.values()) <= {"incremental", "up_to_date"}
    columns = [*ENTITIES["dim_ce"].columns, "effective_stp", "expiration_stp", "current_version_flg", "change_type"]
    history = spark.read.format("delta").load(str(lake / "dim_ce" / "history")).select(*columns).collect()
    assert sorted(map(tuple, history), key=repr) == sorted(_pg_rows(settings, "dim_ce", columns), key=repr)
