"""Stateful property test: the privacy promises hold after any sequence of events (Hypothesis rule-based machine).

Events: CDC inserts, updates and deletes of patients, devices (moving between patients) and therapy
sessions, some of them late (committed before changes already applied); consent grants and withdrawals,
per patient or per device, some late; forgets; replays of files already applied; and crashes (a
`lakehouse run` in its own process SIGKILLed at a random point of a batch or of a consent sync, then a
restart). Each event is applied the way production applies it (`lakehouse run` on the landed files).

After every step that changed the lake:
- the zone holds exactly the versions the consent rule admits (`privacy_lake.admitted`, written from the
  README), so every row is consented at its validity, and none of a forgotten patient;
- non-PHI latest equals the current, not-deleted rows of non-PHI history;
- no PHI byte (every value written, and every exact time, as text and as Parquet micros) is in any file
  of the zone (data and `_delta_log`), in the engine's log lines or in Spark's local folders;
and at the end, and right after each crash: the PHI zone equals that of a clean run of the same events
(no crash, no replay), and the zone equals a rebuild of it from the PHI zone.

`make test` runs a small budget (derandomized, so CI sees the same examples every time); `make test-search`
runs 10 random examples of up to 10 steps with two crashes (LAKEHOUSE_PRIVACY_EXAMPLES and
LAKEHOUSE_PRIVACY_STEPS for more).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from chispa import assert_df_equality
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pyspark.sql import functions as F

from lakehouse.apply import consent_sync
from lakehouse.apply.forget import readmit_patient
from lakehouse.apply.non_phi import ADMIT, LATEST_META, history_columns, latest_columns, non_phi_zone, zone_rows
from lakehouse.apply.privacy_log import forgotten_frame
from lakehouse.masking import pseudonym, sequence_token
from lakehouse.policy.job import policy_snapshot
from tests.dms_tables import comparable as same_columns
from tests.machine_settings import machine_settings
from tests.privacy_lake import DMS_TABLES, START, ZONE_TABLES, LogLines, PrivacyLake, admitted, leaks

PATIENTS = [7104201, 7104202, 7104203]
DEVICES = ["DV-0051", "DV-0052", "DV-0053"]
SESSIONS = [42011, 42012, 42013, 42014]
BATCH_POINTS = ["after_history", "after_latest", "after_non_phi"]
SYNC_POINTS = ["after_delete_history", "after_delete_latest"]
READMIT_POINTS = ["after_delete_history", "after_append_history", "after_append_latest"]
LATE = st.sampled_from([0, 0, 0, 20, 75])  # hours before the source's clock: 0 is now, the others are late


class Stopped(BaseException):
    """Stops the engine's work where a kill would (no except clause of the engine catches it)."""


