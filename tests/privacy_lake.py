"""A small CPAP lake on the shipped configuration, driven one event at a time, for the privacy tests.

`PrivacyLake` writes DMS CDC files in the layouts of `config/local.yaml` (patients, devices, therapy
sessions, consent records) with commit times from its own clock, runs the engine on them in-process
(`lakehouse run` minus the snapshot feeds), forgets patients, and remembers every PHI value it wrote,
so a test can look for them byte by byte. `policy_of` is the consent rule the zone must follow, written
again from the README's words (newest record per patient and per device, a refusal wins a tie; the
newer of the two applies; it covers versions from its day on).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse import ownership
from lakehouse.apply import consent_sync, privacy_log
from lakehouse.apply.forget import forget_patient
from lakehouse.apply.non_phi import non_phi_zone
from lakehouse.config import load_config
from lakehouse.demo import COLUMNS, CONSENT_COLUMNS
from lakehouse.runner import run_once
from lakehouse.tables import table_paths

LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"
DMS_TABLES = ["consents", "patients", "devices", "therapy_sessions"]
ZONE_TABLES = ["patients", "devices", "therapy_sessions"]
FOLDER = {t: f"dms/cpap/{t}" for t in DMS_TABLES}
KEYS = {"patients": "patient_id", "devices": "device_id", "therapy_sessions": "session_id", "consents": "consent_id"}
START = datetime(2026, 3, 1, 8, 0, 0)


def _ts(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S.%f}"


@dataclass
class Consent:
    patient: int
    device: str | None
    allowed: bool
    signed: datetime
    consent_id: int = 0


@dataclass
class PrivacyLake:
    """One lake under `home`, with the masking key `key` (hex text) in the environment while it is used."""

    home: Path
    key: str
    spark: object
    clock: datetime = START
    files: int = 0
    change: int = 0
    consent_ids: int = 990_000
    consents: list[Consent] = field(default_factory=list)
    phi_text: set[str] = field(default_factory=set)  # every PHI value written, as text
    phi_times: set[datetime] = field(default_factory=set)  # every exact time written (commit, updated, started)
    landed: list[tuple[str, Path]] = field(default_factory=list)  # (table, file) in landing order
    patients: dict[int, dict] = field(default_factory=dict)  # the source's current rows
    devices: dict[str, dict] = field(default_factory=dict)
    sessions: dict[int, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.environment = {"LAKEHOUSE_HOME": str(self.home), "LAKEHOUSE_MASKING_KEY": self.key}
        os.environ.update(self.environment)
        config = load_config(LOCAL_YAML)
        # No OPTIMIZE checks after each batch (a few seconds per batch on these tiny tables; compaction is not
        # what these tests are about, and it changes no row). VACUUM and the retention stay as shipped.
        compaction = config.maintenance.compaction.model_copy(update={"method": "none"})
        maintenance = config.maintenance.model_copy(update={"compaction": compaction})
        self.config = config.model_copy(update={"maintenance": maintenance})
        self.zone = non_phi_zone(self.config)

    # --- the source ---------------------------------------------------------------------------------------

    def tick(self, hours: float = 7.0) -> datetime:
        """Move the source's clock on (by odd seconds too: no commit time falls on a round minute)."""
        self.clock += timedelta(hours=hours, seconds=37, microseconds=123_457)
        return self.clock

    def _seq(self, at: datetime) -> str:
        self.change += 1
        return f"{int(at.timestamp()) * 1000 + self.change % 1000:035d}"

    def land(self, table: str, records: list[list[str | None]]) -> Path:
        """One DMS CDC file of `records` (Op first), named after a counter so files sort in landing order."""
        self.files += 1
        folder = self.home / "landing" / FOLDER[table]
        folder.mkdir(parents=True, exist_ok=True)
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([["" if v is None else v for v in r] for r in records])
        path = folder / f"20260301-{self.files:09d}.csv"
        path.write_text(out.getvalue(), encoding="utf-8")
        os.utime(path, (1_700_000_000 + self.files, 1_700_000_000 + self.files))
        self.landed.append((table, path))
        return path

    def _record(self, table: str, op: str, row: dict, at: datetime) -> list[str | None]:
        self.phi_times.add(at)
        values = {**row, "dms_commit_ts": _ts(at), "dms_change_seq": self._seq(at)}
        return [op, *[None if values.get(c) is None else str(values[c]) for c in COLUMNS[table]]]

    def patient(self, pid: int, *, at: datetime | None = None) -> list[str | None]:
        """An insert or update of patient `pid` with fresh PHI values (`at` earlier than the clock: late data)."""
        at = at or self.tick()
        n = self.change + 1
        row = {
            "patient_id": pid,
            "first_name": f"Quilla{pid}n{n}",
            "last_name": f"Zorvath{pid}n{n}",
            "date_of_birth": f"19{40 + pid % 50}-0{1 + n % 9}-1{n % 10}",
            "address_line1": f"{n} Xebec Way {pid}",
            "city": f"Yarrowby{pid}n{n}",
            "state": "MA",
            "zip": f"02{pid % 10}{n % 10}{n % 7}-{1000 + n}",
            "phone": f"555-07{pid % 10}{n:04d}",
            "email": f"q{pid}.n{n}@example.org",
            "updated_at": _ts(at - timedelta(seconds=3)),
        }
        self.phi_text |= {str(row[c]) for c in row if c not in ("patient_id", "state")}
        self.phi_times.add(at - timedelta(seconds=3))
        op = "U" if pid in self.patients else "I"
        self.patients[pid] = row
        return self._record("patients", op, {**row, "BI_patient_id": pid if op == "U" else None}, at)

    def delete_patient(self, pid: int, *, at: datetime | None = None) -> list[str | None]:
        self.patients.pop(pid, None)
        return self._record("patients", "D", {"patient_id": pid, "BI_patient_id": pid}, at or self.tick())

    def device(self, did: str, patient: int | None, *, at: datetime | None = None) -> list[str | None]:
        at = at or self.tick()
        n = self.change + 1
        row = {
            "device_id": did,
            "serial_number": f"SNQ{did[-2:]}{n:05d}Z",
            "model": "AirSense 11",
            "patient_id": patient,
            "assigned_on": (at.date() - timedelta(days=n % 40)).isoformat() if patient else None,
            "status": "active" if patient else "in_stock",
            "firmware_version": "5.1.0",
        }
        self.phi_text |= {did, row["serial_number"]} | ({row["assigned_on"]} if row["assigned_on"] else set())
        op = "U" if did in self.devices else "I"
        self.devices[did] = row
        return self._record("devices", op, row, at)

    def delete_device(self, did: str, *, at: datetime | None = None) -> list[str | None]:
        self.devices.pop(did, None)
        return self._record("devices", "D", {"device_id": did}, at or self.tick())

    def session(self, sid: int, did: str, *, at: datetime | None = None) -> list[str | None]:
        at = at or self.tick()
        patient = self.devices.get(did, {}).get("patient_id")
        started = at - timedelta(hours=9, minutes=sid % 50)
        n = self.change + 1
        row = {
            "session_id": sid,
            "device_id": did,
            "patient_id": patient,
            "started_at": f"{started:%Y-%m-%d %H:%M:%S}",
            "duration_minutes": 400 + n % 60,
            "ahi": 2.5,
            "leak_rate": 12.0,
            "mask_type": "nasal",
            "notes": f"Snorvel note {sid} n{n}",
        }
        self.phi_text |= {did, row["notes"], row["started_at"]}
        self.phi_times.add(started.replace(microsecond=0))
        op = "U" if sid in self.sessions else "I"
        self.sessions[sid] = row
        return self._record("therapy_sessions", op, row, at)

    def delete_session(self, sid: int, *, at: datetime | None = None) -> list[str | None]:
        self.sessions.pop(sid, None)
        return self._record("therapy_sessions", "D", {"session_id": sid}, at or self.tick())

    def consent(self, pid: int, allowed: bool, *, device: str | None = None, signed: datetime | None = None) -> Path:
        """Land one consent record (a late one when `signed` is earlier than the clock)."""
        at = self.tick(1)
        signed = signed or at
        self.consent_ids += 1
        self.consents.append(Consent(pid, device, allowed, signed, self.consent_ids))
        return self.land("consents", [self._consent_record("I", self.consents[-1], at)])

    def delete_consent(self, index: int) -> Path:
        """Delete the `index`-th live consent record at the source (a correction, an erasure): DMS writes a D row."""
        record = self.consents.pop(index)
        return self.land("consents", [self._consent_record("D", record, self.tick(1))])

    def _consent_record(self, op: str, consent: Consent, at: datetime) -> list[str | None]:
        values = {
            "dms_commit_ts": _ts(at),
            "consent_id": consent.consent_id,
            "patient_id": consent.patient,
            "device_id": consent.device,
            "allow_enhanced_analytics": "t" if consent.allowed else "f",
            "consented_at": _ts(consent.signed),
        }
        return [op, *[values[c] for c in CONSENT_COLUMNS]]

    # --- the engine ---------------------------------------------------------------------------------------

    def run(self, tables: list[str] | None = None) -> list:
        os.environ.update(self.environment)
        runs = run_once(self.spark, self.config, tables or DMS_TABLES)
        failed = {r.table: r.error for r in runs if not r.ok}
        assert not failed, failed
        return runs

    def forget(self, pid: int, **options: object):
        os.environ.update(self.environment)
        return forget_patient(self.spark, self.config, self.zone, str(pid), **options)

    def cli(self, *args: str, crash_at: str | None = None) -> tuple[int, str]:
        """Run `lakehouse <args>` in a process of its own (its own JVM) on this lake; its exit code and output.

        `crash_at` sets LAKEHOUSE_CRASH_AT: the process SIGKILLs itself there (exit code -9).
        """
        env = {**os.environ, **self.environment, "PYTHONUNBUFFERED": "1"}
        env.pop("LAKEHOUSE_CRASH_AT", None)
        if crash_at:
            env["LAKEHOUSE_CRASH_AT"] = crash_at
        proc = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "--config", str(LOCAL_YAML), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        out, _ = proc.communicate(timeout=1200)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its JVM and Python workers, if the kill left them behind
        return proc.returncode, out

    # --- reading ------------------------------------------------------------------------------------------

    def phi(self, table: str, kind: str = "history"):
        return self.spark.read.format("delta").load(getattr(table_paths(self.config, self.config.tables[table]), kind))

    def non_phi(self, table: str, kind: str = "history"):
        return self.spark.read.format("delta").load(getattr(self.zone, kind)(self.config.tables[table]))

    def checkpoint_batches(self, table: str) -> int:
        """How many batches the table's query has committed (the next batch's id)."""
        commits = Path(table_paths(self.config, self.config.tables[table]).checkpoint) / "commits"
        return len([p for p in commits.glob("*") if p.name.isdigit()]) if commits.exists() else 0

    def phi_bytes(self) -> set[bytes]:
        """Every PHI value written, as the bytes a file or a log would hold: text, and Parquet's INT64 micros."""
        found = {v.encode() for v in self.phi_text if len(v) >= 6}
        for at in self.phi_times:
            found |= {f"{at:%Y-%m-%d %H:%M:%S}".encode(), f"{at:%Y-%m-%dT%H:%M:%S}".encode()}
            micros = int((at - datetime(1970, 1, 1)).total_seconds()) * 1_000_000 + at.microsecond
            found.add(struct.pack("<q", micros))
        return found


