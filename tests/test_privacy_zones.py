"""Consent flags, the non-PHI zone and consent withdrawal, on a demo run of the shipped configuration.

The demo's DMS tables are applied once (module fixture) with Parquet written uncompressed, so a byte
scan of the files can see every value (the PHI zone is scanned too, to prove the scan finds what is
there). Each test states one behaviour.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakehouse.apply.forget import forget_patient
from lakehouse.config import load_config
from lakehouse.demo import generate
from lakehouse.errors import ConfigError
from lakehouse.masking import pseudonym
from lakehouse.policy.build import FLAG_COL
from lakehouse.runner import Governance, run_once
from lakehouse.tables import table_paths
from tests.delta_readers import assert_readable_by_delta_rs

LOCAL_YAML = Path(__file__).parent.parent / "config" / "local.yaml"
DMS_TABLES = ["consents", "patients", "devices", "therapy_sessions"]
PHI_COLUMNS = ["first_name", "last_name", "address_line1", "phone", "email"]


@pytest.fixture(scope="module")
def zones(spark, tmp_path_factory):
    home = tmp_path_factory.mktemp("zones")
    key = secrets.token_hex(32)
    saved = {k: os.environ.get(k) for k in ("LAKEHOUSE_HOME", "LAKEHOUSE_MASKING_KEY")}
    os.environ.update(LAKEHOUSE_HOME=str(home), LAKEHOUSE_MASKING_KEY=key)
    codec = spark.conf.get("spark.sql.parquet.compression.codec")
    spark.conf.set("spark.sql.parquet.compression.codec", "uncompressed")
    try:
        config = load_config(LOCAL_YAML)
        generate(Path(config.paths.landing), patients=30, days=2)
        runs = run_once(spark, config, DMS_TABLES)
        governance = Governance.of(config)
    finally:
        spark.conf.set("spark.sql.parquet.compression.codec", codec)
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    return {"config": config, "runs": {r.table: r for r in runs}, "key": key, "zone": governance.non_phi}


def phi(spark, zones, table: str, kind: str = "latest"):
    config = zones["config"]
    return spark.read.format("delta").load(getattr(table_paths(config, config.tables[table]), kind))


def non_phi(spark, zones, table: str, kind: str = "latest"):
    zone, table_config = zones["zone"], zones["config"].tables[table]
    return spark.read.format("delta").load(
        zone.history(table_config) if kind == "history" else zone.latest(table_config)
    )


def policy(zones) -> dict[int, bool]:
    lines = (Path(zones["config"].policy.local_path) / "policy.jsonl").read_text().splitlines()
    return {r["patient_id"]: r["allow_enhanced_analytics"] for r in map(json.loads, lines) if r["device_id"] is None}


def files_under(root: str) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]


def test_every_table_applied_and_the_policy_was_rebuilt_first(zones):
    runs = zones["runs"]
    assert all(r.ok for r in runs.values()), {t: r.error for t, r in runs.items()}
    assert any(n.startswith("policy rebuilt") for n in runs["consents"].notes)
    assert len(policy(zones)) == 30


def test_every_change_of_a_flagged_table_carries_the_flags(spark, zones):
    history = phi(spark, zones, "patients", "history")
    assert history.where(F.col(FLAG_COL).isNull()).count() == 0
    consented = {r.patient_id for r in phi(spark, zones, "patients").where(F.col(FLAG_COL) == 1).collect()}
    assert consented == {p for p, ok in policy(zones).items() if ok} & {
        r.patient_id for r in phi(spark, zones, "patients").collect()
    }


def test_changes_of_patients_missing_from_the_policy_count_as_not_consented(spark, zones):
    # Spare devices have no patient: no policy row applies, so they are flagged 0 and counted.
    devices = zones["runs"]["devices"].batches
    assert sum(b.policy_missing for b in devices) > 0
    assert phi(spark, zones, "devices").where(F.col("patient_id").isNull() & (F.col(FLAG_COL) != 0)).count() == 0


def test_the_non_phi_zone_holds_only_consented_patients_pseudonymized(spark, zones):
    key = zones["zone"].key
    allowed = {pseudonym(p, key) for p, ok in policy(zones).items() if ok}
    seen = {r.patient_id for r in non_phi(spark, zones, "patients", "history").collect()}
    assert seen and seen <= allowed
    withdrawn = {pseudonym(p, key) for p, ok in policy(zones).items() if not ok}
    assert not seen & withdrawn


def test_masked_columns_follow_their_rules(spark, zones):
    row = non_phi(spark, zones, "patients").first()
    assert all(row[c] is None for c in PHI_COLUMNS)
    assert isinstance(row.date_of_birth, int) and len(row.zip) == 3
    devices = non_phi(spark, zones, "devices").where(F.col("serial_number").isNotNull()).first()
    assert devices.serial_number.startswith("*") and not devices.serial_number[-4:].startswith("*")


def test_no_phi_value_is_anywhere_under_the_non_phi_root(spark, zones):
    people = phi(spark, zones, "patients", "history").collect()
    values = {str(r[c]) for r in people for c in PHI_COLUMNS if r[c] is not None and len(str(r[c])) >= 6}
    values |= {r.date_of_birth.isoformat() for r in people if r.date_of_birth}
    assert len(values) > 50

    def leaks(root: str) -> set[str]:
        found = set()
        for path in files_under(root):
            data = path.read_bytes()
            found |= {v for v in values if v.encode("utf-8") in data}
        return found

    assert leaks(zones["config"].paths.lake), "the scan must see values where they are (PHI zone)"
    assert leaks(zones["zone"].root) == set()


def test_the_masking_key_is_in_no_file_of_either_zone(zones):
    key = zones["key"].encode()
    config = zones["config"]
    for root in (config.paths.lake, config.paths.checkpoints, zones["zone"].root):
        assert not [p for p in files_under(root) if key in p.read_bytes()]


def test_without_a_masking_key_the_non_phi_zone_refuses_to_start(zones, monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_MASKING_KEY", raising=False)
    with pytest.raises(ConfigError, match="refuses to start"):
        Governance.of(zones["config"])


def test_forgetting_a_patient_removes_the_rows_physically_and_records_it(spark, zones):
    # Last: it rewrites the zone. VACUUM with no retention needs Delta's safety check off (tests only).
    target = non_phi(spark, zones, "patients").first().patient_id
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        patient = next(p for p in policy(zones) if pseudonym(p, zones["zone"].key) == target)
        result = forget_patient(spark, zones["config"], zones["zone"], str(patient), vacuum_hours=0)
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    assert result.rows["patients.latest"] == 1 and result.rows["patients.history"] >= 1
    for table in ("patients", "devices", "therapy_sessions"):
        for kind in ("history", "latest"):
            assert non_phi(spark, zones, table, kind).where(F.col("patient_id") == target).count() == 0
    tables = [p for p in files_under(zones["zone"].root) if "_delta_log" not in str(p) and "_privacy" not in str(p)]
    assert not [p for p in tables if target.encode() in p.read_bytes()]
    log = spark.read.format("delta").load(f"{zones['config'].paths.lake}/_privacy/log").orderBy("at").collect()
    assert [(r.event, r.patient, r.vacuumed) for r in log] == [
        ("forget_started", target, None),
        ("forgotten", target, True),
    ]


def test_every_table_of_both_zones_reads_with_delta_rs(spark, zones):
    assert assert_readable_by_delta_rs(spark, zones["config"].paths.lake) >= 12  # history, latest, quarantine x 4
    assert assert_readable_by_delta_rs(spark, zones["zone"].root) >= 6