class PrivacyMachine(RuleBasedStateMachine):
    """One lake per example; `spark` and `max_crashes` are set by the test that runs it."""

    spark = None
    max_crashes = 1
    compare_clean_run = True  # at teardown (see explicit_machine)

    def __init__(self) -> None:
        super().__init__()
        self.started = time.time()
        self.root = Path(tempfile.mkdtemp(prefix="privacy-machine-"))
        self.saved = {k: os.environ.get(k) for k in ("LAKEHOUSE_HOME", "LAKEHOUSE_MASKING_KEY")}
        self.lake = PrivacyLake(self.root / "lake", secrets.token_hex(32), self.spark)
        self.forgotten: set[int] = set()
        self.events: list[tuple[str, Path]] = []  # (table, file) of every event a clean run also sees
        self.crashes = 0
        self.rotated = False
        self.dirty = False
        self.lines = LogLines()
        self.output: list[str] = []  # what processes of their own printed
        logging.getLogger("lakehouse").addHandler(self.lines)
        logging.getLogger("lakehouse").setLevel(logging.INFO)

    # --- events ---------------------------------------------------------------------------------------------

    @initialize(patients=st.sets(st.sampled_from(PATIENTS), min_size=1))
    def consented_patients(self, patients: set[int]) -> None:
        for patient in sorted(patients):
            self._consent(patient, True, signed=START - timedelta(days=30))
        self._run()

    def _at(self, late: int):
        return self.lake.tick() if not late else self.lake.clock - timedelta(hours=late)

    def _land(self, table: str, records: list) -> None:
        self.events.append((table, self.lake.land(table, records)))

    def _run(self, tables: list[str] | None = None) -> None:
        self.lake.run(tables)
        self.dirty = True

    @rule(patient=st.sampled_from(PATIENTS), delete=st.booleans(), late=LATE)
    def patient_changes(self, patient: int, delete: bool, late: int) -> None:
        at = self._at(late)
        gone = delete and patient in self.lake.patients
        self._land(
            "patients", [self.lake.delete_patient(patient, at=at) if gone else self.lake.patient(patient, at=at)]
        )
        self._run(["patients"])

    @rule(device=st.sampled_from(DEVICES), patient=st.sampled_from([None, *PATIENTS]), delete=st.booleans(), late=LATE)
    def device_changes(self, device: str, patient: int | None, delete: bool, late: int) -> None:
        at = self._at(late)
        gone = delete and device in self.lake.devices
        record = self.lake.delete_device(device, at=at) if gone else self.lake.device(device, patient, at=at)
        self._land("devices", [record])
        self._run(["devices"])

    @rule(session=st.sampled_from(SESSIONS), device=st.sampled_from(DEVICES), delete=st.booleans(), late=LATE)
    def session_changes(self, session: int, device: str, delete: bool, late: int) -> None:
        at = self._at(late)
        gone = delete and session in self.lake.sessions
        record = self.lake.delete_session(session, at=at) if gone else self.lake.session(session, device, at=at)
        self._land("therapy_sessions", [record])
        self._run(["therapy_sessions"])

    def _consent(self, patient: int, allowed: bool, **options) -> None:
        self.events.append(("consents", self.lake.consent(patient, allowed, **options)))

    @rule(
        patient=st.sampled_from(PATIENTS),
        allowed=st.booleans(),
        device=st.sampled_from([None, None, *DEVICES]),
        late_days=st.sampled_from([0, 0, 2, 40]),
    )
    def consent_changes(self, patient: int, allowed: bool, device: str | None, late_days: int) -> None:
        signed = self.lake.clock - timedelta(days=late_days) if late_days else None
        self._consent(patient, allowed, device=device, signed=signed)
        self._run()  # the consents table, the policy build, then every zone table's consent sync

    @precondition(lambda self: bool(self.lake.consents))
    @rule(data=st.data())
    def consent_deleted(self, data: st.DataObject) -> None:
        """A consent record deleted at the source: the policy is built from the records left (none: not consented)."""
        index = data.draw(st.integers(0, len(self.lake.consents) - 1), label="consent")
        self.events.append(("consents", self.lake.delete_consent(index)))
        self._run()

    @rule(patient=st.sampled_from(PATIENTS))
    def forget(self, patient: int) -> None:
        self.lake.forget(patient)
        self.forgotten.add(patient)
        self.dirty = True

    @precondition(lambda self: not self.rotated)
    @rule()
    def rotate_key(self) -> None:
        """The masking key is rotated: the next run rebuilds the zone under the new key; forgotten patients stay out."""
        key = secrets.token_hex(32)
        self.lake.key, self.lake.environment["LAKEHOUSE_MASKING_KEY"] = key, key
        os.environ.update(self.lake.environment)
        self.lake.zone = non_phi_zone(self.lake.config)
        self.rotated = True
        self._run()

    @precondition(lambda self: bool(self.forgotten))
    @rule(data=st.data())
    def readmit(self, data: st.DataObject) -> None:
        """The recorded re-admission of a forgotten patient: the consent rule decides again."""
        patient = data.draw(st.sampled_from(sorted(self.forgotten)))
        policy = policy_snapshot(self.lake.config).current(self.spark)
        assert readmit_patient(self.spark, self.lake.config, self.lake.zone, str(patient), policy).recorded
        self.forgotten.discard(patient)
        self.dirty = True

    @precondition(lambda self: bool(self.forgotten))
    @rule(
        data=st.data(),
        table=st.sampled_from(ZONE_TABLES),
        point=st.sampled_from(READMIT_POINTS),
        forget_meanwhile=st.booleans(),
    )
    def readmit_interrupted(self, data: st.DataObject, table: str, point: str, forget_meanwhile: bool) -> None:
        """A re-admission stopped in its re-sync of `table` (as a kill stops it), maybe after a forget of the patient
        ran meanwhile (forget takes no lease: its deletes before the rows are restored), then a run: each table's
        next run finishes the re-admission under the log as it is then."""
        patient = data.draw(st.sampled_from(sorted(self.forgotten)))
        policy = policy_snapshot(self.lake.config).current(self.spark)
        reached: list[str] = []

        def stop_there(*at: str) -> None:
            if at[:2] == (table, "sync") and at[2].startswith("after_delete_") and forget_meanwhile and not reached:
                reached.append("forget")
                self.lake.forget(patient)
            if at == (table, "sync", point):
                raise Stopped

        with pytest.MonkeyPatch.context() as patch, contextlib.suppress(Stopped):
            patch.setattr(consent_sync, "crash_point", stop_there)
            readmit_patient(self.spark, self.lake.config, self.lake.zone, str(patient), policy)
        if not reached:  # the re-admission recorded before its re-syncs is the patient's last event
            self.forgotten.discard(patient)
        self._run()

    @precondition(lambda self: bool(self.events))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """A file already applied arrives again under a new name (DMS delivers it twice)."""
        table, path = data.draw(st.sampled_from(self.events))
        self.lake.land(table, [line.split(",") for line in path.read_text().splitlines()])
        self._run(None if table == "consents" else [table])

    @precondition(lambda self: self.crashes < self.max_crashes)
    @rule(table=st.sampled_from(ZONE_TABLES), point=st.sampled_from(BATCH_POINTS + SYNC_POINTS))
    def crash(self, table: str, point: str) -> None:
        """A `lakehouse run` of its own is SIGKILLed in a batch of `table` or in its consent sync, then restarted.

        (`make test-search`, 2026-12-07: flipping a forgotten patient's consent to crash the sync reached no crash
        point: the sync rightly writes nothing for them. The sequence: consented patients, a forget of one, a crash in
        the sync of a table holding their rows. Not kept as an explicit example: it tests this rule, not the engine,
        at four minutes of the suite.)"""
        candidates = self._resync_candidates(table) if point in SYNC_POINTS else []
        if point in SYNC_POINTS and not candidates:
            point = BATCH_POINTS[0]
        if candidates:
            patient = candidates[self.crashes % len(candidates)]
            self._consent(patient, not self._allowed(patient))
            crash_at = f"{table}:sync:{point}"
        else:
            device = DEVICES[self.crashes % len(DEVICES)]
            change = {
                "patients": lambda: self.lake.patient(PATIENTS[0]),
                "devices": lambda: self.lake.device(device, PATIENTS[1]),
                "therapy_sessions": lambda: self.lake.session(SESSIONS[0], device),
            }[table]()
            self._land(table, [change])
            crash_at = f"{table}:{self.lake.checkpoint_batches(table)}:{point}"
        self.crashes += 1
        code, out = self.lake.cli(
            "run", "--no-demo", *[a for t in DMS_TABLES for a in ("--table", t)], crash_at=crash_at
        )
        self.output.append(out)
        # A re-sync that admits none of the patient's rows and finds none in the zone writes nothing (an allowance
        # signed today admits only today's versions; a device's own refusal keeps its rows out): a clean exit then.
        written = not re.search(rf"^{table} .*checked: no row of theirs", out, re.MULTILINE)
        assert code == (-signal.SIGKILL if point in BATCH_POINTS or written else 0), out
        assert leaks(self.lake.home / "spark-local", self.lake.phi_bytes()) == {}, "plain PHI in a killed run's scratch"
        self._run()  # the restart
        self.clean_run_agrees()

    def _resync_candidates(self, table: str) -> list[int]:
        """The patients whose consent flip makes `table`'s re-sync write: rows in the table, not forgotten; the
        allowed ones first (a withdrawal deletes what the zone holds of them)."""
        held = {r.patient_id for r in self.lake.phi(table).select("patient_id").distinct().collect()}
        candidates = [p for p in PATIENTS if p in held and p not in self.forgotten]
        return [p for p in candidates if self._allowed(p)] or candidates

    def _allowed(self, patient: int) -> bool:
        from tests.privacy_lake import policy_of

        policy = policy_of(self.lake.consents, patient, None)
        return bool(policy and policy[0])

    # --- the promises ----------------------------------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        for table in ZONE_TABLES:
            self.zone_holds_what_the_consent_rule_admits(table)
            self.latest_is_the_current_history(table)
        needles = self.lake.phi_bytes()
        assert leaks(self.lake.zone.root, needles) == {}
        assert leaks(self.spark.conf.get("spark.local.dir"), needles, since=self.started) == {}
        logs = "\n".join(self.lines.lines + self.output).encode()
        assert [n for n in needles if n in logs] == []
        ids = {str(p).encode() for p in PATIENTS} | {d.encode() for d in DEVICES}
        assert [i for i in ids if i in logs] == []

    def zone_holds_what_the_consent_rule_admits(self, table: str) -> None:
        key, config = self.lake.zone.key, self.lake.config.tables[table]
        (id_column,) = config.primary_key
        mask = (lambda v: pseudonym(v, key)) if config.phi_columns[id_column] == "pseudonym" else (lambda v: v)
        blocked = {pseudonym(p, key) for p in self.forgotten}
        expected = set()
        for v in self.lake.phi(table).collect():
            device = v["device_id"] if table != "patients" else None
            if v.patient_id not in self.forgotten and admitted(self.lake.consents, v.patient_id, device, v._valid_from):
                expected.add((mask(v[id_column]), sequence_token(table, v._sequence, key)))
        rows = self.lake.non_phi(table).collect()
        assert {(r[id_column], r._sequence) for r in rows} == expected, table
        latest = self.lake.non_phi(table, "latest").collect()
        assert not [r for r in rows + latest if r.patient_id in blocked], f"a forgotten patient in {table}"

    def latest_is_the_current_history(self, table: str) -> None:
        columns = [*self.lake.config.tables[table].columns, *LATEST_META]
        history = self.lake.non_phi(table).where(F.col("_is_current") & ~F.col("_is_deleted")).select(*columns)
        latest = self.lake.non_phi(table, "latest").select(*columns)
        assert_df_equality(latest, history, ignore_row_order=True, ignore_nullable=True)

    def clean_run_agrees(self) -> None:
        """The PHI zone equals a clean run of the same events; the zone equals its rebuild from the PHI zone."""
        if self.compare_clean_run:
            twin = clean_run(self.spark, self.events, self.root / f"clean-{self.crashes}-{len(self.events)}", self.lake)
            for table in DMS_TABLES:
                for kind in ("history", "latest", "quarantine"):
                    assert_df_equality(
                        comparable(self.lake.phi(table, kind)),
                        comparable(twin.phi(table, kind)),
                        ignore_row_order=True,
                        ignore_nullable=True,
                    )
        spark, zone = self.spark, self.lake.zone
        policy = policy_snapshot(self.lake.config).current(spark)
        for table in ZONE_TABLES:
            config = self.lake.config.tables[table]
            rebuilt = zone_rows(
                self.lake.phi(table), table=config, zone=zone, policy=policy, forgotten=forgotten_frame(spark, zone)
            ).where(F.col(ADMIT))
            assert_df_equality(
                self.lake.non_phi(table).select(*history_columns(config)),
                rebuilt.select(*history_columns(config)),
                ignore_row_order=True,
                ignore_nullable=True,
            )
            current = rebuilt.where(F.col("_is_current") & ~F.col("_is_deleted")).select(*latest_columns(config))
            assert_df_equality(
                self.lake.non_phi(table, "latest").select(*latest_columns(config)),
                current,
                ignore_row_order=True,
                ignore_nullable=True,
            )
        os.environ.update(self.lake.environment)  # back to this lake's environment

    def teardown(self) -> None:
        try:
            if self.events:
                self.clean_run_agrees()
        finally:
            logging.getLogger("lakehouse").removeHandler(self.lines)
            for name, value in self.saved.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
            shutil.rmtree(self.root, ignore_errors=True)


