"""The consent sync of the non-PHI zone: finished after a crash whatever the policy is then, and redone whole when
the settings that decide which rows the zone takes change.

Found by review: a sync that died between its delete and its append (SIGKILL, or a write that raised) left the
patient it was bringing back for a grant; the grant then deleted at the source, the next policy equalled the applied
one, nothing was re-synced and the patient stayed in the zone without consent. And `privacy.consented_only` and
`consent.device_column` were not part of the zone's id: switching them changed no row a batch did not touch.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from pyspark.sql import functions as F

import lakehouse.apply.consent_sync as consent_sync
from lakehouse.apply.consent_sync import _zone_id, sync_consent, zone_is_synced
from lakehouse.apply.non_phi import NonPhiZone, non_phi_zone
from lakehouse.config import load_config
from lakehouse.masking import MaskingKey, pseudonym
from lakehouse.pending import table_version
from lakehouse.policy.job import policy_snapshot
from lakehouse.policy.snapshot import fingerprint_of
from lakehouse.tables import table_paths
from tests.privacy_lake import LOCAL_YAML, START, ZONE_TABLES, PrivacyLake, lake_for, starting_from

X, C = 5101, 5102  # a patient who withdrew; one who consents throughout


@pytest.fixture
def lake(request, spark, tmp_path, monkeypatch, lake_templates) -> PrivacyLake:
    return lake_for(request, spark, tmp_path, monkeypatch, lake_templates)


def zone_rows_of(lake: PrivacyLake, table: str, patient: int) -> dict[str, int]:
    mine = pseudonym(patient, lake.zone.key)
    return {
        kind: lake.non_phi(table, kind).where(F.col("patient_id") == mine).count() for kind in ("history", "latest")
    }


def a_withdrawn_patient(lake: PrivacyLake) -> None:
    """X withdrew a month ago and C consents; both have a patients row; the zone holds C only."""
    lake.consent(X, False, signed=START - timedelta(days=30))
    lake.consent(C, True, signed=START - timedelta(days=30))
    lake.land("patients", [lake.patient(X), lake.patient(C)])
    lake.run()
    assert zone_rows_of(lake, "patients", X) == {"history": 0, "latest": 0}
    assert zone_rows_of(lake, "patients", C) == {"history": 1, "latest": 1}


def delete_the_grant(lake: PrivacyLake) -> None:
    (grant,) = [i for i, c in enumerate(lake.consents) if c.patient == X and c.allowed]
    lake.delete_consent(grant)


# --- a sync interrupted, then the policy goes back --------------------------------------------------------------


@pytest.mark.long  # ~85 s; the privacy machine kills syncs at their points too
@pytest.mark.slow
@starting_from(a_withdrawn_patient)
def test_a_sync_killed_between_its_delete_and_its_append_is_finished_though_the_policy_went_back(lake):
    before = policy_snapshot(lake.config).stored_fingerprint()
    lake.consent(X, True, signed=START - timedelta(days=1))  # a grant: the sync brings X back...
    code, out = lake.cli(
        "run", "--no-demo", "--table", "consents", "--table", "patients", crash_at="patients:sync:after_delete_latest"
    )
    assert code == -signal.SIGKILL, out
    assert zone_rows_of(lake, "patients", X) == {"history": 1, "latest": 0}  # ...killed between delete and append

    delete_the_grant(lake)  # the grant is deleted at the source: the policy is the one the table last applied
    runs = {r.table: r for r in lake.run()}

    assert policy_snapshot(lake.config).stored_fingerprint() == before
    assert zone_rows_of(lake, "patients", X) == {"history": 0, "latest": 0}
    assert zone_rows_of(lake, "patients", C) == {"history": 1, "latest": 1}
    assert "consent changes of 1 patients applied to the non-PHI zone" in runs["patients"].notes
    # The applied policy's new version ended the intent: no commit of its own cleared it.
    pending = consent_sync.pending_path(lake.zone, lake.config.tables["patients"])
    intents = lake.spark.sql(f"DESCRIBE HISTORY delta.`{pending}`").select("userMetadata").collect()
    assert [r[0].split("|")[0] for r in intents] == ["resync", "resync"], intents
    assert zone_is_synced(lake.config.tables["patients"], lake.zone, before)


@starting_from(a_withdrawn_patient)
def test_a_consent_before_the_patient_s_rows_writes_nothing_and_the_rows_come_when_they_land(lake):
    """A consent whose patient has no row in the PHI history yet (the consent source delivered first) has nothing to
    re-sync: no intent, no zone commit; rows of the zone that name such a patient all the same (a restore) still go."""
    new, stray = 5103, 5104
    patients = lake.config.tables["patients"]
    zone_history = lake.zone.history(patients)
    copied = lake.non_phi("patients").where(F.col("patient_id") == pseudonym(C, lake.zone.key))
    copied.withColumn("patient_id", F.lit(pseudonym(stray, lake.zone.key))).write.format("delta").mode("append").save(
        zone_history
    )
    others = [lake.config.tables[t] for t in ZONE_TABLES if t != "patients"]
    paths = [consent_sync.pending_path(lake.zone, t) for t in others]
    paths += [path for t in others for path in (lake.zone.history(t), lake.zone.latest(t))]
    before = [table_version(path) for path in paths]

    lake.consent(new, True, signed=START - timedelta(days=1))
    lake.consent(stray, False, signed=START - timedelta(days=1))
    runs = {r.table: r for r in lake.run()}

    assert [table_version(path) for path in paths] == before  # neither has a row in devices or sessions: no write
    assert "consent changes of 2 patients applied to the non-PHI zone" in runs["patients"].notes
    nothing = "consent changes of 2 patients checked: no row of theirs to change in the non-PHI zone"
    assert all(nothing in runs[t.name].notes for t in others), {t.name: runs[t.name].notes for t in others}
    assert zone_rows_of(lake, "patients", stray) == {"history": 0, "latest": 0}
    assert zone_is_synced(patients, lake.zone, policy_snapshot(lake.config).stored_fingerprint())

    lake.land("patients", [lake.patient(new)])
    lake.run()
    assert zone_rows_of(lake, "patients", new) == {"history": 1, "latest": 1}


@starting_from(a_withdrawn_patient)
def test_a_sync_whose_write_failed_is_finished_by_the_next_though_the_policy_went_back(lake, spark, monkeypatch):
    """In one process, as a stream syncs its idle tables: the failure (a Delta conflict) is logged and the stream
    goes on; what the process remembers as synced must not be the policy before the failed one."""
    table = lake.config.tables["patients"]
    synced: dict[str, str] = {}

    def sync(policy):
        history = table_paths(lake.config, table).history
        return sync_consent(
            spark,
            table,
            lake.zone,
            phi_history=history,
            policy=policy,
            fingerprint=fingerprint_of(policy),
            synced=synced,
        )

    before = policy_snapshot(lake.config).current(spark)
    assert sync(before) is None  # the zone follows it already
    lake.consent(X, True, signed=START - timedelta(days=1))  # a grant dated before X's version
    lake.run(["consents"])

    def conflict(table_name: str, batch_id: object, point: str) -> None:
        if point == "after_delete_latest":
            raise RuntimeError("ConcurrentAppendException: files were added to the table by a concurrent update")

    with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="ConcurrentAppendException"):
        patched.setattr(consent_sync, "crash_point", conflict)
        sync(policy_snapshot(lake.config).current(spark))
    assert zone_rows_of(lake, "patients", X) == {"history": 1, "latest": 0}
    # The intent names the applied policy's version it began at; one of an older engine (no version, cleared by a
    # "done" commit) must be finished the same way: the intent is rewritten as that engine wrote it.
    pending = consent_sync.pending_path(lake.zone, table)
    intent = spark.sql(f"DESCRIBE HISTORY delta.`{pending}` LIMIT 1").first()["userMetadata"]
    assert intent.startswith("resync|applied="), intent
    ids = [tuple(r) for r in spark.read.format("delta").load(pending).collect()]
    spark.createDataFrame(ids, "patient_id bigint").write.format("delta").mode("overwrite").option(
        "userMetadata", "resync"
    ).save(pending)

    delete_the_grant(lake)
    lake.run(["consents"])
    after = policy_snapshot(lake.config).current(spark)
    assert fingerprint_of(after) == fingerprint_of(before)
    assert not zone_is_synced(table, lake.zone, fingerprint_of(after))  # an intent is pending

    assert sync(after) == "consent changes of 1 patients applied to the non-PHI zone"
    assert zone_rows_of(lake, "patients", X) == {"history": 0, "latest": 0}
    assert zone_rows_of(lake, "patients", C) == {"history": 1, "latest": 1}
    assert zone_is_synced(table, lake.zone, fingerprint_of(after))
    assert spark.sql(f"DESCRIBE HISTORY delta.`{pending}` LIMIT 1").first()["userMetadata"] == "done"


# --- the settings that decide which rows the zone takes ---------------------------------------------------------


def test_the_zone_id_names_consented_only_and_the_device_column():
    tables = load_config(LOCAL_YAML).tables
    zone = NonPhiZone(root="/zone", key=MaskingKey(b"k" * 32), privacy="/lake/_privacy")
    all_rows = NonPhiZone(root="/zone", key=MaskingKey(b"k" * 32), privacy="/lake/_privacy", consented_only=False)
    for name in ZONE_TABLES:
        assert _zone_id(tables[name], zone) != _zone_id(tables[name], all_rows), name

    devices = tables["devices"]
    assert devices.consent is not None and devices.consent.device_column == "device_id"
    per_patient = devices.model_copy(update={"consent": devices.consent.model_copy(update={"device_column": None})})
    other = devices.model_copy(
        update={"consent": devices.consent.model_copy(update={"device_column": "serial_number"})}
    )
    assert len({_zone_id(devices, zone), _zone_id(per_patient, zone), _zone_id(other, zone)}) == 3


def with_consented_only(lake: PrivacyLake, value: bool) -> None:
    privacy = lake.config.privacy.model_copy(update={"consented_only": value})
    lake.config = lake.config.model_copy(update={"privacy": privacy})
    lake.zone = non_phi_zone(lake.config)


def test_a_zone_made_consented_only_loses_the_untouched_rows_of_patients_without_consent(lake):
    with_consented_only(lake, False)
    lake.consent(X, False, signed=START - timedelta(days=30))
    lake.consent(C, True, signed=START - timedelta(days=30))
    lake.land("patients", [lake.patient(X), lake.patient(C)])
    lake.run()
    assert zone_rows_of(lake, "patients", X) == {"history": 1, "latest": 1}  # every row, as configured

    with_consented_only(lake, True)
    runs = {r.table: r for r in lake.run()}  # no file arrives: no batch touches X

    assert runs["patients"].batches == []
    assert zone_rows_of(lake, "patients", X) == {"history": 0, "latest": 0}
    assert zone_rows_of(lake, "patients", C) == {"history": 1, "latest": 1}


def test_a_device_column_named_later_applies_the_refusals_of_devices_to_untouched_rows(lake):
    sessions = lake.config.tables["therapy_sessions"]
    assert sessions.consent is not None

    def device_column(value: str | None) -> None:
        consent = sessions.consent.model_copy(update={"device_column": value})  # type: ignore[union-attr]
        tables = {**lake.config.tables, sessions.name: sessions.model_copy(update={"consent": consent})}
        lake.config = lake.config.model_copy(update={"tables": tables})

    device_column(None)
    lake.consent(C, True, signed=START - timedelta(days=30))
    lake.consent(C, False, device="DV-0071", signed=START - timedelta(days=20))
    lake.land("devices", [lake.device("DV-0071", C), lake.device("DV-0072", C)])
    lake.land("therapy_sessions", [lake.session(51021, "DV-0071"), lake.session(51022, "DV-0072")])
    lake.run()
    assert zone_rows_of(lake, "therapy_sessions", C) == {"history": 2, "latest": 2}  # the patient's grant only

    device_column("device_id")
    lake.run()

    kept = lake.non_phi("therapy_sessions").select("device_id").collect()
    assert [r.device_id for r in kept] == [pseudonym("DV-0072", lake.zone.key)]
    assert zone_rows_of(lake, "therapy_sessions", C) == {"history": 1, "latest": 1}


def test_the_zone_check_of_a_resync_takes_a_table_with_a_column_named_patient(spark, tmp_path):
    """Found by review: the check joined the pseudonyms' `patient` column to the zone's rows, and a table with a
    column of that name made the join ambiguous: the withdrawal's sync failed at every run, its rows left in place."""
    from types import SimpleNamespace

    zone = NonPhiZone(root=str(tmp_path / "zone"), key=MaskingKey(b"k" * 32), privacy=str(tmp_path / "privacy"))
    table = SimpleNamespace(name="visits", consent=SimpleNamespace(patient_column="patient"))
    mine = pseudonym(7, zone.key)
    for path in (zone.history(table), zone.latest(table)):
        spark.createDataFrame([(mine, "x")], "patient string, note string").write.format("delta").save(path)
    patients = spark.createDataFrame([(mine,)], "patient string")
    assert consent_sync._zone_holds(spark, table, zone, patients)
    assert not consent_sync._zone_holds(spark, table, zone, spark.createDataFrame([("other",)], "patient string"))
