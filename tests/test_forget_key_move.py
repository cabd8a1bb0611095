"""A forget follows the patient when the source renumbers it (a patient-id change, found by review).

`privacy forget --patient A` blocks A's pseudonym. If the source then changes the patient's id A → B (DMS writes a
`U` with before-image `BI_patient_id=A, patient_id=B`, which the engine applies as a delete of A and an insert of B)
and the patient's consents, devices and sessions follow to B, the zone used to admit the same person under B's
pseudonym. Now the batch that moves a forgotten key records a forget of the new id in the privacy log, as
`privacy forget` does (intent, deletes from every zone table, record), before its zone write.

Re-admission names the id the patient now has: `privacy readmit --patient B` lifts the forget that followed the
move; a re-admission of A lifts A's own forget only, and B stays out (the source no longer writes A).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from pyspark.sql import functions as F

from lakehouse.apply.forget import readmit_patient
from lakehouse.masking import pseudonym
from lakehouse.policy.job import policy_snapshot
from tests.privacy_lake import START, Consent, LogLines, PrivacyLake, zone_rows_of

A, B = 5101, 5102  # the patient's id before and after the source renumbers it
DEVICE = "DV-0071"


@pytest.fixture
def lake(lake_templates, monkeypatch) -> PrivacyLake:
    """A's rows in both zones, then A forgotten (made once, copied for each test: see LakeTemplates)."""
    return lake_templates.lake(a_forgotten, monkeypatch)


def log_events(lake: PrivacyLake) -> list[tuple[str, str]]:
    log = lake.spark.read.format("delta").load(f"{lake.config.paths.lake}/_privacy/log").orderBy("at")
    return [(r.event, r.patient) for r in log.collect()]


def consented_patient_with_device_and_sessions(lake: PrivacyLake) -> None:
    lake.consent(A, True, signed=START - timedelta(days=30))
    lake.land("patients", [lake.patient(A)])
    lake.land("devices", [lake.device(DEVICE, A)])
    lake.land("therapy_sessions", [lake.session(A * 10 + i, DEVICE) for i in range(2)])


def a_forgotten(lake: PrivacyLake) -> None:
    consented_patient_with_device_and_sessions(lake)
    lake.run()
    assert zone_rows_of(lake, A)["patients.history"] == 1
    lake.forget(A)


def move_consents(lake: PrivacyLake, old: int, new: int) -> None:
    """The consent records of `old` renumbered at the source (an update of each: same consent id, new patient)."""
    at = lake.tick(1)
    rows = []
    for i, consent in enumerate(lake.consents):
        if consent.patient == old:
            lake.consents[i] = Consent(new, consent.device, consent.allowed, consent.signed, consent.consent_id)
            rows.append(lake._consent_record("U", lake.consents[i], at))
    lake.land("consents", rows)


def move_patient(lake: PrivacyLake, old: int, new: int) -> None:
    """The patient row renumbered at the source: a `U` whose before-image holds the old id."""
    at = lake.tick()
    row = {**lake.patients.pop(old), "patient_id": new}
    lake.patients[new] = row
    lake.land("patients", [lake._record("patients", "U", {**row, "BI_patient_id": old}, at)])


def cascade_to(lake: PrivacyLake, new: int) -> None:
    """What follows the renumbering in the other tables: the device moves to the new id, a new session of it."""
    lake.land("devices", [lake.device(DEVICE, new)])
    lake.land("therapy_sessions", [lake.session(new * 10 + 9, DEVICE)])


