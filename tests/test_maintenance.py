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

from lakehouse.apply.forget import forget_patient
from lakehouse.config import MaintenanceSettings, load_config
from lakehouse.demo import generate
from lakehouse.demo_feed import DevicesFeed, devices_of
from lakehouse.masking import pseudonym
from lakehouse.runner import Governance, run_once
from lakehouse.tables import table_paths
from lakehouse.timetravel import as_of

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
        zone = Governance.of(configs["reference"]).non_phi
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
        for config in configs.values():
            forget_patient(spark, config, zone, forgotten)
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
        "tables": {name: _kinds(c, zone) for name, c in configs.items()},
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
