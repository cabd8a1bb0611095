"""Flatten OPAIS covered entities (dicts, as the JSON decoder yields them) into Arrow batches of the eight tables.

Used by `lakehouse.sources.opais.parse_export`, which documents the rules. How the work is split, for speed:
while an entity is read, its values are checked and keyed in Python (ids, booleans, strings, content keys,
editDates); the other datetimes stay strings until a chunk of rows is flushed, where Arrow parses a whole
column at once. A datetime Arrow cannot parse sends that column back to Python, which names the bad value.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.sources.opais_entities import ENTITIES

TIMESTAMP = pa.timestamp("us")
ARROW_TYPES = {"string": pa.string(), "bigint": pa.int64(), "boolean": pa.bool_(), "timestamp": TIMESTAMP}
SCHEMAS = {name: pa.schema([(c, ARROW_TYPES[t]) for c, t in e.columns.items()]) for name, e in ENTITIES.items()}
BIGINT = 2**63
# What Arrow parses exactly like Python does once the fraction is cut to 6 digits; anything else goes to Python
# (year 0000 too: Arrow takes it, Python refuses it).
ISO_DATETIME = r"^(\d{3}[1-9]|\d\d[1-9]\d|\d[1-9]\d\d|[1-9]\d{3})-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?$"
TEXT_TYPES = frozenset({str, type(None)})

Source = str | tuple[str, str]  # a key of the row's JSON object, or (key of a sub-object, key inside it)
_ADDRESS: dict[str, Source] = {
    "address_line1": "addressLine1",
    "address_line2": "addressLine2",
    "city": "city",
    "state": "state",
    "zip": "zip",
    "zip4": "zip4",
}
# Where each column comes from (the parent columns id340b, ce_id and content_key are added by the flattener).
SOURCES: dict[str, dict[str, Source]] = {
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
    # read from each contract: the attributes of its pharmacy
    "dim_pharmacy": {
        "name": "name",
        **{column: ("address", str(key)) for column, key in _ADDRESS.items()},
        "phone_number": "phoneNumber",
    },
}
ONE_CHILD = {"dim_ce_street_address": "streetAddress", "dim_ce_billing_address": "billingAddress"}
CHILD_ARRAYS = {
    "dim_ce_medicaid": "medicaidNumbers",
    "dim_ce_npi": "npiNumbers",
    "dim_ce_shipping_address": "shippingAddresses",
}


class BadValue(ValueError):
    """A value the parser cannot take, at `path` inside entity `entity` (None: the entity being read)."""

    def __init__(self, problem: str, path: str = "", entity: int | None = None) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.problem, self.path, self.entity = problem, path, entity

    def inside(self, where: str) -> BadValue:
        """The same problem, seen from the object that holds `where`."""
        return BadValue(self.problem, f"{where}.{self.path}" if self.path else where, self.entity)


# --- values -------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _string(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int or type(value) is Decimal:
        return str(value)  # a zip or an NPI written as a JSON number: its digits as written
    raise BadValue(f"{_json_type(value)} where a string was expected")


def _datetime_text(value: Any) -> str:
    if type(value) is str:
        return value
    raise BadValue(f"{value!r} is {_json_type(value)}, not a datetime")


def _bigint(value: Any) -> int:
    if type(value) is not int:
        digits = type(value) is str and value.isascii() and value.isdigit()
        if not (digits or (type(value) is Decimal and value == value.to_integral_value())):
            raise BadValue(f"{value!r} is {_json_type(value)}, not a whole number")
        value = int(value)
    if not -BIGINT <= value < BIGINT:
        raise BadValue(f"{value} does not fit a 64-bit integer")
    return value


def _boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    if type(value) is str and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    raise BadValue(f"{value!r} is neither TRUE nor FALSE")


def timestamp(value: str | None) -> dt.datetime | None:
    """A datetime of the export as a naive datetime: no zone, any fraction cut to microseconds; "" is NULL."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)  # 7 fractional digits: Python keeps the first 6
    except ValueError:
        raise BadValue(f"{value!r} is not a datetime like 2024-02-16T09:29:10.8756857") from None
    if parsed.tzinfo is not None:
        raise BadValue(f"{value!r} has a time zone; the export's datetimes have none")
    return parsed