def comparable(df):
    """All columns but the batch id (crashes and replays number batches differently); file names without folders."""
    return same_columns(df, ignore=("_batch_id", "batch_id"))


def clean_run(spark, events: list[tuple[str, Path]], home: Path, lake: PrivacyLake) -> PrivacyLake:
    """The same files applied without crash or replay, each under the policy it was applied with.

    Data files between two consent events are applied together (the same policy flags them all). The first
    run takes every table, as the machine's first run does: each table exists even if no file of it came.
    """
    twin = PrivacyLake(home, lake.key, spark)
    pending: list[str] = []
    runs = 0

    def flush() -> None:
        nonlocal runs
        twin.run(DMS_TABLES if not runs else sorted(set(pending)))
        runs += 1
        pending.clear()

    for table, path in events:
        copy = home / "landing" / path.relative_to(lake.home / "landing")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
        consents = table == "consents"
        if pending and (consents != (pending[0] == "consents")):
            flush()
        pending.append(table)
    if pending:
        flush()
    return twin


def test_privacy_promises_hold_after_any_sequence_of_events(spark):
    PrivacyMachine.spark, PrivacyMachine.max_crashes = spark, 1
    run_state_machine_as_test(PrivacyMachine, settings=machine_settings(1, 6, shrink=False))


