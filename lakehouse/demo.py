"""Demo source: tables of a CPAP company written exactly as AWS DMS writes CSV change files to S3.

The layouts are those of `config/local.yaml`. One seeded RNG, a fixed base date and no wall clock:
the same seed gives byte-identical files. All personal data is synthetic (reserved phone ranges,
example.* mail domains, names drawn from small lists).
"""

from __future__ import annotations

import argparse
import csv
import random
import struct
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path

from lakehouse.errors import InputError

Row = dict[str, str | None]
Action = Callable[[datetime], object]

BASE = datetime(2026, 3, 1)
LOAD_AT = BASE + timedelta(hours=1, minutes=12, seconds=3, microseconds=418_207)
FLUSH_HOURS = (8, 11, 14, 17, 23)  # DMS writes a table's CDC file a few times a day in this demo
SEQ_START, SEQ_RESTART = 7_340_081_522, 31_204_117  # $AR_H_CHANGE_SEQ before / after the task restart
COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": (
        "dms_commit_ts",
        "patient_id",
        "first_name",
        "last_name",
        "date_of_birth",
        "address_line1",
        "city",
        "state",
        "zip",
        "phone",
        "email",
        "updated_at",
        "dms_change_seq",
        "BI_patient_id",
    ),
    "devices": (
        "dms_commit_ts",
        "device_id",
        "serial_number",
        "model",
        "patient_id",
        "assigned_on",
        "status",
        "firmware_version",
        "dms_change_seq",
    ),
    "therapy_sessions": (
        "dms_commit_ts",
        "session_id",
        "device_id",
        "patient_id",
        "started_at",
        "duration_minutes",
        "ahi",
        "leak_rate",
        "mask_type",
        "notes",
        "pressure_cm_h2o",
        "dms_change_seq",
    ),
}
PREVIOUS_DEVICES = tuple(c for c in COLUMNS["devices"] if c != "firmware_version")
KEYS = {"patients": "patient_id", "devices": "device_id", "therapy_sessions": "session_id"}
OP_IN_FULL_LOAD = {"patients": False, "devices": True, "therapy_sessions": False}

FIRST = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Susan",
    "William",
    "Karen",
    "José",
    "Zoë",
    "François",
    "Chloé",
    "Björn",
    "Siobhán",
    "Mei",
    "Ravi",
    "Fatima",
    "Kwame",
    "Ana",
    "Giulia",
)
LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Martinez",
    "Núñez",
    "Müller",
    "O'Connor",
    "Nguyen",
    "Kim",
    "Patel",
    "Okafor",
    "Kowalski",
    "Rossi",
    "Haddad",
    "Lefèvre",
    "Johansson",
    "Thompson",
    "White",
    "López",
)
STREETS = (
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Elm St",
    "Cedar Ln",
    "Washington Blvd",
    "Lake Shore Dr",
    "Harbor View Rd",
    "Pine Ridge Ct",
    "Mill Pond Rd",
    "Chestnut St",
    "Beacon St",
)
CITIES = (  # city|state|zip prefix|area code
    "Boston|MA|021|617",
    "Cambridge|MA|021|617",
    "Worcester|MA|016|508",
    "Providence|RI|029|401",
    "Hartford|CT|061|860",
    "Newark|NJ|071|973",
    "New Haven|CT|065|203",
    "Portland|ME|041|207",
    "Denver|CO|802|303",
    "Burlington|VT|054|802",
    "San Juan|PR|009|787",
    "Austin|TX|787|512",
)
MODELS = ("DreamAir S11 AutoSet", "DreamAir S10", "NightBreeze Pro 2", "NightBreeze Go", "SomnaFlex APAP")
MASKS = ("nasal", "nasal pillows", "full face")
NOTES = (
    "Mask refit, size M.",
    'Patient says the mask "feels tight" after 2am.',
    "Humidity raised to 5, rainout resolved.",
    "Compliance call done; travelling, used travel unit.",
)
NEWLINE_NOTE = 'Dry mouth, "rainout" in tubing.\nAdvised heated tubing; follow-up in 2 weeks.'


def _ts(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S.%f}"