@dataclass(frozen=True)
class Spec:
    """How to read some columns from one JSON object and its sub-objects."""

    segments: tuple[tuple[str | None, tuple[str, ...]], ...]  # (sub-object key or None, JSON keys), in order
    texts: Callable[[list[Any]], tuple[Any, ...]]  # the string and datetime values: str or None once read
    checks: tuple[tuple[int, Callable[[Any], Any]], ...]  # what makes them so, when one is not
    converts: tuple[tuple[int, Callable[[Any], Any]], ...]  # positions and converters of the other columns
    paths: tuple[str, ...]  # the JSON path of every column, for messages


def _spec(fields: list[tuple[Source, str]]) -> Spec:
    """The Spec of (source, Spark type) pairs."""
    segments: list[tuple[str | None, list[str]]] = []
    for source, _kind in fields:
        sub, key = (None, source) if isinstance(source, str) else source
        if not segments or segments[-1][0] != sub:
            segments.append((sub, []))
        segments[-1][1].append(key)
    kinds = [kind for _source, kind in fields]
    texts = tuple(i for i, kind in enumerate(kinds) if kind in ("string", "timestamp"))
    return Spec(
        segments=tuple((sub, tuple(keys)) for sub, keys in segments),
        texts=itemgetter(*texts) if len(texts) > 1 else lambda values, at=texts[0]: (values[at],),
        checks=tuple((i, _string if kinds[i] == "string" else _datetime_text) for i in texts),
        converts=tuple(
            (i, _bigint if kind == "bigint" else _boolean) for i, kind in enumerate(kinds) if i not in texts
        ),
        paths=tuple(s if isinstance(s, str) else ".".join(s) for s, _kind in fields),
    )


def _fields(table: str) -> list[tuple[Source, str]]:
    return [(source, ENTITIES[table].columns[column]) for column, source in SOURCES[table].items()]


SPECS = {table: _spec(_fields(table)) for table in SOURCES}
ID_SPEC = _spec([("id340B", "string"), ("ceId", "bigint")])
CONTRACT_SPEC = _spec(_fields("dim_ce_contract_pharmacy") + _fields("dim_pharmacy"))  # a contract and its pharmacy
CONTRACT_WIDTH = len(SOURCES["dim_ce_contract_pharmacy"])


@dataclass(frozen=True)
class Fields:
    """The JSON keys the parser reads from one kind of object, found at `path` ("", "contractPharmacies[].",
    "contractPharmacies[].address."), and from each of its sub-objects."""

    path: str
    top: frozenset[str]
    subs: tuple[tuple[str, Fields], ...]


def _fields_of(spec: Spec, path: str, *more: str) -> Fields:
    subs: dict[str, set[str]] = {}
    for sub, keys in spec.segments:
        if sub is not None:
            subs.setdefault(sub, set()).update(keys)
    top = {key for sub, keys in spec.segments if sub is None for key in keys}
    inner = tuple((sub, Fields(f"{path}{sub}.", frozenset(keys), ())) for sub, keys in subs.items())
    return Fields(path, frozenset(top | set(subs) | set(more)), inner)


ENTITY_FIELDS = _fields_of(
    SPECS["dim_ce"], "", *ID_SPEC.segments[0][1], *ONE_CHILD.values(), *CHILD_ARRAYS.values(), "contractPharmacies"
)
CHILD_PATHS = {name: f"{key}." for name, key in ONE_CHILD.items()} | {
    name: f"{key}[]." for name, key in CHILD_ARRAYS.items()
}
CHILD_FIELDS = {name: _fields_of(SPECS[name], path) for name, path in CHILD_PATHS.items()}
CONTRACT_FIELDS = _fields_of(CONTRACT_SPEC, "contractPharmacies[].")