@pytest.mark.search
def test_privacy_promises_hold_after_any_sequence_of_events_larger_budget(spark):
    PrivacyMachine.spark, PrivacyMachine.max_crashes = spark, 2
    examples = int(os.environ.get("LAKEHOUSE_PRIVACY_EXAMPLES", "10"))
    steps = int(os.environ.get("LAKEHOUSE_PRIVACY_STEPS", "10"))
    run_state_machine_as_test(PrivacyMachine, settings=machine_settings(examples, steps, shrink=True))


@contextlib.contextmanager
def explicit_machine(spark, *, max_crashes: int, clean_run: bool = True):
    """The machine for an explicit sequence of its rules (a sequence a search found), torn down after it.

    `clean_run=False`: its teardown skips the clean run of the same events (40 s of CI for a sequence without a crash
    or a replay, whose promise `promises_hold` checks); the zone is still compared with its rebuild."""
    PrivacyMachine.spark, PrivacyMachine.max_crashes = spark, max_crashes
    machine = PrivacyMachine()
    machine.compare_clean_run = clean_run
    try:
        yield machine
    finally:
        machine.teardown()


def test_a_patient_whose_consent_record_is_deleted_leaves_the_zone(spark):
    """Found by review: the policy build only upserted, so a patient whose one consent record was deleted at the
    source kept the old "allowed" row in the policy store, and stayed in the zone for good."""
    with explicit_machine(spark, max_crashes=0, clean_run=False) as machine:
        machine.consented_patients({PATIENTS[0], PATIENTS[1]})
        machine.patient_changes(PATIENTS[0], delete=False, late=0)
        machine.patient_changes(PATIENTS[1], delete=False, late=0)
        machine.promises_hold()
        assert machine.lake.non_phi("patients").count() == 2
        machine.consent_deleted(_Draw(0))  # PATIENTS[0]'s only record
        machine.promises_hold()
        assert machine.lake.non_phi("patients").count() == 1