def fresh_lake(spark, home: Path, monkeypatch) -> PrivacyLake:
    """A lake under `home` with a new masking key, both in the environment for the test (`monkeypatch`)."""
    key = secrets.token_hex(32)
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    monkeypatch.setenv("LAKEHOUSE_MASKING_KEY", key)
    return PrivacyLake(home, key, spark)


class LakeTemplates:
    """Lakes that several tests start from alike, each made once per test process and put back for each test.

    A test of the privacy promises mostly starts with one `run` of a consented patient's first files (40-70 s of a
    1-3 min test); the tests that start alike take a copy of that lake instead. It is put back at the one path it
    was made at, as the test would have made it: Structured Streaming's checkpoints name the files read by their
    absolute path. What Spark, Delta and the engine keep in memory about the lake there before (cached logs and
    snapshots, the privacy log's rows) is dropped first, as a new lake at a new path would find none.
    """

    def __init__(self, spark, root: Path) -> None:
        self.spark, self.root = spark, root
        self.home = root / "lake"
        self.key = secrets.token_hex(32)
        self.saved: dict[str, dict] = {}  # make's name -> the PrivacyLake's fields right after it

    def lake(self, make: Callable[[PrivacyLake], None], monkeypatch) -> PrivacyLake:
        """A lake as `make` leaves a new one: made here the first time, put back from its copy after that."""
        held = [key for key in ownership._held if key.startswith(str(self.home))]
        assert not held, f"a test before left leases held on the lake put back here: {held}"
        monkeypatch.setenv("LAKEHOUSE_HOME", str(self.home))
        monkeypatch.setenv("LAKEHOUSE_MASKING_KEY", self.key)
        shutil.rmtree(self.home, ignore_errors=True)
        forget_cached_state(self.spark)
        start, saved = make.__name__, self.root / f"saved-{make.__name__}"
        if start in self.saved:
            shutil.copytree(saved, self.home, symlinks=True)  # file times kept, as the engine left them
            return PrivacyLake(self.home, self.key, self.spark, **copy.deepcopy(self.saved[start]))
        lake = PrivacyLake(self.home, self.key, self.spark)
        make(lake)
        shutil.copytree(self.home, saved, symlinks=True)
        mine = [f.name for f in fields(lake) if f.name not in ("home", "key", "spark")]
        self.saved[start] = copy.deepcopy({name: getattr(lake, name) for name in mine})
        return lake