def split_path(path: str) -> tuple[str, str]:
    """The JSON path of a field as (the path of the kind of object that holds it, its key):
    "contractPharmacies[].editDate" is ("contractPharmacies[].", "editDate"), "participating" ("", "participating")."""
    head, dot, key = path.rpartition(".")
    return head + dot, key


def _feeds() -> dict[str, tuple[str, ...]]:
    """The JSON path of every field a column reads (a sub-object's key too) → the columns ("table.column") it feeds."""
    where = CHILD_PATHS | dict.fromkeys(("dim_ce_contract_pharmacy", "dim_pharmacy"), CONTRACT_FIELDS.path)
    feeds: dict[str, list[str]] = {}
    for table, sources in SOURCES.items():
        for column, source in sources.items():
            for path in [source] if isinstance(source, str) else [source[0], ".".join(source)]:
                feeds.setdefault(where.get(table, "") + path, []).append(f"{table}.{column}")
    return {path: tuple(columns) for path, columns in feeds.items()}


FEEDS = _feeds()
# Fields HRSA leaves out of an object when they have no value (and so does `opais_synth`): a smaller export may
# lack one in every object, and then it is NULL in every row. Every other field a column reads is REQUIRED: at least
# one object of its kind in the file must have it (as null, even), whenever the file has an object of that kind with
# a value in it. A file without one is refused (`Flattener.missing_fields`): a field HRSA renamed or dropped would
# otherwise be NULL in every row, an update of every row that the delete guard does not see, exported as such. Whole
# children (streetAddress, an array, an element of one) may be missing from a file: their rows go, which the
# snapshot's delete guard watches.
OPTIONAL_FIELDS = frozenset(
    {
        "subName",
        "terminationDate",  # an entity's, like its terminationReason: only a terminated one has it
        "terminationReason",
        "grantNumber",
        "primaryContact.phoneNumberExtension",
        "contractPharmacies[].terminationDate",
        "contractPharmacies[].comments",
        *(
            f"{path}{key}"
            for path in (*CHILD_PATHS.values(), "contractPharmacies[].address.")
            for key in ("addressLine2", "zip4")
        ),
    }
)
REQUIRED = {path: columns for path, columns in FEEDS.items() if path not in OPTIONAL_FIELDS}


def _keys_by_kind(paths: Iterable[str]) -> dict[str, frozenset[str]]:
    kinds: dict[str, set[str]] = {}
    for kind, key in map(split_path, paths):
        kinds.setdefault(kind, set()).add(key)
    return {kind: frozenset(keys) for kind, keys in kinds.items()}


REQUIRED_KEYS = _keys_by_kind(REQUIRED)  # path of a kind of object → the keys REQUIRED of it
KNOWN_KEYS = _keys_by_kind(FEEDS)  # … → every key a column reads, REQUIRED or OPTIONAL
CE_EDIT_DATE = list(SOURCES["dim_ce"]).index("edit_date")
CONTRACT_EDIT_DATE = list(SOURCES["dim_ce_contract_pharmacy"]).index("edit_date")
PHARMACY_ID = list(SOURCES["dim_ce_contract_pharmacy"]).index("pharmacy_id")


def _empty(obj: dict[str, Any]) -> bool:
    """Whether the object holds no value: {} or only nulls and empty strings. Such a child is no child (like an
    absent or null one): HRSA writing an empty address one way or the other does not make and drop a row of NULLs."""
    # A loop, not all(...): this runs for every child, and its first value mostly answers.
    for value in obj.values():  # noqa: SIM110
        if value is not None and value != "":
            return False
    return True


