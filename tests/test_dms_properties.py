"""Property: whatever DMS files arrive — any schema and task settings, corrupted, duplicated, in any order —
the tables equal a pure-Python model of the intended changes, and no corrupted row is ever applied.

Hypothesis draws a table (a key and 1-3 typed columns), DMS task settings (CSV or Parquet, header, Op in
the full load, timestamp column, change-seq column, gzip), a valid change sequence at the source (a full
load, then inserts of absent keys, updates that change a value or none, deletes with all values or the key
only), splits it into CDC files, corrupts some files (cut at a random byte, a column dropped or added)
and delivers some twice under a new name, then lands the files in a random order over one or two runs.

The model applies the rules the README states, batch by batch: which records of a cut file are
complete; identical contents are one delivery (the first, by batch then LOAD first then name); the
sequence `class, commit time, change-seq, file, row`; `_valid_from` from the timestamp column, the DMS
file name time, or 1970-01-01 for full-load rows; history versions (a replay, an update that changes
nothing, or a delete of a deleted key make none: the version before it keeps them as repeats, and a late change
landing right before one makes it a version, as one batch would; a delete carries the values it deletes, a stored
one too when a late version lands right before it); latest is the newest version unless it is a delete.

Spark costs seconds per example: `make test` runs 6 fixed examples; `make test-search` runs 25 random ones
(`LAKEHOUSE_PROPERTY_EXAMPLES=200 make test-search` for a longer search).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.config import Config
from lakehouse.runner import run_once
from lakehouse.tables import table_paths

TYPES = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
}
LOAD_TS = datetime(2026, 3, 1, 8)
BASE = datetime(2026, 3, 1, 9)
EPOCH = datetime(1970, 1, 1)
KEYS = range(1, 6)


@dataclass
class Change:
    op: str
    key: int
    values: dict[str, Any]  # None values of a key-only delete
    ts: datetime
    seq: str | None


@dataclass
class DmsFile:
    name: str  # base name, e.g. LOAD00000001.csv.gz or 20260301-100000000.parquet
    changes: list[Change]
    content: bytes = b""
    corruption: str = "none"  # none | cut | drop | extra
    cut: int = 0
    copy_of: str | None = None
    # What the model expects of it: the rows applied (index, change) and the rows quarantined (positions).
    ends: list[int] = field(default_factory=list)  # byte offset after each data record (CSV, uncompressed)
    text_start: int = 0  # byte offset of the first data record (after a header)


@dataclass
class Scenario:
    columns: dict[str, str]
    format: str
    header: bool
    op_in_full_load: bool
    with_ts: bool
    with_seq: bool
    gz: bool
    files: list[DmsFile]
    steps: list[list[str]]  # file names landed per run


def values_of(type_: str) -> st.SearchStrategy[Any]:
    return {
        "string": st.text(st.sampled_from('ab, "é\n'), min_size=1, max_size=6),
        "bigint": st.integers(-(2**40), 2**40),
        "double": st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64),
        "boolean": st.booleans(),
        "date": st.dates(date(1990, 1, 1), date(2030, 12, 31)),
    }[type_]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    types = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=3))
    columns = {f"c{i}_{t}": t for i, t in enumerate(types)}
    fmt = draw(st.sampled_from(["csv", "parquet"]))
    header = fmt == "csv" and draw(st.booleans())
    gz = fmt == "csv" and draw(st.booleans())
    with_ts, with_seq, op_in_full_load = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())

    def row() -> dict[str, Any]:
        return {c: draw(st.none() | values_of(t)) for c, t in columns.items()}

    state = {k: row() for k in draw(st.sets(st.sampled_from(KEYS), min_size=1, max_size=3))}
    load = [Change("I", k, dict(v), LOAD_TS, None) for k, v in sorted(state.items())]
    changes: list[Change] = []
    for n in range(draw(st.integers(1, 7))):
        key = draw(st.sampled_from(KEYS))
        ts, seq = BASE + timedelta(seconds=n), f"{20260301000000000000000000000000000 + n:035d}"
        if key not in state:
            state[key] = row()
            changes.append(Change("I", key, dict(state[key]), ts, seq))
        elif (kind := draw(st.sampled_from(["update", "update", "no-op", "delete"]))) == "update":
            column = draw(st.sampled_from(sorted(columns)))
            new = draw(values_of(columns[column]).filter(lambda v, old=state[key][column]: v != old))
            state[key] = {**state[key], column: new}
            changes.append(Change("U", key, dict(state[key]), ts, seq))
        elif kind == "no-op":  # `UPDATE ... SET c = c`: DMS writes the row as it was
            changes.append(Change("U", key, dict(state[key]), ts, seq))
        else:
            key_only = draw(st.booleans())
            changes.append(Change("D", key, dict.fromkeys(columns) if key_only else dict(state.pop(key)), ts, seq))
            state.pop(key, None)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(changes) - 1)), max_size=2)))
    chunks = [changes[a:b] for a, b in zip([0, *cuts], [*cuts, len(changes)], strict=True) if changes[a:b]]
    ext = f".{fmt}" + (".gz" if gz else "")
    files = [DmsFile(f"LOAD00000001{ext}", load)]
    for i, chunk in enumerate(chunks):
        files.append(DmsFile(f"{BASE + timedelta(minutes=60 + i):%Y%m%d-%H%M%S}{i * 7:03d}{ext}", chunk))
    for f in files:
        f.corruption = draw(st.sampled_from(["none", "none", "none", "cut", "drop", "extra"]))
    copies = [
        DmsFile(f"{BASE + timedelta(hours=3, minutes=i):%Y%m%d-%H%M%S}500{ext}", f.changes, copy_of=f.name)
        for i, f in enumerate(files[1:])
        if draw(st.booleans())
    ]
    order = draw(st.permutations([f.name for f in files]))
    split = draw(st.integers(1, len(order)))
    steps = [list(order[:split]), list(order[split:])]
    for c in copies:  # a copy lands with or after its original (a re-delivery, never before it)
        steps[max(i for i, s in enumerate(steps) if c.copy_of in s) if draw(st.booleans()) else 1].append(c.name)
    scenario = Scenario(columns, fmt, header, op_in_full_load, with_ts, with_seq, gz, [*files, *copies], steps)
    for f in scenario.files:
        if f.copy_of is None:
            write_file(scenario, f)
            if f.corruption == "cut":  # at any byte of what was written (compressed, if it is)
                f.cut = draw(st.integers(1, len(f.content) - 1))
    originals = {f.name: f for f in scenario.files}
    for c in copies:
        original = originals[c.copy_of]
        c.content, c.corruption, c.cut, c.ends, c.text_start = (
            original.content, original.corruption, original.cut, original.ends, original.text_start
        )  # fmt: skip
    scenario.steps = [s for s in steps if s]
    return scenario


# --- writing files as DMS does, then corrupting them -------------------------------------------------------------


def layout(s: Scenario) -> list[str]:
    return [*(["ts"] if s.with_ts else []), "id", *s.columns, *(["seq"] if s.with_seq else [])]


def has_op(s: Scenario, f: DmsFile) -> bool:
    return not f.name.startswith("LOAD") or s.op_in_full_load


def text_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    return repr(value) if isinstance(value, float) else str(value)


def record(s: Scenario, f: DmsFile, c: Change) -> dict[str, Any]:
    values = {"ts": f"{c.ts:%Y-%m-%d %H:%M:%S.%f}", "id": c.key, **c.values, "seq": c.seq}
    return {name: values[name] for name in layout(s)}


def write_file(s: Scenario, f: DmsFile) -> None:
    names = layout(s)
    if f.corruption == "drop":
        names = [n for n in names if n != next(iter(s.columns))]
    if f.corruption == "extra":
        names = [*names, "extra"]
    op = has_op(s, f)
    rows = [{**record(s, f, c), "extra": "x", "Op": c.op} for c in f.changes]
    if s.format == "parquet":
        arrays = {"Op": pa.array([r["Op"] for r in rows], pa.string())} if op else {}
        types = {"ts": pa.string(), "id": pa.int64(), "seq": pa.string(), "extra": pa.string()}
        types.update({c: TYPES[t] for c, t in s.columns.items()})
        arrays.update({n: pa.array([r[n] for r in rows], types[n]) for n in names})
        out = io.BytesIO()
        pq.write_table(pa.table(arrays), out)
        f.content = out.getvalue()
        return
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if s.header:
        writer.writerow([*(["Op"] if op else []), *names])
    f.text_start = len(out.getvalue().encode())
    for r in rows:
        writer.writerow([*([r["Op"]] if op else []), *(text_value(r[n]) for n in names)])
        f.ends.append(len(out.getvalue().encode()))
    data = out.getvalue().encode()
    f.content = gzip.compress(data, mtime=0) if s.gz else data


def delivered(f: DmsFile) -> bytes:
    return f.content[: f.cut] if f.corruption == "cut" else f.content


# --- the model --------------------------------------------------------------------------------------------------


def file_time(name: str) -> datetime | None:
    if name.startswith("LOAD"):
        return None
    return datetime.strptime(name[:15], "%Y%m%d-%H%M%S") + timedelta(milliseconds=int(name[15:18]))


def outcome(s: Scenario, f: DmsFile) -> tuple[list[tuple[int, Change]], int]:
    """(records applied with their row position, rows quarantined) of a file delivered once."""
    if f.corruption in ("drop", "extra"):
        return [], len(f.changes)
    if f.corruption != "cut":
        return list(enumerate(f.changes)), 0
    if s.format == "parquet" or s.gz:
        return [], 1
    complete = [i for i, end in enumerate(f.ends) if end <= f.cut]
    cut_inside = f.cut > (f.ends[complete[-1]] if complete else f.text_start) or f.cut < f.text_start
    return [(i, f.changes[i]) for i in complete], int(cut_inside)


@dataclass
class Version:
    key: int
    seq: tuple
    op: str
    values: dict[str, Any]
    valid_from: datetime
    file: str
    row: int
    repeat: bool = False  # a change that repeated the version before it: no version, kept in that one's `_repeats`


def sequence(s: Scenario, f: DmsFile, row: int, c: Change) -> tuple:
    load = f.name.startswith("LOAD")
    seq = c.seq if s.with_seq and not load else None
    return (int(not load), valid_from(s, f, c), seq or "0" * 35, "" if seq else f.name, 0 if seq else row)


def valid_from(s: Scenario, f: DmsFile, c: Change) -> datetime:
    if s.with_ts:
        return c.ts
    return file_time(f.name) or EPOCH


def model(s: Scenario) -> tuple[dict[int, list[Version]], dict[str, tuple[int, int]]]:
    """History per key after every run, and per file (rows applied, rows quarantined) of its first delivery."""
    by_name = {f.name: f for f in s.files}
    history: dict[int, list[Version]] = {}
    seen: set[str] = set()
    placed: dict[str, tuple[int, int]] = {}
    for step in s.steps:
        new: list[Version] = []
        batch = sorted(step, key=lambda n: (not n.startswith("LOAD"), n))
        for name in batch:
            f = by_name[name]
            digest = hashlib.sha256(gzip.decompress(delivered(f)) if s.gz and f.corruption != "cut" else delivered(f))
            if digest.hexdigest() in seen:
                continue
            seen.add(digest.hexdigest())
            applied, quarantined = outcome(s, f)
            placed[name] = (len(applied), quarantined)
            new += [
                Version(c.key, sequence(s, f, i, c), c.op, c.values, valid_from(s, f, c), name, i) for i, c in applied
            ]
        for key in {v.key for v in new}:
            history[key] = plan(history.get(key, []), [v for v in new if v.key == key], list(s.columns))
    return history, placed


def plan(existing: list[Version], new: list[Version], columns: list[str]) -> list[Version]:
    """The versions of one key after a batch, each followed by the repeats it keeps: the rules of
    `apply.history.plan_history`. A stored repeat is a row like a version: a late change right before it that it
    does not repeat makes it a version again (with its version's values, which its own tracked values equal)."""
    rows = sorted([(v.seq, 0, v) for v in existing] + [(v.seq, 1, v) for v in new], key=lambda r: r[:2])
    replays = [i > 0 and is_new and seq == rows[i - 1][0] for i, (seq, is_new, _v) in enumerate(rows)]
    # Each row against the nearest earlier row that is not a replay (`live`): a repeat of it, and whether it is new.
    repeats, before_new = [False] * len(rows), [False] * len(rows)
    live: tuple[Version, bool] | None = None
    for i, (_seq, is_new, v) in enumerate(rows):
        if replays[i]:
            continue
        if live is not None:
            before, before_new[i] = live
            repeats[i] = before.valid_from <= v.valid_from and (
                (v.op != "D" and before.op != "D" and all(v.values[c] == before.values[c] for c in columns))
                or (v.op == "D" and before.op == "D")
            )
        live = (v, bool(is_new))
    out: list[Version] = []
    late: Version | None = None  # the newest version, when it is one of this batch's

    def last_version() -> Version | None:
        return next((o for o in reversed(out) if not o.repeat), None)

    def keep_repeat(v: Version) -> None:
        holder = last_version()
        assert holder is not None  # a key's first row that counts is a version
        out.append(replace(v, values=dict(holder.values), repeat=True))

    for i, (_seq, is_new, v) in enumerate(rows):
        if replays[i]:
            continue
        if not is_new:
            # A stored repeat that still repeats stays one; a stored version a late one right before it makes a
            # repeat becomes one (one batch makes it none).
            if repeats[i] and (v.repeat or before_new[i]):
                keep_repeat(v)
                continue
            # A stored delete right after a late version (timed before it) carries that version's values.
            follows = late is not None and last_version() is late and late.op != "D" and late.valid_from <= v.valid_from
            if v.op == "D" and follows:
                v = replace(v, values=dict(late.values))
            out.append(replace(v, repeat=False))
            continue
        if repeats[i]:
            keep_repeat(v)
            continue
        before = last_version()
        if v.op == "D" and before is not None and before.op != "D":
            v = replace(v, values=dict(before.values))
        out.append(v)
        late = v
    return out


# --- running the engine -----------------------------------------------------------------------------------------


def check(spark, s: Scenario) -> None:
    root = Path(tempfile.mkdtemp(prefix="dms-property-"))
    try:
        _check(spark, s, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check(spark, s: Scenario, root: Path) -> None:
    landing = root / "landing"
    landing.mkdir()
    columns = {"ts": "string", "id": "bigint", **s.columns, "seq": "string"}
    source = {
        "kind": "dms",
        "path": str(landing),
        "format": s.format,
        "header": s.header,
        "op_in_full_load": s.op_in_full_load,
        "columns": {c: columns[c] for c in layout(s)},
    }
    if s.with_ts:
        source["timestamp_column"] = "ts"
    if s.with_seq:
        source["change_seq_column"] = "seq"
    config = Config.model_validate(
        {
            "paths": {"landing": str(landing), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
            "tables": {"t": {"primary_key": ["id"], "source": source}},
        }
    )
    by_name = {f.name: f for f in s.files}
    for step in s.steps:
        for name in step:
            (landing / name).write_bytes(delivered(by_name[name]))
        (run,) = run_once(spark, config)
        assert run.ok, run.error
        assert all(b.reconciles for b in run.batches), [b.to_json() for b in run.batches]
    expected, placed = model(s)
    paths = table_paths(config, config.tables["t"])
    history = spark.read.format("delta").load(paths.history).collect()
    # Sorted by their text: values may be NULL, and None does not compare with a value. Each version with the
    # lineage of the repeats it keeps.
    actual = sorted(
        (
            (
                *(r.id, r._op, tuple(r[c] for c in s.columns), r._valid_from, Path(r._source_file).name, r._source_row),
                tuple((Path(x._source_file).name, x._source_row, x._op) for x in r._repeats or []),
            )
            for r in history
        ),
        key=repr,
    )
    wanted = sorted(
        (
            (
                *(v.key, v.op, tuple(v.values[c] for c in s.columns), v.valid_from, v.file, v.row),
                tuple((x.file, x.row, x.op) for x in held),
            )
            for versions in expected.values()
            for v, held in _with_repeats(versions)
        ),
        key=repr,
    )
    assert actual == wanted
    latest = spark.read.format("delta").load(paths.latest).collect()
    current = {k: [v for v, _held in _with_repeats(versions)][-1] for k, versions in expected.items()}
    live = {k: v for k, v in current.items() if v.op != "D"}
    # Latest is history's current version, down to the change it came from (a dropped repeat's place goes to the
    # late version before it).
    assert sorted(
        (
            (r.id, tuple(r[c] for c in s.columns), r._valid_from, Path(r._source_file).name, r._source_row)
            for r in latest
        ),
        key=repr,
    ) == sorted(
        ((k, tuple(v.values[c] for c in s.columns), v.valid_from, v.file, v.row) for k, v in live.items()), key=repr
    )
    quarantine = spark.read.format("delta").load(paths.quarantine).collect()
    per_file: dict[str, int] = {}
    for q in quarantine:
        per_file[Path(q.source_file).name] = per_file.get(Path(q.source_file).name, 0) + 1
    assert per_file == {name: bad for name, (_, bad) in placed.items() if bad}


def _with_repeats(versions: list[Version]) -> list[tuple[Version, list[Version]]]:
    """Each version of a key's model history with the repeats after it, which it keeps."""
    held: list[tuple[Version, list[Version]]] = []
    for v in versions:
        if v.repeat:
            held[-1][1].append(v)
        else:
            held.append((v, []))
    return held


COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
}


@settings(max_examples=6, derandomize=True, **COMMON)
@given(scenario=scenarios())
def test_tables_equal_the_model_and_corrupted_rows_are_never_applied(spark, scenario):
    check(spark, scenario)


@pytest.mark.search
@settings(max_examples=int(os.environ.get("LAKEHOUSE_PROPERTY_EXAMPLES", "25")), **COMMON)
@given(scenario=scenarios())
def test_tables_equal_the_model_and_corrupted_rows_are_never_applied_many_examples(spark, scenario):
    check(spark, scenario)