def test_a_late_delete_before_a_written_delete_leaves_one_delete_version_in_both_zones(spark):
    """Found by `make test-search` (2026-12-06): a late delete sorted before a delete already applied made it a
    repeat, which stayed in history where one batch of the same files keeps one delete. Its patients consented, so
    the repeat was in the non-PHI zone too. The teardown compares both zones with a clean run and a rebuild."""
    with explicit_machine(spark, max_crashes=0) as machine:
        machine.consented_patients(set(PATIENTS))
        machine.device_changes(device="DV-0052", patient=PATIENTS[2], delete=False, late=20)
        machine.device_changes(device="DV-0052", patient=None, delete=True, late=0)  # the delete written first
        machine.device_changes(device="DV-0052", patient=PATIENTS[1], delete=True, late=0)  # gone: inserted again
        machine.device_changes(device="DV-0052", patient=None, delete=True, late=20)  # the late delete
        machine.promises_hold()
        deletes = machine.lake.phi("devices").where("device_id = 'DV-0052' AND _is_deleted").count()
        assert deletes == 1


class _Draw:
    """Stands in for Hypothesis's `data` in an explicit example: every draw gives `value`."""

    def __init__(self, value: object) -> None:
        self.value = value

    def draw(self, strategy: object, label: str | None = None) -> object:
        return self.value