def _real(value: float) -> str:
    """A PostgreSQL REAL as DMS writes it: float32, signed scientific notation, e.g. +3.23800011e+01."""
    return f"{struct.unpack('f', struct.pack('f', value))[0]:+.8e}"


@dataclass
class _Change:
    table: str
    op: str
    at: datetime
    row: Row


class _Source:
    """The source database: current rows per table and the change log DMS reads from it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rows: dict[str, dict[str, Row]] = {t: {} for t in COLUMNS}
        self.log: list[_Change] = []
        self._ids = {"patients": 1_000_001, "devices": 100_001, "therapy_sessions": 5_000_001}

    def new_id(self, table: str) -> str:
        self._ids[table] += 1
        return str(self._ids[table] - 1)

    def insert(self, table: str, row: Row, at: datetime | None) -> None:
        self.rows[table][str(row[KEYS[table]])] = row
        if at is not None:
            self._record(table, "I", at, row, None)

    def update(self, table: str, key: str, at: datetime, **values: str | None) -> None:
        row = {**self.rows[table][key], **values}
        if row[KEYS[table]] != key:
            del self.rows[table][key]
        self.rows[table][str(row[KEYS[table]])] = row
        self._record(table, "U", at, row, key)

    def delete(self, table: str, key: str, at: datetime) -> None:
        del self.rows[table][key]
        self._record(table, "D", at, {KEYS[table]: key}, key)  # PostgreSQL: a delete carries only the key

    def _record(self, table: str, op: str, at: datetime, row: Row, before: str | None) -> None:
        record = {**row, "dms_commit_ts": _ts(at)}
        if table == "patients":
            record["BI_patient_id"] = before
        self.log.append(_Change(table, op, at, record))


def _address(rng: random.Random) -> Row:
    city, state, zip3, _ = rng.choice(CITIES).split("|")
    line = f"{rng.randint(1, 9800)} {rng.choice(STREETS)}"
    if rng.random() < 0.25:
        line += f", Apt {rng.randint(1, 24)}{rng.choice('ABCD')}"
    return {"address_line1": line, "city": city, "state": state, "zip": f"{zip3}{rng.randint(1, 99):02d}"}


def _phone(rng: random.Random) -> Row:
    if rng.random() < 0.1:  # a UK mobile on file: Ofcom's fictional 07700 900xxx range
        return {"phone": f"07700 900{rng.randint(0, 999):03d}"}
    return {"phone": f"{rng.choice(CITIES)[-3:]}-555-01{rng.randint(0, 99):02d}"}  # fictional 555-01xx


def _email(rng: random.Random, first: str | None, last: str | None) -> Row:
    def fold(name: str | None) -> str:
        text = unicodedata.normalize("NFKD", str(name).split(' "')[0])
        return "".join(c for c in text if c.isascii() and c.isalpha()).lower()

    domain = rng.choice(("example.com", "example.org", "example.net"))
    return {"email": f"{fold(first)}.{fold(last)}{rng.randint(1, 99)}@{domain}"}


def _person(src: _Source, updated: datetime) -> Row:
    rng = src.rng
    first, last = rng.choice(FIRST), rng.choice(LAST)
    born = date(1938, 1, 1) + timedelta(days=rng.randint(0, 57 * 365))
    return {
        "patient_id": src.new_id("patients"),
        "first_name": first,
        "last_name": last,
        "date_of_birth": born.isoformat(),
        **_address(rng),
        **_phone(rng),
        **_email(rng, first, last),
        "updated_at": _ts(updated),
    }


def _device(src: _Source, patient_id: str | None, on: date | None) -> Row:
    rng = src.rng
    serial = f"2{rng.randint(2, 5)}{rng.randint(1, 52):02d}{rng.choice('ABCD')}{rng.randint(0, 99999):05d}"
    return {
        "device_id": f"DV-{src.new_id('devices')}",
        "serial_number": serial,
        "model": rng.choice(MODELS),
        "patient_id": patient_id,
        "assigned_on": on.isoformat() if on else None,
        "status": "active" if patient_id else "in_stock",
    }


def _pressure(session_id: str) -> str | None:
    """A PostgreSQL NUMERIC(4,1) as DMS writes it ('12.5'); NULL for auto-titrating sessions. No RNG draw."""
    n = int(session_id)
    return None if n % 7 == 0 else f"{(40 + n * 37 % 161) / 10:.1f}"


def _session(src: _Source, device: Row, night: date) -> Row:
    rng = src.rng
    start = datetime.combine(night, time(21)) + timedelta(seconds=rng.randint(0, 4 * 3600))
    session_id = src.new_id("therapy_sessions")
    return {
        "session_id": session_id,
        "device_id": device["device_id"],
        "patient_id": device["patient_id"],
        "started_at": f"{start:%Y-%m-%d %H:%M:%S}",
        "duration_minutes": str(rng.randint(95, 540)),
        "ahi": _real(round(rng.uniform(0.2, 6) ** 1.5, 2)),
        "leak_rate": _real(round(rng.uniform(0, 42), 2)),
        "mask_type": MASKS[int(str(device["device_id"])[3:]) % 3],
        "notes": None,
        "pressure_cm_h2o": _pressure(session_id),
    }


def _keys(src: _Source, table: str, *statuses: str) -> list[str]:
    return [k for k, r in src.rows[table].items() if not statuses or r["status"] in statuses]


def _initial(src: _Source, patients: int) -> None:
    """The source as the full load finds it, with the quirks a real patients table has."""
    rng = src.rng
    for _ in range(patients):
        person = _person(src, BASE - timedelta(seconds=rng.randint(86_400, 400 * 86_400) + rng.random()))
        src.insert("patients", person, None)
        on = BASE.date() - timedelta(days=rng.randint(20, 2400))
        src.insert("devices", _device(src, person["patient_id"], on), None)
    for _ in range(max(5, patients // 10)):
        src.insert("devices", _device(src, None, None), None)
    for night in (BASE.date() - timedelta(days=3), BASE.date() - timedelta(days=2)):  # last night: not synced
        for key in _keys(src, "devices", "active"):
            if rng.random() < 0.85:
                src.insert("therapy_sessions", _session(src, src.rows["devices"][key], night), None)
    people = list(src.rows["patients"].values())
    people[1].update(first_name='Robert "Bob"', **_email(rng, "Robert", people[1]["last_name"]))
    people[2].update(last_name="Johnson, Jr.", **_email(rng, people[2]["first_name"], "Johnson"))
    people[3]["address_line1"] = 'c/o "Maple Grove" Care Home, 40 Oak Ave'
    people[4].update(first_name="José", last_name="Núñez", **_email(rng, "José", "Núñez"))
    people[5].update(first_name="Zoë", last_name="Lefèvre", **_email(rng, "Zoë", "Lefèvre"))


def _edit(src: _Source, key: str, at: datetime, what: str = "") -> None:
    """A patient's phone, address or email changes (a random patient when `key` is empty)."""
    rng = src.rng
    key = key or rng.choice(_keys(src, "patients"))
    row = src.rows["patients"][key]
    what = what or rng.choice(("phone", "address", "email"))
    values = (
        _phone(rng)
        if what == "phone"
        else _address(rng)
        if what == "address"
        else _email(rng, row["first_name"], row["last_name"])
    )
    updated = _ts(at - timedelta(microseconds=rng.randint(500, 900_000)))
    src.update("patients", key, at, **values, updated_at=updated)