def starting_from(make: Callable[[PrivacyLake], None]):
    """Mark a test to get as its `lake` the lake `make` leaves (made once per test process: LakeTemplates).

    The test module's `lake` fixture takes the mark's parameter (`lake_for`)."""
    return pytest.mark.parametrize("lake", [make], indirect=True, ids=[make.__name__])


def lake_for(request, spark, home: Path, monkeypatch, templates: LakeTemplates) -> PrivacyLake:
    """The `lake` of a test: a new one under `home`, or the one its `starting_from` mark names."""
    make = getattr(request, "param", None)
    return fresh_lake(spark, home, monkeypatch) if make is None else templates.lake(make, monkeypatch)


def forget_cached_state(spark) -> None:
    """Drop what this process keeps in memory about lakes: Delta's cached logs and snapshots, Spark's cached data,
    the engine's rows of privacy logs and policy diffs."""
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    spark.catalog.clearCache()
    with privacy_log._ROWS_LOCK:
        privacy_log._ROWS.clear()
    with consent_sync._DIFFS_LOCK:
        consent_sync._DIFFS.clear()


def zone_rows_of(lake: PrivacyLake, patient: int) -> dict[str, int]:
    """How many rows of `patient` (by pseudonym) each zone table's history and latest hold."""
    from pyspark.sql import functions as F

    from lakehouse.masking import pseudonym

    mine = pseudonym(patient, lake.zone.key)
    return {
        f"{t}.{kind}": lake.non_phi(t, kind).where(F.col("patient_id") == mine).count()
        for t in ZONE_TABLES
        for kind in ("history", "latest")
    }


