"""Table maintenance inside the stream: compaction and VACUUM change no answer and break no stream.

The demo's devices table (consent flags, non-PHI zone) is applied twice from the same landing folder
(module fixture): once with no maintenance (the reference) and once with compaction every two batches
and VACUUM with zero retention at every batch, both by the real streaming queries with their
checkpoints. Between two runs a patient is forgotten in both (a privacy purge), and more CDC files land.
The maintained tables must hold exactly the reference's rows (so compaction wrote none of the purged rows
back), "as of" must answer the same, and every batch after the maintenance must have applied and reconciled.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakehouse.apply.forget import forget_patient
from lakehouse.config import MaintenanceSettings, load_config
from lakehouse.demo import generate
from lakehouse.demo_feed import DevicesFeed, devices_of
from lakehouse.maintenance import TableMaintenance, compact, file_count, vacuum
from lakehouse.masking import pseudonym
from lakehouse.runner import Governance, run_once
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of, latest_at
from tests.conftest import make_config, write_dms_csv

LOCAL_YAML = Path(__file__).parent.parent / "config" / "local.yaml"
AGGRESSIVE = {
    "compaction": {"method": "optimize", "every_batches": 2, "every_minutes": None, "min_files": 4},
    "vacuum": {"retention_hours": 0, "every_hours": 1e-6},
}
NONE = {"compaction": {"method": "none"}, "vacuum": {"enabled": False}}


def _config(home: Path, landing: Path, maintenance: dict):
    os.environ["LAKEHOUSE_HOME"] = str(home)
    config = load_config(LOCAL_YAML)
    devices = config.tables["devices"]
    source = devices.source.model_copy(update={"path": str(landing / "dms/cpap/devices"), "max_files_per_trigger": 3})
    consents = config.tables["consents"]
    tables = {
        "devices": devices.model_copy(update={"source": source}),
        "consents": consents.model_copy(
            update={"source": consents.source.model_copy(update={"path": str(landing / "dms/cpap/consents")})}
        ),
    }
    settings = MaintenanceSettings.model_validate(maintenance)
    return config.model_copy(update={"tables": tables, "maintenance": settings})


def _kinds(config, zone):
    table = config.tables["devices"]
    paths = table_paths(config, table)
    return {
        "history": paths.history,
        "latest": paths.latest,
        "non_phi.history": zone.history(table),
        "non_phi.latest": zone.latest(table),
    }


@pytest.fixture(scope="module")
def lakes(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("maintenance")
    saved = {k: os.environ.get(k) for k in ("LAKEHOUSE_HOME", "LAKEHOUSE_MASKING_KEY")}
    os.environ["LAKEHOUSE_MASKING_KEY"] = secrets.token_hex(32)
    landing = root / "landing"
    try:
        generate(landing, patients=30, days=1)
        configs = {"reference": _config(root / "reference", landing, NONE)}
        configs["maintained"] = _config(root / "maintained", landing, AGGRESSIVE)
        # Each lake has its own non-PHI zone (under its own home); the masking key is the same.
        zones = {name: Governance.of(c).non_phi for name, c in configs.items()}
        zone = zones["reference"]
        first = {name: run_once(spark, c, ["consents", "devices"]) for name, c in configs.items()}
        devices = devices_of(spark, table_paths(configs["reference"], configs["reference"].tables["devices"]).latest)
        # A patient the non-PHI zone holds (consented), so forgetting them removes rows.
        zone_latest = _read(spark, zone.latest(configs["reference"].tables["devices"]))
        zone_patients = {r[0] for r in zone_latest.select("patient_id").collect()}
        forgotten = next(
            str(d["patient_id"])
            for d in devices
            if d["patient_id"] and pseudonym(str(d["patient_id"]), zone.key) in zone_patients
        )
        for name, config in configs.items():
            forget_patient(spark, config, zones[name], forgotten)
        feed = DevicesFeed(landing / "dms/cpap/devices", devices)
        for _ in range(4):
            feed.land(6, exclude_patients=frozenset({forgotten}))
        second = {name: run_once(spark, c, ["devices"]) for name, c in configs.items()}
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    return {
        "configs": configs,
        "zone": zone,
        "first": first,
        "second": second,
        "forgotten": forgotten,
        "tables": {name: _kinds(c, zones[name]) for name, c in configs.items()},
    }


def _read(spark, path: str):
    return spark.read.format("delta").load(path)


def test_every_batch_before_and_after_maintenance_applied_and_reconciled(lakes):
    for name in ("reference", "maintained"):
        runs = lakes["first"][name] + lakes["second"][name]
        assert all(r.ok for r in runs), {r.table: r.error for r in runs}
        devices = [b for r in runs if r.table == "devices" for b in r.batches]
        assert len(devices) >= 4 and all(b.reconciles for b in devices)
    second = lakes["second"]["maintained"][0].batches
    assert len(second) == 2 and sum(b.files for b in second) == 4 and sum(b.rows_read for b in second) == 24


@pytest.mark.parametrize("kind", ["history", "latest", "non_phi.history", "non_phi.latest"])
def test_maintained_tables_hold_exactly_the_reference_rows(spark, lakes, kind):
    reference, maintained = (_read(spark, lakes["tables"][n][kind]) for n in ("reference", "maintained"))
    assert_df_equality(maintained, reference, ignore_row_order=True)


def test_as_of_answers_the_same_at_every_change_time(spark, lakes):
    path = {n: lakes["tables"][n]["history"] for n in ("reference", "maintained")}
    times = sorted(r[0] for r in _read(spark, path["reference"]).select("_valid_from").distinct().collect())
    for at in [*times[:: max(1, len(times) // 8)], datetime(2100, 1, 1)]:
        reference, maintained = (as_of(spark, path[n], at) for n in ("reference", "maintained"))
        assert_df_equality(maintained, reference, ignore_row_order=True)


def test_maintenance_compacted_and_vacuumed_inside_the_stream(spark, lakes):
    tables = lakes["tables"]
    for kind in ("history", "latest", "non_phi.history"):
        operations = {
            r[0] for r in DeltaTable.forPath(spark, tables["maintained"][kind]).history().select("operation").collect()
        }
        assert "OPTIMIZE" in operations, (kind, operations)
        assert file_count(spark, tables["maintained"][kind]) < file_count(spark, tables["reference"][kind])
        parquet = [p for p in Path(tables["maintained"][kind]).rglob("*.parquet") if "_delta_log" not in p.parts]
        assert len(parquet) == file_count(spark, tables["maintained"][kind]), "VACUUM left unreferenced files"


def test_forgotten_patient_is_in_no_file_of_the_non_phi_zone(spark, lakes):
    patient = lakes["forgotten"]
    masked = pseudonym(patient, lakes["zone"].key)
    tables = lakes["tables"]["maintained"]
    for kind in ("non_phi.history", "non_phi.latest"):
        assert _read(spark, tables[kind]).where(F.col("patient_id") == masked).count() == 0
        # Every Parquet file on disk, referenced or not: compaction wrote no row back, VACUUM removed the rest.
        assert spark.read.parquet(tables[kind]).where(F.col("patient_id") == masked).count() == 0
    reference_files = spark.read.parquet(lakes["tables"]["reference"]["non_phi.history"])
    assert reference_files.where(F.col("patient_id") == masked).count() > 0, "unvacuumed files still hold the rows"
    assert _read(spark, tables["history"]).where(F.col("patient_id") == int(patient)).count() > 0


def test_vacuum_keeps_every_version_within_the_retention(spark, workdir):
    columns = {"ts": "string", "id": "int", "v": "string"}
    source = {"kind": "dms", "columns": columns, "timestamp_column": "ts", "max_files_per_trigger": 1}
    config = make_config(workdir, {"t": {"primary_key": ["id"], "source": source}})
    landing = Path(config.tables["t"].source.path)
    for n in range(4):
        rows = [["I" if n == 0 else "U", f"2026-03-0{n + 1} 10:00:00", str(k), f"v{n}-{k}"] for k in range(5)]
        write_dms_csv(landing, f"2026030{n + 1}-100000000.csv", rows)
    run_once(spark, config, ["t"])
    paths = table_paths(config, config.tables["t"])
    versions = DeltaTable.forPath(spark, paths.latest).history().select("version").collect()
    before = {v[0]: latest_at(spark, paths.latest, version=v[0]).localCheckpoint() for v in versions}
    as_of_before = as_of(spark, paths.history, datetime(2026, 3, 2, 12)).localCheckpoint()
    settings = MaintenanceSettings.model_validate({"vacuum": {"retention_hours": 1}})
    upkeep = TableMaintenance(settings, {"history": paths.history, "latest": paths.latest}, marker=str(workdir / "m"))
    upkeep.start(spark)  # the tables' deleted-file retention becomes 1 hour
    compacted = compact(spark, paths.history)
    # the batches' files into one per partition of history: current versions and closed ones
    assert compacted["removed"] >= 2 and compacted["added"] == 2
    compact(spark, paths.latest)
    for path in (paths.history, paths.latest):
        vacuum(spark, path, settings.vacuum.retention_hours)
    for version, rows in before.items():
        assert_df_equality(latest_at(spark, paths.latest, version=version), rows, ignore_row_order=True)
    assert_df_equality(as_of(spark, paths.history, datetime(2026, 3, 2, 12)), as_of_before, ignore_row_order=True)


def test_a_table_that_gets_no_file_is_vacuumed_when_due_by_the_run_and_by_the_stream(spark, workdir, monkeypatch):
    """Found by review: VACUUM ran only after a batch, so a table that got no file kept what a forget deleted
    readable by time travel for as long as it stayed idle."""
    from lakehouse import runner
    from lakehouse.runner import vacuum_between_batches

    columns = {"ts": "string", "id": "int", "v": "string"}
    source = {"kind": "dms", "columns": columns, "timestamp_column": "ts"}
    config = make_config(workdir, {"t": {"primary_key": ["id"], "source": source}})
    settings = {"compaction": {"method": "none"}, "vacuum": {"retention_hours": 0, "every_hours": 1}}
    config = config.model_copy(update={"maintenance": MaintenanceSettings.model_validate(settings)})
    table = config.tables["t"]
    write_dms_csv(Path(table.source.path), "20260301-100000000.csv", [["I", "2026-03-01 10:00:00", "1", "a"]])
    (first,) = run_once(spark, config, ["t"])
    assert first.ok and len(first.batches) == 1
    paths = table_paths(config, table)
    marker = Path(paths.checkpoint) / "_vacuumed"

    def replaced_file_of_latest() -> set[Path]:
        before = set(Path(paths.latest).rglob("*.parquet"))
        DeltaTable.forPath(spark, paths.latest).update("id = 1", {"v": "'b'"})  # stands in for a forget's rewrite
        os.utime(marker, (marker.stat().st_mtime - 7200,) * 2)  # the last VACUUM was two hours ago
        return before

    stale = replaced_file_of_latest()
    (idle,) = run_once(spark, config, ["t"])
    assert idle.ok and idle.batches == [] and "nothing new" in idle.notes
    assert "vacuumed (no batch ran): history, latest, quarantine, ledger" in idle.notes
    assert not stale & set(Path(paths.latest).rglob("*.parquet"))
    (again,) = run_once(spark, config, ["t"])
    assert not [n for n in again.notes if n.startswith("vacuumed")]  # not due again for an hour

    stale = replaced_file_of_latest()
    vacuum_between_batches(spark, config, [table], Governance.of(config))
    assert not stale & set(Path(paths.latest).rglob("*.parquet"))

    # On S3 nothing tells "nothing new" before the query: it runs, finds no file, and no batch vacuums (found by
    # review: the deployed jobs never vacuumed an idle table).
    stale = replaced_file_of_latest()
    monkeypatch.setattr(runner, "pending", lambda *args, **kwargs: None)
    (s3_like,) = run_once(spark, config, ["t"])
    assert s3_like.ok and s3_like.batches == [] and "nothing new" not in s3_like.notes
    assert "vacuumed (no batch ran): history, latest, quarantine, ledger" in s3_like.notes
    assert not stale & set(Path(paths.latest).rglob("*.parquet"))


def test_a_compaction_a_purge_committed_under_is_skipped_not_raised(spark, monkeypatch, tmp_path):
    """Found by review: the handler caught DeltaConcurrentModificationException only, and Delta's Python conflict
    classes are its siblings: a purge's delete under an OPTIMIZE (ConcurrentDeleteReadException) failed the query."""
    from delta.exceptions import ConcurrentDeleteReadException

    import lakehouse.maintenance as maintenance

    def purged_under(spark, path):
        raise ConcurrentDeleteReadException(desc="a forget deleted a file the OPTIMIZE read", stackTrace="")

    monkeypatch.setattr(maintenance, "compact", purged_under)
    upkeep = TableMaintenance(MaintenanceSettings(), {"history": str(tmp_path / "h")}, str(tmp_path / "marker"))

    assert upkeep._compact(spark, ["history"]) == {"history": {"removed": 0, "added": 0, "conflict": 1}}