def _object(value: Any, where: str) -> dict[str, Any] | None:
    if value is None or type(value) is dict:
        return value
    raise BadValue(f"{_json_type(value)} where an object was expected", where)


def _array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is list:
        return value
    raise BadValue(f"{_json_type(value)} where an array was expected", where)


def _raw(obj: dict[str, Any], spec: Spec) -> list[Any]:
    if len(spec.segments) == 1:
        return list(map(obj.get, spec.segments[0][1]))
    values: list[Any] = []
    for sub, keys in spec.segments:
        source = obj if sub is None else _object(obj.get(sub), sub)
        values += [None] * len(keys) if source is None else map(source.get, keys)
    return values


def _values(obj: dict[str, Any], spec: Spec) -> list[Any]:
    """The values of the columns `spec` reads from `obj`, in column order; datetimes still as strings.

    Raises BadValue naming the JSON path inside `obj`; the caller puts the path of `obj` in front.
    """
    values = _raw(obj, spec)
    at = -1
    try:
        if not TEXT_TYPES.issuperset(map(type, spec.texts(values))):
            for at, check in spec.checks:
                if values[at] is not None:
                    values[at] = check(values[at])
        for at, convert in spec.converts:
            if values[at] is not None:
                values[at] = convert(values[at])
    except BadValue as exc:
        raise BadValue(exc.problem, spec.paths[at]) from None
    return values


def _edit_date(values: list[Any], at: int, spec: Spec) -> dt.datetime | None:
    try:
        return timestamp(values[at])
    except BadValue as exc:
        raise BadValue(exc.problem, spec.paths[at]) from None