def _onboard(src: _Source, at: datetime) -> None:
    """New patient and their device assignment: one transaction, so one commit time."""
    person = _person(src, at - timedelta(microseconds=src.rng.randint(500, 900_000)))
    src.insert("patients", person, at)
    spare = _keys(src, "devices", "in_stock")
    if spare:
        src.update(
            "devices", spare[0], at, patient_id=person["patient_id"], assigned_on=at.date().isoformat(), status="active"
        )
    else:
        src.insert("devices", _device(src, person["patient_id"], at.date()), at)


def _nightly_sync(src: _Source, at: datetime) -> None:
    """The cloud sync job commits last night's sessions in batches every 30 minutes from 06:00."""
    rng = src.rng
    uploads = [(rng.randrange(10), k) for k in _keys(src, "devices", "active") if rng.random() < 0.85]
    commits = [at + timedelta(minutes=30 * b, microseconds=rng.randint(0, 999_999)) for b in range(10)]
    for batch, key in sorted(uploads, key=lambda upload: upload[0]):
        session = _session(src, src.rows["devices"][key], (at - timedelta(days=1)).date())
        src.insert("therapy_sessions", session, commits[batch])


def _device_status(src: _Source, at: datetime) -> None:
    key = src.rng.choice(_keys(src, "devices", "active", "in_repair"))
    repaired = src.rows["devices"][key]["status"] == "in_repair"
    src.update("devices", key, at, status="active" if repaired else src.rng.choice(("in_repair", "returned")))