def test_a_forgotten_patient_renumbered_at_the_source_stays_out_under_the_new_id_until_that_id_is_readmitted(
    lake, spark
):
    """One lake through the whole story (one lake instead of three, for CI time): the move forgets B; later changes of
    B stay out; re-admitting the old id A lifts A's own forget only; re-admitting B brings its consented rows back,
    and a replay of the move's file does not forget B again."""
    lines = LogLines()
    logging.getLogger("lakehouse").addHandler(lines)
    logging.getLogger("lakehouse").setLevel(logging.INFO)
    try:
        move_consents(lake, A, B)
        move_patient(lake, A, B)
        cascade_to(lake, B)
        lake.run()
    finally:
        logging.getLogger("lakehouse").removeHandler(lines)
    moved = [(t, f) for t, f in lake.landed if t == "patients"][-1]

    assert lake.phi("patients", "latest").where(F.col("patient_id") == B).count() == 1  # the PHI zone has B
    assert set(zone_rows_of(lake, B).values()) == {0}
    assert set(zone_rows_of(lake, A).values()) == {0}
    b = pseudonym(B, lake.zone.key)
    assert [e for e, p in log_events(lake) if p == b] == ["forget_started", "forgotten"]
    followed = [line for line in lines.lines if "forget_followed_key_move" in line]
    assert followed and b[:8] in followed[0]
    text = "\n".join(lines.lines)
    assert str(A) not in text and str(B) not in text and b not in text

    # Re-admitting the old id lifts A's own forget only: B and its later changes stay out.
    policy = policy_snapshot(lake.config).current(spark)
    assert readmit_patient(spark, lake.config, lake.zone, str(A), policy).recorded
    assert set(zone_rows_of(lake, B).values()) == {0}
    lake.land("patients", [lake.patient(B)])
    lake.run()
    assert set(zone_rows_of(lake, B).values()) == {0}
    assert [e for e, p in log_events(lake) if p == b] == ["forget_started", "forgotten"]  # recorded once

    # Re-admitting the new id brings the consented rows back.
    assert not readmit_patient(spark, lake.config, lake.zone, str(B), policy).forgotten_again
    rows = zone_rows_of(lake, B)
    assert rows["patients.latest"] == 1 and rows["devices.latest"] == 1 and rows["therapy_sessions.history"] == 1

    # DMS delivers the renumbering's file again while A is forgotten (as it was when the move came): the move is the
    # one already followed (its forget's id is recorded), B stays re-admitted.
    lake.forget(A)
    table, file = moved
    lake.land(table, [r.split(",") for r in file.read_text().splitlines()])
    lake.run()
    assert zone_rows_of(lake, B)["patients.latest"] == 1
    assert [e for e, p in log_events(lake) if p == b] == ["forget_started", "forgotten", "readmitted"]


def test_rows_of_the_new_id_admitted_before_the_patient_row_moved_are_removed(lake):
    """The source's cascade reaches the consents and devices first: the policy grants B and the zone admits B's device
    and session; the patient row's move (a later batch) forgets B in every table."""
    move_consents(lake, A, B)
    cascade_to(lake, B)
    lake.run(["consents", "devices", "therapy_sessions"])
    assert zone_rows_of(lake, B)["devices.latest"] == 1  # admitted: nothing tells the engine B is A yet

    move_patient(lake, A, B)
    lake.run()
    assert set(zone_rows_of(lake, B).values()) == {0}


def test_a_zone_write_is_run_again_when_another_writer_of_its_table_committed_first(spark):
    """Delta's Python conflict classes do not derive from DeltaConcurrentModificationException: each is retried (the
    exceptions need the JVM: `spark`)."""
    from delta.exceptions import ConcurrentAppendException, ConcurrentDeleteReadException

    from lakehouse.apply.non_phi import CONFLICT_ATTEMPTS, retry_conflicts

    tries = []

    def conflicting_twice() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConcurrentDeleteReadException(desc="a forget deleted a file this MERGE read", stackTrace="")
        if len(tries) == 2:
            raise ConcurrentAppendException(desc="a batch appended to a partition this MERGE read", stackTrace="")
        return "written"

    assert retry_conflicts(conflicting_twice) == "written" and len(tries) == 3

    def always() -> None:
        tries.append(1)
        raise ConcurrentDeleteReadException(desc="conflict", stackTrace="")

    tries.clear()
    with pytest.raises(ConcurrentDeleteReadException):
        retry_conflicts(always)
    assert len(tries) == CONFLICT_ATTEMPTS