def policy_of(consents: list[Consent], patient: int | None, device: str | None) -> tuple[bool, date | None] | None:
    """The applicable consent of a row of `patient` on `device`: (allowed, since), or None without a record."""

    def newest(records: list[Consent]) -> Consent | None:
        return max(records, key=lambda c: (c.signed, not c.allowed), default=None)

    if patient is None:
        return None
    levels = [newest([c for c in consents if c.patient == patient and c.device is None])]
    if device is not None:
        levels.append(newest([c for c in consents if c.patient == patient and c.device == device]))
    chosen = max((c for c in levels if c), key=lambda c: (c.signed.date(), not c.allowed), default=None)
    return None if chosen is None else (chosen.allowed, chosen.signed.date())


def admitted(consents: list[Consent], patient: int | None, device: str | None, valid_from: datetime) -> bool:
    """The zone's rule: the applicable consent allows, and the version starts on or after its day."""
    policy = policy_of(consents, patient, device)
    return policy is not None and policy[0] and valid_from >= datetime.combine(policy[1], datetime.min.time())


class LogLines(logging.Handler):
    """The messages of the log records it is given (add it to the `lakehouse` logger)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def files_under(root: str | Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]


def leaks(root: str | Path, needles: set[bytes], *, since: float = 0.0) -> dict[str, list[bytes]]:
    """The files under `root` (changed at or after `since`, epoch seconds) holding any of `needles`, and what."""
    if not needles:
        return {}
    pattern = re.compile(b"|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))
    found = {}
    for path in files_under(root):
        try:
            if path.stat().st_mtime < since:
                continue
            data = path.read_bytes()
        except FileNotFoundError:  # Spark removed it meanwhile
            continue
        hits = sorted(set(pattern.findall(data)))
        if hits:
            found[str(path)] = hits
    return found