def _canonical(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def content_key(values: list[Any] | tuple[Any, ...]) -> str:
    """The key of a child row without an id: hex SHA-256 of its content values in column order.

    Values are joined with "\\x1f"; NULL is written "\\x00", so NULL and "" give different keys; booleans are
    "true"/"false". A changed child gets a new key: for the diff it is a delete plus an insert.
    """
    text = "\x1f".join([v if type(v) is str else _canonical(v) for v in values])
    return hashlib.sha256(text.encode()).hexdigest()


def _order_key(values: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((False, "") if v is None else (True, v) for v in values)


def _newer(date: dt.datetime | None, values: Any, old_date: dt.datetime | None, old_values: Any) -> bool:
    """Whether (date, values) beats (old_date, old_values): the greater editDate, then the smaller values."""
    if date != old_date:
        return old_date is None or (date is not None and date > old_date)
    return _order_key(values) < _order_key(old_values)


def _inside(where: str, read: Callable[..., Any], *args: Any) -> Any:
    """read(*args), with `where` (the JSON path of the object read) put in front of any problem it finds."""
    try:
        return read(*args)
    except BadValue as exc:
        raise exc.inside(where) from None


def _contract_values(item: Any) -> tuple[list[Any], list[Any], dt.datetime | None]:
    """A contract's column values, its pharmacy's attributes, and its editDate."""
    values = _values(_object(item, "") or {}, CONTRACT_SPEC)
    if values[0] is None:
        raise BadValue("the contract has no contractId")
    return values[:CONTRACT_WIDTH], values[CONTRACT_WIDTH:], _edit_date(values, CONTRACT_EDIT_DATE, CONTRACT_SPEC)


# --- rows ---------------------------------------------------------------------------------------------

ROW_PATHS = {"dim_ce_contract_pharmacy": "contractPharmacies[contractId={2}]."}  # where a row is, for messages


class Rows:
    """The rows of one table, each ending with the index of its entity; they become an Arrow record batch
    every `chunk_rows` rows."""

    def __init__(self, table: str, chunk_rows: int) -> None:
        self.schema = SCHEMAS[table]
        self.chunk_rows = chunk_rows
        self.rows: list[tuple[Any, ...]] = []
        self.batches: list[pa.RecordBatch] = []
        self.where = ROW_PATHS.get(table, "")
        self.paths = {i: str(SOURCES[table].get(f.name, f.name)) for i, f in enumerate(self.schema)}

    def add(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))
        arrays = [
            self._timestamps(i, columns[i], columns[-1]) if f.type == TIMESTAMP else pa.array(columns[i], type=f.type)
            for i, f in enumerate(self.schema)
        ]
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.rows = []

    def _timestamps(self, i: int, column: tuple[str | None, ...], entities: tuple[int, ...]) -> pa.Array:
        """Column i, datetimes as strings, as an Arrow timestamp array: in Arrow when it can, else in Python."""
        strings = pa.array(column, type=pa.string())
        if pc.all(pc.match_substring_regex(strings, ISO_DATETIME)).as_py() is not False:
            try:
                return pc.utf8_slice_codeunits(strings, 0, 26).cast(TIMESTAMP)
            except pa.ArrowInvalid:
                pass  # e.g. February 30th; Python names the value below
        parsed = []
        for row, value in enumerate(column):
            try:
                parsed.append(timestamp(value))
            except BadValue as exc:
                path = self.where.format(*self.rows[row]) + self.paths[i]
                raise BadValue(exc.problem, path, entities[row]) from None
        return pa.array(parsed, type=TIMESTAMP)

    def table(self) -> pa.Table:
        self.flush()
        return pa.Table.from_batches(self.batches, schema=self.schema)


def _key_again(key: tuple[str, int], first: int) -> str:
    return f"id340B {key[0]!r} with ceId {key[1]} is already entity #{first}; a key may occur once"


class Flattener:
    """Flattens entities into the rows of the eight tables, and keeps what the parse stats report.

    Several processes can flatten one file together, in either of two ways: each reads a byte range of the
    file and the flatteners are `append`ed in file order; or (`parts` > 1) each reads the whole file and
    flattens every `parts`-th entity, from the `part`-th on, while it still checks every entity's key, and the
    flatteners `merge` into the flattener of the whole file (its rows in another order).
    """

    def __init__(self, chunk_rows: int, part: int = 0, parts: int = 1) -> None:
        self.chunk_rows, self.part, self.parts = chunk_rows, part, parts
        self.out = {name: Rows(name, chunk_rows) for name in SCHEMAS if name != "dim_pharmacy"}
        self.keys: dict[tuple[str, int], int] = {}
        self.entities = 0
        self.positions: list[int] = []  # per entity: the byte position where the parser was
        self.max_edit_date: dt.datetime | None = None
        self.duplicates = dict.fromkeys([*CHILD_ARRAYS, "dim_ce_contract_pharmacy"], 0)
        self.contract_conflicts: list[tuple[str, int, int]] = []
        self.pharmacies: dict[int, tuple[dt.datetime | None, list[Any]]] = {}
        self.pharmacy_conflicts: set[int] = set()
        self.unknown_fields: dict[str, int] = {}  # JSON path of a key the parser does not read → objects with it
        self.seen: dict[str, set[str]] = {}  # path of a kind of object (Fields.path) → keys its objects have
        self.complete: set[str] = set()  # kinds whose keys (KNOWN_KEYS) are all seen: no need to look again

    def _keys(self, obj: dict[str, Any], fields: Fields) -> None:
        """Note the keys of `obj` (and of its sub-objects), an object of the kind `fields` describes: those no
        column reads are counted (a field HRSA added is ignored, but never in silence), and the keys are seen (a
        field HRSA renamed or dropped is in no object of its kind). An object without values shows nothing."""
        if not obj.keys() <= fields.top:
            for key in obj.keys() - fields.top:
                path = fields.path + key
                self.unknown_fields[path] = self.unknown_fields.get(path, 0) + 1
        if fields.path not in self.complete and not _empty(obj):
            seen = self.seen.setdefault(fields.path, set())
            seen.update(obj)
            if KNOWN_KEYS.get(fields.path, frozenset()) <= seen:
                self.complete.add(fields.path)
        for sub, inner in fields.subs:
            value = obj.get(sub)
            if type(value) is dict and (inner.path not in self.complete or not value.keys() <= inner.top):
                self._keys(value, inner)

    def missing_fields(self) -> dict[str, tuple[str, ...]]:
        """The REQUIRED fields that no object of their kind has, of the kinds the file has objects of (with a
        value), each with the columns it feeds; in column order. An OPTIONAL field no object has counts too when an
        unknown field of its objects looks like its new name (terminatedDate, SubName): a rename, not a day without."""
        missing = {}
        for path, columns in FEEDS.items():
            kind, key = split_path(path)
            absent = kind in self.seen and key not in self.seen[kind]
            if absent and (path not in OPTIONAL_FIELDS or self._renamed(kind, key)):
                missing[path] = columns
        return missing

    def _renamed(self, kind: str, key: str) -> bool:
        unknown = [k for k in (split_path(p) for p in self.unknown_fields) if k[0] == kind]
        names = {k.lower(): k for _kind, k in unknown}
        return key.lower() in names or bool(difflib.get_close_matches(key.lower(), names, n=1, cutoff=0.8))

    def add(self, entity: Any, position: int) -> None:
        """Flatten one element of coveredEntities, read up to byte `position`."""
        index = self.entities
        self.positions.append(position)
        if type(entity) is not dict:
            raise BadValue(f"the entity is {_json_type(entity)}, not an object")
        parent = self._parent(entity)
        if index % self.parts != self.part:
            self.entities += 1
            return
        values = _values(entity, SPECS["dim_ce"])
        self._keys(entity, ENTITY_FIELDS)
        self._saw(_edit_date(values, CE_EDIT_DATE, SPECS["dim_ce"]))
        self.out["dim_ce"].add((*parent, *values, index))
        for name, key in ONE_CHILD.items():
            child = _object(entity.get(key), key)
            if child is not None:
                child_values = _inside(key, _values, child, SPECS[name])
                self._keys(child, CHILD_FIELDS[name])
                if not _empty(child):
                    self.out[name].add((*parent, *child_values, index))
        for name, key in CHILD_ARRAYS.items():
            self._children(name, parent, _array(entity.get(key), key), key)
        self._contracts(parent, _array(entity.get("contractPharmacies"), "contractPharmacies"))
        self.entities += 1

    def _parent(self, entity: dict[str, Any]) -> tuple[str, int]:
        id340b, ce_id = entity.get("id340B"), entity.get("ceId")
        if id340b is None or id340b == "":
            raise BadValue(f"the entity has no id340B (ceId {ce_id!r})")
        if ce_id is None:
            raise BadValue(f"entity {id340b!r} has no ceId")
        id340b, ce_id = _values(entity, ID_SPEC)
        first = self.keys.setdefault((id340b, ce_id), self.entities)
        if first != self.entities:
            raise BadValue(_key_again((id340b, ce_id), first))
        return id340b, ce_id

    def _saw(self, edit_date: dt.datetime | None) -> None:
        if edit_date is not None and (self.max_edit_date is None or edit_date > self.max_edit_date):
            self.max_edit_date = edit_date

    def _children(self, name: str, parent: tuple[str, int], items: list[Any], key: str) -> None:
        seen: set[str] = set()
        spec = SPECS[name]
        for j, item in enumerate(items):
            if item is None:
                continue
            try:
                values = _values(_object(item, "") or {}, spec)
            except BadValue as exc:
                raise exc.inside(f"{key}[{j}]") from None
            self._keys(item, CHILD_FIELDS[name])
            if _empty(item):
                continue  # {} or only nulls: no child, like a null element
            ckey = content_key(values)
            if ckey in seen:
                self.duplicates[name] += 1
                continue
            seen.add(ckey)
            self.out[name].add((*parent, ckey, *values, self.entities))

    def _contracts(self, parent: tuple[str, int], items: list[Any]) -> None:
        chosen: dict[int, tuple[list[Any], dt.datetime | None]] = {}
        conflicted: set[int] = set()
        for j, item in enumerate(items):
            if item is None:
                continue
            try:
                values, attributes, edit_date = _contract_values(item)
            except BadValue as exc:
                raise exc.inside(f"contractPharmacies[{j}]") from None
            self._keys(item, CONTRACT_FIELDS)
            self._saw(edit_date)
            if values[PHARMACY_ID] is not None:
                self._pharmacy(values[PHARMACY_ID], edit_date, attributes)
            kept = chosen.setdefault(values[0], (values, edit_date))
            if kept[0] is values:
                continue
            if kept[0] == values:
                self.duplicates["dim_ce_contract_pharmacy"] += 1
            else:
                conflicted.add(values[0])
                if _newer(edit_date, values, kept[1], kept[0]):
                    chosen[values[0]] = (values, edit_date)
        self.contract_conflicts += [(*parent, contract_id) for contract_id in conflicted]
        rows = self.out["dim_ce_contract_pharmacy"]
        for values, _edit in chosen.values():
            rows.add((*parent, *values, self.entities))

    def _pharmacy(self, pharmacy_id: int, edit_date: dt.datetime | None, attributes: list[Any]) -> None:
        """Keep only the winning attributes of each pharmacy, whatever the order the contracts come in."""
        seen = self.pharmacies.get(pharmacy_id)
        if seen is None:
            self.pharmacies[pharmacy_id] = (edit_date, attributes)
            return
        if seen[1] != attributes:
            self.pharmacy_conflicts.add(pharmacy_id)
        if _newer(edit_date, attributes, *seen):
            self.pharmacies[pharmacy_id] = (edit_date, attributes)

    def flush(self) -> None:
        """Turn every pending row into a record batch (a bad datetime in them raises BadValue here)."""
        for rows in self.out.values():
            rows.flush()

    def append(self, other: Flattener) -> None:
        """Take in `other`, which flattened the entities that follow this one's in the file. A key of `other`
        that this one has already is a BadValue of `other`'s entity (the first such one in the file)."""
        base = self.entities
        self.positions += other.positions
        for key, index in other.keys.items():
            first = self.keys.setdefault(key, base + index)
            if first != base + index:
                raise BadValue(_key_again(key, first), entity=base + index)
        self.entities += other.entities
        self.merge(other)

    def merge(self, other: Flattener) -> None:
        """Take in the rows and findings of `other`, which flattened other entities of the same file."""
        for name, rows in self.out.items():
            rows.flush()
            rows.batches += other.out[name].batches
        self._saw(other.max_edit_date)
        for name, count in other.duplicates.items():
            self.duplicates[name] += count
        self.contract_conflicts += other.contract_conflicts
        self.pharmacy_conflicts |= other.pharmacy_conflicts
        for path, count in other.unknown_fields.items():
            self.unknown_fields[path] = self.unknown_fields.get(path, 0) + count
        for path, keys in other.seen.items():
            self.seen.setdefault(path, set()).update(keys)
        for pharmacy_id, (edit_date, attributes) in other.pharmacies.items():
            self._pharmacy(pharmacy_id, edit_date, attributes)

    def tables(self) -> dict[str, pa.Table]:
        """The eight tables, in ENTITIES order; dim_pharmacy ordered by pharmacy_id."""
        pharmacies = Rows("dim_pharmacy", self.chunk_rows)
        for pharmacy_id in sorted(self.pharmacies):
            pharmacies.add((pharmacy_id, *self.pharmacies[pharmacy_id][1], None))
        built = {name: rows.table() for name, rows in self.out.items()} | {"dim_pharmacy": pharmacies.table()}
        return {name: built[name] for name in ENTITIES}