def _annotate(src: _Source, at: datetime, notes: str = "") -> None:
    key = src.rng.choice(_keys(src, "therapy_sessions")[-300:])
    src.update("therapy_sessions", key, at, notes=notes or src.rng.choice(NOTES))


def _firmware(src: _Source, at: datetime) -> None:
    """Over-the-air rollout: one commit per device, seconds apart (only after the column exists)."""
    rng = src.rng
    old = [k for k in _keys(src, "devices", "active") if not src.rows["devices"][k].get("firmware_version")]
    for i, key in enumerate(rng.sample(old, min(len(old), max(2, len(old) // 5)))):
        src.update(
            "devices",
            key,
            at + timedelta(seconds=7 * i, microseconds=rng.randint(0, 999_999)),
            firmware_version=rng.choice(("5.1.0", "5.1.0", "5.0.3")),
        )


def _renumber(src: _Source, key: str, at: datetime) -> None:
    """A key-changing update (MRN correction), cascaded by the source's foreign keys in one transaction."""
    new = str(int(key) + 900_000)
    src.update("patients", key, at, patient_id=new, updated_at=_ts(at - timedelta(microseconds=1_234)))
    for table in ("devices", "therapy_sessions"):
        for k in [k for k, r in src.rows[table].items() if r["patient_id"] == key]:
            src.update(table, k, at, patient_id=new)


def _scripted(src: _Source, days: int) -> list[tuple[datetime, Action]]:
    """The quirks on purpose; times increase along the script, so squeezing into fewer days keeps order."""
    rng = src.rng

    def on(day: int, hour: int, minute: int) -> datetime:
        return BASE + timedelta(
            days=min(day, days - 1),
            hours=hour,
            minutes=minute,
            seconds=rng.randint(0, 59),
            microseconds=rng.randint(0, 999_999),
        )

    many, spare = _keys(src, "patients")[6], _keys(src, "devices", "in_stock")[-1]
    back: Row = {}  # a patient entered, deleted, entered again, then updated

    def add(at: datetime) -> None:
        back.update(_person(src, at - timedelta(microseconds=777)))
        src.insert("patients", dict(back), at)

    return [
        (on(0, 9, 10), partial(_edit, src, many, what="phone")),
        (on(0, 9, 12), partial(_edit, src, many, what="address")),
        (on(0, 9, 41), partial(_edit, src, many, what="email")),
        (on(0, 10, 5), add),
        (on(0, 12, 20), lambda at: src.delete("patients", str(back["patient_id"]), at)),
        (on(0, 12, 30), partial(_renumber, src, _keys(src, "patients")[7])),
        (on(1, 13, 0), lambda at: src.insert("patients", {**back, "updated_at": _ts(at)}, at)),
        (on(1, 14, 10), partial(_annotate, src, notes=NEWLINE_NOTE)),
        (on(1, 15, 5), partial(_edit, src, many, what="phone")),
        (on(1, 16, 40), lambda at: spare in src.rows["devices"] and src.delete("devices", spare, at)),
        (on(2, 17, 30), lambda at: _edit(src, str(back["patient_id"]), at, "phone")),
    ]


def _schedule(src: _Source, days: int, column_added: datetime) -> list[tuple[datetime, Action]]:
    """Everyday traffic (how many a day, between which hours) plus the scripted quirks, in time order."""
    rng = src.rng
    edits = max(4, len(src.rows["patients"]) // 25)
    daily = (
        (2, 9, 18, partial(_onboard, src)),
        (edits, 9, 20, partial(_edit, src, "")),
        (4, 10, 20, partial(_device_status, src)),
        (3, 13, 18, partial(_annotate, src)),
    )
    plan: list[tuple[datetime, Action]] = [(column_added + timedelta(minutes=10), partial(_firmware, src))]
    for day in (BASE + timedelta(days=d) for d in range(days)):
        plan.append((day + timedelta(hours=6), partial(_nightly_sync, src)))
        for count, first, last, action in daily:
            seconds = (rng.randint(first * 3600, last * 3600) + rng.random() for _ in range(count))
            plan += [(day + timedelta(seconds=s), action) for s in seconds]
        if day + timedelta(hours=2) > column_added:
            plan.append((day + timedelta(hours=2), partial(_firmware, src)))
    return sorted(plan + _scripted(src, days), key=lambda step: step[0])


def _flushes(rng: random.Random, days: int) -> dict[str, list[datetime]]:
    """When DMS closes each table's CDC file, a few times a day."""
    return {
        t: [
            BASE
            + timedelta(
                days=d,
                hours=h,
                minutes=rng.randint(0, 19),
                seconds=rng.randint(0, 59),
                milliseconds=rng.randint(0, 999),
            )
            for d in range(days)
            for h in FLUSH_HOURS
        ]
        for t in COLUMNS
    }


def _sequence(rng: random.Random, log: list[_Change], days: int) -> None:
    """$AR_H_CHANGE_SEQ in commit order; the task restarts early on day 2 and the counter starts lower."""
    restart = BASE + timedelta(days=1, hours=3, minutes=rng.randint(0, 50)) if days > 1 else None
    seq = SEQ_START
    log.sort(key=lambda change: change.at)
    for change in log:
        if restart is not None and change.at >= restart:
            seq, restart = SEQ_RESTART, None
        seq += rng.randint(1, 9)
        change.row["dms_change_seq"] = f"{seq:035d}"


def _write(path: Path, rows: list[Row], layout: tuple[str, ...], ops: list[str | None]) -> int:
    """One DMS CSV file: no header, RFC 4180 quoting only where needed, NULL as an empty field."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        for op, row in zip(ops, rows, strict=True):
            values = [row.get(column) for column in layout]
            writer.writerow([op, *values] if op else values)
    return len(rows)


def _write_load(folder: Path, table: str, rows: list[Row], at: datetime) -> int:
    layout = PREVIOUS_DEVICES if table == "devices" else COLUMNS[table]
    half, op = (len(rows) + 1) // 2, "I" if OP_IN_FULL_LOAD[table] else None
    for number, part in enumerate((rows[:half], rows[half:]), start=1):
        stamped = [{**r, "dms_commit_ts": _ts(at + timedelta(milliseconds=731 * number))} for r in part]
        _write(folder / f"LOAD{number:08d}.csv", stamped, layout, [op] * len(part))
    return len(rows)


def _write_cdc(folder: Path, table: str, changes: list[_Change], flushes: list[datetime], added: datetime) -> int:
    files: dict[datetime, list[_Change]] = {}
    for change in changes:  # a change lands in the first file DMS closes after its commit
        files.setdefault(next(f for f in flushes if f >= change.at), []).append(change)
    for flush, batch in files.items():
        layout = PREVIOUS_DEVICES if table == "devices" and flush < added else COLUMNS[table]
        name = f"{flush:%Y%m%d-%H%M%S}{flush.microsecond // 1000:03d}.csv"
        _write(folder / name, [c.row for c in batch], layout, [c.op for c in batch])
    return len(changes)


MIN_PATIENTS = 10  # the scenario changes particular patients among the first ten


def generate(landing: Path, *, seed: int = 7, patients: int = 200, days: int = 3) -> dict[str, int]:
    """Write DMS full-load + CDC files for the demo tables under landing/dms/cpap/<table>/.

    Returns the rows written per table (full load + CDC).
    """
    if patients < MIN_PATIENTS or days < 1:
        raise InputError(f"the demo needs at least {MIN_PATIENTS} patients and 1 day; got {patients} and {days}")
    rng = random.Random(seed)
    src = _Source(rng)
    _initial(src, patients)
    snapshot = {t: [dict(r) for r in src.rows[t].values()] for t in COLUMNS}
    flushes = _flushes(rng, days)
    column_added = flushes["devices"][len(flushes["devices"]) // 2 - 1] + timedelta(minutes=1)
    for at, action in _schedule(src, days, column_added):
        action(at)
    _sequence(rng, src.log, days)
    counts = {}
    for offset, table in enumerate(COLUMNS):
        folder = Path(landing) / "dms" / "cpap" / table
        folder.mkdir(parents=True, exist_ok=True)
        loaded = _write_load(folder, table, snapshot[table], LOAD_AT + timedelta(seconds=2.5 * offset))
        changes = [c for c in src.log if c.table == table]
        counts[table] = loaded + _write_cdc(folder, table, changes, flushes[table], column_added)
    counts["consents"] = write_consents(landing, [r["patient_id"] for r in snapshot["patients"]], seed=seed, days=days)
    return counts


CONSENT_COLUMNS = (
    "dms_commit_ts",
    "consent_id",
    "patient_id",
    "device_id",
    "allow_enhanced_analytics",
    "consented_at",
)


def write_consents(landing: Path, patient_ids: list[str], *, seed: int = 7, days: int = 3) -> int:
    """The consent records of the demo patients: a full load (most consent), then withdrawals and late grants.

    Records are append-only events (the policy build keeps the newest per patient and device); a
    NULL device_id is a patient-level record.
    """
    rng = random.Random(seed * 31 + 1)
    folder = Path(landing) / "dms" / "cpap" / "consents"
    folder.mkdir(parents=True, exist_ok=True)
    load, changes = [], []
    for n, patient in enumerate(patient_ids):
        signed = BASE - timedelta(days=rng.randint(1, 300), seconds=rng.randint(0, 86_399))
        allowed = "t" if n % 5 else "f"  # one in five has not consented
        load.append(
            {
                "consent_id": str(900_001 + n),
                "patient_id": patient,
                "device_id": None,
                "allow_enhanced_analytics": allowed,
                "consented_at": _ts(signed),
                "dms_commit_ts": _ts(LOAD_AT),
            }
        )
    for n, patient in enumerate(rng.sample(patient_ids, max(2, len(patient_ids) // 20))):
        at = BASE + timedelta(days=rng.randint(0, days - 1), hours=9 + n % 8, minutes=rng.randint(0, 59))
        withdraw = n % 2 == 0
        changes.append({"consent_id": str(990_001 + n), "patient_id": patient, "device_id": None,
                        "allow_enhanced_analytics": "f" if withdraw else "t", "consented_at": _ts(at),
                        "dms_commit_ts": _ts(at)})  # fmt: skip
    _write(folder / "LOAD00000001.csv", load, CONSENT_COLUMNS, [None] * len(load))
    changes.sort(key=lambda r: r["dms_commit_ts"])
    end = BASE + timedelta(days=days)
    _write(folder / f"{end:%Y%m%d-%H%M%S}000.csv", changes, CONSENT_COLUMNS, ["I"] * len(changes))
    return len(load) + len(changes)


def main(argv: list[str] | None = None) -> int:
    """`python -m lakehouse.demo LANDING [--seed N --patients N --days N]`: write the demo files."""
    parser = argparse.ArgumentParser(prog="python -m lakehouse.demo", description=__doc__.splitlines()[0])
    parser.add_argument("landing", type=Path, help="landing root; files go to LANDING/dms/cpap/<table>/")
    for option, default in (("--seed", 7), ("--patients", 200), ("--days", 3)):
        parser.add_argument(option, type=int, default=default)
    args = parser.parse_args(argv)
    if args.patients < MIN_PATIENTS or args.days < 1:
        parser.error(f"the demo needs --patients {MIN_PATIENTS} or more and --days 1 or more")
    counts = generate(args.landing, seed=args.seed, patients=args.patients, days=args.days)
    for table, rows in counts.items():
        print(f"{table}: {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
