"""Stream the HRSA 340B OPAIS covered-entity export into Arrow tables of its eight entities.

The export (OPA_CE_DAILY_PUBLIC.JSON, ~200 MB, usually inside a ZIP) is one object
`{"coveredEntities": [...]}`. It is read one entity at a time with ijson's C backend, never whole:
memory follows the output tables, not the file. The whole file is parsed before anything is returned,
so a bad file raises `SnapshotError` and nothing of it reaches a table.

Rules the parser keeps (see `lakehouse.sources.opais_entities` for the tables):

- datetimes carry no zone and 0-7 fractional digits; they become naive datetimes in microseconds (the
  7th digit is dropped). A datetime with a zone is an error; an empty string is NULL.
- NPIs, Medicaid numbers, zips and phone numbers stay strings, leading zeros and letters included; a
  JSON number in a string column becomes the digits as written (numbers are read as int or Decimal,
  never float, so nothing is rounded).
- `participating` is the string "TRUE"/"FALSE" (any case; JSON booleans too). Any other value is an
  error naming the entity and the value: it decides 340B eligibility, so a guess would be worse than a
  stopped load, and a NULL would turn every entity into an update if HRSA changed the encoding.
- an absent array, `null` and `[]` mean no children; absent optional fields are NULL; text is kept
  verbatim (never stripped); fields the parser does not know are ignored.
- children without an id (NPIs, Medicaid numbers, shipping addresses) are keyed by `content_key`; a
  child repeated within an entity is kept once. A contract id repeated within an entity with other
  content keeps one version chosen like a pharmacy (below) and is counted as a conflict.
- `dim_pharmacy` has one row per pharmacyId: when contracts disagree on its name, address or phone, the
  attributes of the contract with the greatest editDate win, ties going to the smallest attribute tuple,
  so the result does not depend on the order of the file. Conflicting ids are counted.
- two entities with the same (id340B, ceId) are an error: the snapshot would hold two versions of a key.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import pyarrow as pa

from lakehouse.errors import SnapshotError
from lakehouse.sources.opais_entities import ENTITIES

LOG = logging.getLogger("lakehouse.opais")
PREFIX = "coveredEntities.item"
BOM = b"\xef\xbb\xbf"
EXAMPLES = 5  # conflicting ids listed in the stats
PROGRESS_SECONDS = 5.0
BIGINT = 2**63
ARROW_TYPES = {"string": pa.string(), "bigint": pa.int64(), "boolean": pa.bool_(), "timestamp": pa.timestamp("us")}
SCHEMAS = {name: pa.schema([(c, ARROW_TYPES[t]) for c, t in e.columns.items()]) for name, e in ENTITIES.items()}
KEY_COLUMNS = ("id340b", "ce_id", "content_key")

_ADDRESS = {
    "address_line1": "addressLine1",
    "address_line2": "addressLine2",
    "city": "city",
    "state": "state",
    "zip": "zip",
    "zip4": "zip4",
}
# Where each column comes from: a key of the JSON object the row is made of, or (object key, key).
SOURCES: dict[str, dict[str, str | tuple[str, str]]] = {
    "dim_ce": {
        "entity_type": "entityType",
        "name": "name",
        "sub_name": "subName",
        "participating": "participating",
        "participating_start_date": "participatingStartDate",
        "termination_date": "terminationDate",
        "termination_reason": "terminationReason",
        "grant_number": "grantNumber",
        "certified_decertified_date": "certifiedDecertifiedDate",
        "edit_date": "editDate",
        "authorizing_official_name": ("authorizingOfficial", "name"),
        "authorizing_official_title": ("authorizingOfficial", "title"),
        "authorizing_official_phone_number": ("authorizingOfficial", "phoneNumber"),
        "primary_contact_name": ("primaryContact", "name"),
        "primary_contact_title": ("primaryContact", "title"),
        "primary_contact_phone_number": ("primaryContact", "phoneNumber"),
        "primary_contact_phone_number_extension": ("primaryContact", "phoneNumberExtension"),
    },
    "dim_ce_medicaid": {"medicaid_number": "medicaidNumber", "state": "state"},
    "dim_ce_npi": {"npi_number": "npiNumber", "state": "state"},
    "dim_ce_street_address": _ADDRESS,
    "dim_ce_billing_address": {"organization": "organization", **_ADDRESS},
    "dim_ce_shipping_address": {**_ADDRESS, "is_340b_street_address": "is340BStreetAddress"},
    "dim_ce_contract_pharmacy": {
        "contract_id": "contractId",
        "pharmacy_id": "pharmacyId",
        "begin_date": "beginDate",
        "termination_date": "terminationDate",
        "certified_decertified_date": "certifiedDecertifiedDate",
        "edit_date": "editDate",
        "comments": "comments",
    },
    # read from each contract: its pharmacy's attributes
    "dim_pharmacy": {
        "name": "name",
        **{column: ("address", key) for column, key in _ADDRESS.items()},
        "phone_number": "phoneNumber",
    },
}
CHILD_ARRAYS = {"dim_ce_medicaid": "medicaidNumbers", "dim_ce_npi": "npiNumbers"}
CHILD_ARRAYS["dim_ce_shipping_address"] = "shippingAddresses"
ONE_CHILD = {"dim_ce_street_address": "streetAddress", "dim_ce_billing_address": "billingAddress"}
CONTRACT_EDIT_DATE = 5  # position of edit_date in a contract's values
PHARMACY_ID = 1  # position of pharmacy_id in a contract's values


# --- public types -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseProgress:
    """How far a parse has come: JSON bytes read of `total_bytes` (the file, or the ZIP member, size)."""

    bytes_read: int
    total_bytes: int
    entities: int
    seconds: float
    done: bool = False

    @property
    def fraction(self) -> float:
        return self.bytes_read / self.total_bytes if self.total_bytes else 1.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ParseStats:
    """What a parse saw. `content_date` is the greatest editDate over entities and contracts: the date of the
    snapshot's content, for effective times that come from the data rather than the clock."""

    file: str
    backend: str = ""
    entities: int = 0
    bytes_read: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    content_date: dt.datetime | None = None
    duplicates_collapsed: dict[str, int] = field(default_factory=dict)
    contract_conflicts: int = 0
    contract_conflict_examples: list[tuple[str, int, int]] = field(default_factory=list)
    pharmacy_conflicts: int = 0
    pharmacy_conflict_examples: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The stats as JSON-ready values (for the batch's metrics record)."""
        out = asdict(self)
        out["content_date"] = self.content_date.isoformat() if self.content_date else None
        return out


@dataclass(frozen=True)
class ParsedExport:
    """One parsed snapshot: a table per entity of ENTITIES (schemas in SCHEMAS), and what the parse saw."""

    tables: dict[str, pa.Table]
    stats: ParseStats


def log_progress(progress: ParseProgress) -> None:
    """A ready-made `progress` callback: one INFO line on the "lakehouse.opais" logger."""
    LOG.info(
        "opais: %.1f/%.1f MB (%d%%), %s entities, %.1f MB/s%s",
        progress.bytes_read / 1e6,
        progress.total_bytes / 1e6,
        round(progress.fraction * 100),
        f"{progress.entities:,}",
        progress.mb_per_s,
        ", done" if progress.done else "",
    )


# --- values ---------------------------------------------------------------------------------------------


class _BadValue(ValueError):
    """A value the parser cannot take, at `path` inside the entity (the caller adds the entity and position)."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.problem, self.path = problem, path

    def inside(self, where: str) -> _BadValue:
        """The same problem, seen from the object that holds `where`."""
        return _BadValue(self.problem, f"{where}.{self.path}" if self.path else where)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _bigint(value: Any) -> int:
    if type(value) is not int:
        digits = type(value) is str and value.isascii() and value.isdigit()
        if not (digits or (type(value) is Decimal and value == value.to_integral_value())):
            raise _BadValue(f"{value!r} is {_json_type(value)}, not a whole number")
        value = int(value)
    if not -BIGINT <= value < BIGINT:
        raise _BadValue(f"{value} does not fit a 64-bit integer")
    return value


def _boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    if type(value) is str and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    raise _BadValue(f"{value!r} is neither TRUE nor FALSE")


def _timestamp(value: Any) -> dt.datetime | None:
    if type(value) is not str:
        raise _BadValue(f"{value!r} is {_json_type(value)}, not a datetime")
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)  # 7 fractional digits: Python keeps the first 6
    except ValueError:
        raise _BadValue(f"{value!r} is not a datetime like 2024-02-16T09:29:10.8756857") from None
    if parsed.tzinfo is not None:
        raise _BadValue(f"{value!r} has a time zone; the export's datetimes have none")
    return parsed


CONVERT = {"bigint": _bigint, "boolean": _boolean, "timestamp": _timestamp}
TEXT_TYPES = frozenset({str, type(None)})


@dataclass(frozen=True)
class _Spec:
    """How to read a table's columns from one JSON object (a row is made of one object and its sub-objects)."""

    segments: tuple[tuple[str | None, tuple[str, ...]], ...]  # (sub-object key or None, JSON keys), in order
    converts: tuple[tuple[int, Callable[[Any], Any]], ...]  # position and converter of the non-string columns
    strings: tuple[int, ...]  # positions of the string columns
    paths: tuple[str, ...]  # JSON path of every column, for messages


def _spec(table: str, sources: dict[str, str | tuple[str, str]] | None = None) -> _Spec:
    sources = SOURCES[table] if sources is None else sources
    types = ENTITIES[table].columns
    segments: list[tuple[str | None, list[str]]] = []
    for source in sources.values():
        sub, key = (None, source) if isinstance(source, str) else source
        if not segments or segments[-1][0] != sub:
            segments.append((sub, []))
        segments[-1][1].append(key)
    kinds = [types[column] for column in sources]
    return _Spec(
        segments=tuple((sub, tuple(keys)) for sub, keys in segments),
        converts=tuple((i, CONVERT[kind]) for i, kind in enumerate(kinds) if kind != "string"),
        strings=tuple(i for i, kind in enumerate(kinds) if kind == "string"),
        paths=tuple(s if isinstance(s, str) else ".".join(s) for s in sources.values()),
    )


SPECS = {table: _spec(table) for table in SOURCES}
ID_SPEC = _spec("dim_ce", {"id340b": "id340B", "ce_id": "ceId"})
CE_EDIT_DATE = list(SOURCES["dim_ce"]).index("edit_date")


def _object(value: Any, where: str) -> dict[str, Any] | None:
    if value is None or type(value) is dict:
        return value
    raise _BadValue(f"{_json_type(value)} where an object was expected", where)


def _array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is list:
        return value
    raise _BadValue(f"{_json_type(value)} where an array was expected", where)


def _raw(obj: dict[str, Any], spec: _Spec) -> list[Any]:
    if len(spec.segments) == 1:
        return list(map(obj.get, spec.segments[0][1]))
    values: list[Any] = []
    for sub, keys in spec.segments:
        source = obj if sub is None else _object(obj.get(sub), sub)
        values += [None] * len(keys) if source is None else map(source.get, keys)
    return values


def _values(obj: dict[str, Any], spec: _Spec) -> list[Any]:
    """The values of the columns `spec` reads from `obj`, converted, in column order.

    Raises _BadValue naming the JSON path inside `obj`; the caller puts the path of `obj` in front.
    """
    values = _raw(obj, spec)
    at = -1
    try:
        if not TEXT_TYPES.issuperset(map(type, [values[i] for i in spec.strings])):
            for at in spec.strings:
                if values[at] is not None:
                    values[at] = _string(values[at])
        for at, convert in spec.converts:
            if values[at] is not None:
                values[at] = convert(values[at])
    except _BadValue as exc:
        raise _BadValue(exc.problem, spec.paths[at]) from None
    return values


def _string(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int or type(value) is Decimal:
        return str(value)  # a zip or NPI written as a JSON number: the digits as written
    raise _BadValue(f"{_json_type(value)} where a string was expected")


def _canonical(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def content_key(values: list[Any] | tuple[Any, ...]) -> str:
    """The key of a child row without an id: hex SHA-256 of its content values in column order.

    Values are joined with "\\x1f"; NULL is written "\\x00", so NULL and "" give different keys. A changed
    child gets a new key: for the diff it is a delete plus an insert.
    """
    text = "\x1f".join([v if type(v) is str else _canonical(v) for v in values])
    return hashlib.sha256(text.encode()).hexdigest()


def _order_key(values: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((False, "") if v is None else (True, v) for v in values)


def _newer(date: dt.datetime | None, values: Any, old_date: dt.datetime | None, old_values: Any) -> bool:
    """Whether (date, values) beats (old_date, old_values): greater editDate, then the smaller values."""
    if date != old_date:
        return old_date is None or (date is not None and date > old_date)
    return _order_key(values) < _order_key(old_values)


def _inside(where: str, read: Callable[..., Any], *args: Any) -> Any:
    """read(*args), with `where` (the JSON path of the object read) put in front of any problem it finds."""
    try:
        return read(*args)
    except _BadValue as exc:
        raise exc.inside(where) from None


def _child_values(item: Any, spec: _Spec) -> list[Any]:
    return _values(_object(item, "") or {}, spec)


def _contract_values(item: Any) -> tuple[list[Any], list[Any]]:
    """A contract's row values and its pharmacy's attributes."""
    contract = _object(item, "") or {}
    values = _values(contract, SPECS["dim_ce_contract_pharmacy"])
    if values[0] is None:
        raise _BadValue("the contract has no contractId")
    return values, _values(contract, SPECS["dim_pharmacy"])


# --- rows -----------------------------------------------------------------------------------------------


class _Rows:
    """The rows of one table, turned into an Arrow record batch every `chunk_rows` rows."""

    def __init__(self, table: str, chunk_rows: int) -> None:
        self.schema = SCHEMAS[table]
        self.chunk_rows = chunk_rows
        self.rows: list[tuple[Any, ...]] = []
        self.batches: list[pa.RecordBatch] = []

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            columns = zip(*self.rows, strict=True)
            arrays = [pa.array(column, type=f.type) for column, f in zip(columns, self.schema, strict=True)]
            self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
            self.rows = []

    def table(self) -> pa.Table:
        self.flush()
        return pa.Table.from_batches(self.batches, schema=self.schema)


class _Snapshot:
    """Flattens entities into the rows of the eight tables and keeps what the stats report."""

    def __init__(self, chunk_rows: int) -> None:
        self.chunk_rows = chunk_rows
        self.out = {name: _Rows(name, chunk_rows) for name in SCHEMAS if name != "dim_pharmacy"}
        self.keys: dict[tuple[str, int], int] = {}
        self.entities = 0
        self.content_date: dt.datetime | None = None
        self.duplicates = dict.fromkeys([*CHILD_ARRAYS, "dim_ce_contract_pharmacy"], 0)
        self.contract_conflicts: list[tuple[str, int, int]] = []
        self.pharmacies: dict[int, tuple[dt.datetime | None, list[Any]]] = {}
        self.pharmacy_conflicts: set[int] = set()

    def add(self, entity: Any) -> None:
        """Flatten one element of coveredEntities."""
        if type(entity) is not dict:
            raise _BadValue(f"the entity is {_json_type(entity)}, not an object")
        parent = self._parent(entity)
        values = _values(entity, SPECS["dim_ce"])
        self.out["dim_ce"].add((*parent, *values))
        self._saw(values[CE_EDIT_DATE])
        for name, key in ONE_CHILD.items():
            child = _object(entity.get(key), key)
            if child is not None:
                self.out[name].add((*parent, *_inside(key, _values, child, SPECS[name])))
        for name, key in CHILD_ARRAYS.items():
            self._children(name, parent, _array(entity.get(key), key), key)
        self._contracts(parent, _array(entity.get("contractPharmacies"), "contractPharmacies"))
        self.entities += 1

    def _parent(self, entity: dict[str, Any]) -> tuple[str, int]:
        id340b, ce_id = entity.get("id340B"), entity.get("ceId")
        if id340b is None or id340b == "":
            raise _BadValue(f"the entity has no id340B (ceId {ce_id!r})")
        if ce_id is None:
            raise _BadValue(f"entity {id340b!r} has no ceId")
        id340b, ce_id = _values(entity, ID_SPEC)
        first = self.keys.setdefault((id340b, ce_id), self.entities)
        if first != self.entities:
            raise _BadValue(f"id340B {id340b!r} with ceId {ce_id} is already entity #{first}; a key may occur once")
        return id340b, ce_id

    def _saw(self, edit_date: dt.datetime | None) -> None:
        if edit_date is not None and (self.content_date is None or edit_date > self.content_date):
            self.content_date = edit_date

    def _children(self, name: str, parent: tuple[str, int], items: list[Any], key: str) -> None:
        seen: set[str] = set()
        for j, item in enumerate(items):
            if item is None:
                continue
            values = _inside(f"{key}[{j}]", _child_values, item, SPECS[name])
            ckey = content_key(values)
            if ckey in seen:
                self.duplicates[name] += 1
                continue
            seen.add(ckey)
            self.out[name].add((*parent, ckey, *values))

    def _contracts(self, parent: tuple[str, int], items: list[Any]) -> None:
        chosen: dict[int, list[Any]] = {}
        conflicted: set[int] = set()
        for j, item in enumerate(items):
            if item is None:
                continue
            values, attributes = _inside(f"contractPharmacies[{j}]", _contract_values, item)
            edit_date = values[CONTRACT_EDIT_DATE]
            self._saw(edit_date)
            if values[PHARMACY_ID] is not None:
                self._pharmacy(values[PHARMACY_ID], edit_date, attributes)
            kept = chosen.setdefault(values[0], values)
            if kept is values:
                continue
            if kept == values:
                self.duplicates["dim_ce_contract_pharmacy"] += 1
            else:
                conflicted.add(values[0])
                if _newer(edit_date, values, kept[CONTRACT_EDIT_DATE], kept):
                    chosen[values[0]] = values
        self.contract_conflicts += [(*parent, contract_id) for contract_id in conflicted]
        rows = self.out["dim_ce_contract_pharmacy"]
        for values in chosen.values():
            rows.add((*parent, *values))

    def _pharmacy(self, pharmacy_id: int, edit_date: dt.datetime | None, attributes: list[Any]) -> None:
        """Keep only the winning attributes of each pharmacy, whatever the order contracts come in."""
        seen = self.pharmacies.get(pharmacy_id)
        if seen is None:
            self.pharmacies[pharmacy_id] = (edit_date, attributes)
            return
        if seen[1] != attributes:
            self.pharmacy_conflicts.add(pharmacy_id)
        if _newer(edit_date, attributes, *seen):
            self.pharmacies[pharmacy_id] = (edit_date, attributes)

    def tables(self) -> dict[str, pa.Table]:
        """The eight tables, in ENTITIES order; dim_pharmacy ordered by pharmacy_id."""
        pharmacies = _Rows("dim_pharmacy", self.chunk_rows)
        for pharmacy_id in sorted(self.pharmacies):
            pharmacies.add((pharmacy_id, *self.pharmacies[pharmacy_id][1]))
        built = {name: rows.table() for name, rows in self.out.items()} | {"dim_pharmacy": pharmacies.table()}
        return {name: built[name] for name in ENTITIES}

    def stats(self, file: str, tables: dict[str, pa.Table]) -> ParseStats:
        return ParseStats(
            file=file,
            entities=self.entities,
            rows={name: table.num_rows for name, table in tables.items()},
            content_date=self.content_date,
            duplicates_collapsed=dict(self.duplicates),
            contract_conflicts=len(self.contract_conflicts),
            contract_conflict_examples=sorted(self.contract_conflicts)[:EXAMPLES],
            pharmacy_conflicts=len(self.pharmacy_conflicts),
            pharmacy_conflict_examples=sorted(self.pharmacy_conflicts)[:EXAMPLES],
        )


# --- reading --------------------------------------------------------------------------------------------


@functools.cache
def _backend() -> Any:
    """ijson's C backend (yajl2_c); without it, the best one ijson has, with a warning: it is several times slower."""
    try:
        return ijson.get_backend("yajl2_c")
    except ImportError as exc:
        warnings.warn(
            f"ijson's C backend yajl2_c is not available ({exc}); parsing the OPAIS export with the slower "
            f"{ijson.backend} backend. Install an ijson wheel built with its C extension to restore the speed.",
            RuntimeWarning,
            stacklevel=3,
        )
        return ijson


class _Reader:
    """The JSON stream as ijson reads it: counts bytes (for error positions and progress), drops a UTF-8 BOM."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.position == 0 and data.startswith(BOM):
            self.position = len(BOM)
            data = data[len(BOM) :]
        self.position += len(data)
        return data


def _is_zip(path: Path) -> bool:
    with path.open("rb") as f:
        return path.suffix.lower() == ".zip" or f.read(4) == b"PK\x03\x04"


def _json_member(archive: zipfile.ZipFile, file: str) -> zipfile.ZipInfo:
    """The one .json member of the ZIP, whatever its exact name (macOS resource forks aside)."""
    members = [
        m
        for m in archive.infolist()
        if not m.is_dir() and m.filename.lower().endswith(".json") and not m.filename.startswith("__MACOSX/")
    ]
    if len(members) != 1:
        names = ", ".join(m.filename for m in archive.infolist()) or "nothing"
        raise SnapshotError(f"expected one .json file in the ZIP, found {len(members)} (it holds: {names})", file=file)
    return members[0]


@contextmanager
def _open(path: Path, file: str) -> Iterator[tuple[BinaryIO, int]]:
    """The JSON stream of the export and its size (of the file, or of the ZIP member uncompressed)."""
    if not path.is_file():
        raise SnapshotError("the export file does not exist", file=file)
    if not _is_zip(path):
        with path.open("rb") as raw:
            yield raw, path.stat().st_size
        return
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise SnapshotError(f"not a readable ZIP archive ({exc}); was the download cut short?", file=file) from exc
    with archive:
        member = _json_member(archive, file)
        try:
            raw = archive.open(member)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
            raise SnapshotError(f"cannot open {member.filename} in the ZIP ({exc})", file=file) from exc
        with raw:
            yield raw, member.file_size


@contextmanager
def open_export(path: str | Path) -> Iterator[BinaryIO]:
    """Open the export for reading its JSON bytes: the one .json member of a ZIP, or a bare JSON file."""
    with _open(Path(path), str(path)) as (raw, _size):
        yield raw


def _json_problem(exc: Exception) -> str:
    """ijson's error as one line: what yajl found and the text around it."""
    text = exc.args[0] if exc.args else ""
    lines = (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)).splitlines()
    first = lines[0].strip() if lines else type(exc).__name__
    if "premature EOF" in first or "Incomplete" in first:
        return "the JSON ends early: the file is truncated (an interrupted download?)"
    context = lines[1].strip() if len(lines) > 1 else ""
    return f"invalid JSON: {first}" + (f" near {context[:80]!r}" if context else "")


_EVENT_KINDS = {"start_map": "an object", "start_array": "an array", "null": "null", "boolean": "a boolean"}
_EVENT_KINDS |= {"number": "a number", "string": "a string"}


def _check_root(path: Path, file: str) -> None:
    """Raise unless the root is an object with a coveredEntities array (called when no entity came out)."""
    with _open(path, file) as (raw, _size):
        reader = _Reader(raw)
        events = _backend().parse(reader)
        _prefix, event, _value = next(events)
        if event != "start_map":
            raise SnapshotError(f"the root is {_EVENT_KINDS[event]}, not an object", file=file, position=0)
        for prefix, event, value in events:
            if prefix == "" and event == "map_key" and value == "coveredEntities":
                _prefix, event, _value = next(events)
                if event == "start_array":
                    return
                kind = _EVENT_KINDS[event]
                raise SnapshotError(f"coveredEntities is {kind}, not an array", file=file, position=reader.position)
    raise SnapshotError("the root object has no coveredEntities", file=file, position=reader.position)


class _Ticker:
    """Calls `progress` every `every_bytes` bytes or PROGRESS_SECONDS seconds, and once at the end."""

    def __init__(self, progress: Callable[[ParseProgress], None] | None, total: int, every_bytes: int) -> None:
        self.progress, self.total, self.every_bytes = progress, total, every_bytes
        self.started = time.monotonic()
        self.next_bytes, self.next_time = every_bytes, self.started + PROGRESS_SECONDS

    def tick(self, position: int, entities: int, done: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or not (done or position >= self.next_bytes or now >= self.next_time):
            return
        self.progress(ParseProgress(position, self.total, entities, now - self.started, done))
        self.next_bytes, self.next_time = position + self.every_bytes, now + PROGRESS_SECONDS


def _read(snapshot: _Snapshot, reader: _Reader, file: str, ticker: _Ticker) -> None:
    """Feed every entity of the stream to the snapshot; any problem becomes a SnapshotError."""
    try:
        for entity in _backend().items(reader, PREFIX):
            snapshot.add(entity)
            ticker.tick(reader.position, snapshot.entities)
    except _BadValue as exc:
        raise SnapshotError(str(exc), file=file, entity_index=snapshot.entities, position=reader.position) from None
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        where = {"file": file, "entity_index": snapshot.entities, "position": reader.position}
        raise SnapshotError(_json_problem(exc), **where) from exc
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        where = {"file": file, "entity_index": snapshot.entities, "position": reader.position}
        raise SnapshotError(f"the ZIP is damaged or cut short ({exc})", **where) from exc


def parse_export(
    path: str | Path,
    *,
    chunk_rows: int = 50_000,
    progress: Callable[[ParseProgress], None] | None = None,
    progress_every_mb: float = 10.0,
) -> ParsedExport:
    """Parse a whole OPAIS export (ZIP or JSON) into one Arrow table per entity, streaming.

    Rows are built `chunk_rows` at a time into record batches, so memory holds the output tables and one
    entity, not the file. `progress` (e.g. `log_progress`) is called every `progress_every_mb` MB of JSON
    or PROGRESS_SECONDS seconds, and once at the end. Raises SnapshotError, naming the file, the entity
    and the byte position, if anything of the file cannot be read: then nothing is returned.

        parsed = parse_export("OPA_CE_DAILY_PUBLIC.zip", progress=log_progress)
        parsed.tables["dim_ce"].num_rows, parsed.stats.content_date
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if progress_every_mb <= 0:
        raise ValueError(f"progress_every_mb must be positive, got {progress_every_mb}")
    file, path = str(path), Path(path)
    snapshot = _Snapshot(chunk_rows)
    with _open(path, file) as (raw, total):
        reader = _Reader(raw)
        ticker = _Ticker(progress, total, int(progress_every_mb * 1e6))
        _read(snapshot, reader, file, ticker)
    if snapshot.entities == 0:
        _check_root(path, file)
    tables = snapshot.tables()
    stats = snapshot.stats(file, tables)
    stats.backend = getattr(_backend(), "backend", "")
    stats.bytes_read, stats.total_bytes = reader.position, total
    stats.seconds = round(time.monotonic() - ticker.started, 3)
    ticker.tick(reader.position, snapshot.entities, done=True)
    return ParsedExport(tables, stats)
