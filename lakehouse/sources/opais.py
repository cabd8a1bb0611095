"""Stream the HRSA 340B OPAIS covered-entity export into Arrow tables of its eight entities.

The export (OPA_CE_DAILY_PUBLIC.JSON, ~200 MB, usually inside a ZIP) is one object
`{"coveredEntities": [...]}`. It is read one entity at a time (`lakehouse.sources.json_items`), never whole:
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
- an absent array, `null` and `[]` mean no children (a `null` element is skipped); an object without a value
  (`{}`, or only nulls and "") is no child either, as a streetAddress or billingAddress or as an NPI, Medicaid
  number or shipping address (a contract without a contractId is an error); a field absent from an entity is
  NULL there; text is kept verbatim (never stripped); fields the parser does not know are ignored, and counted
  by their path.
- a field a column reads that no object of its kind in the whole file has (not even as `null`) is an error naming
  it, its columns and the unknown fields beside it (a rename?): read as NULL it would update every row. Fields HRSA
  leaves out when they have no value are exempt (`OPTIONAL_FIELDS` in `lakehouse.sources.opais_flatten`).
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
import gc
import logging
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from lakehouse.errors import SnapshotError
from lakehouse.sources.json_items import JsonProblem, Span, array_items, array_items_after
from lakehouse.sources.opais_flatten import SCHEMAS, BadValue, Flattener, content_key, split_path

__all__ = [
    "SCHEMAS",
    "ParseProgress",
    "ParseStats",
    "ParsedExport",
    "content_key",
    "log_progress",
    "open_export",
    "parse_export",
]

LOG = logging.getLogger("lakehouse.opais")
KEY = "coveredEntities"
EXAMPLES = 5  # conflicting ids listed in the stats
PROGRESS_SECONDS = 5.0


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
    """What a parse saw.

    bytes_read / total_bytes: JSON bytes read, and the size of the file or of the ZIP member (uncompressed).
    rows: rows per table. max_edit_date: the greatest editDate over entities and contracts, the date of the
    snapshot's content (effective times come from the data, not the clock). duplicates_collapsed: children
    repeated identically within an entity, kept once, per table. contract_conflicts: contract ids repeated
    within an entity with other content (one version kept), with the first (id340b, ce_id, contract_id).
    pharmacy_conflicts: pharmacy ids whose contracts disagree on name, address or phone, with the first ids.
    unknown_fields: JSON keys no column reads (`contractPharmacies[].address.county`), with the number of objects
    that have them: ignored, and reported.
    """

    file: str
    backend: str = ""
    entities: int = 0
    bytes_read: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    max_edit_date: dt.datetime | None = None
    duplicates_collapsed: dict[str, int] = field(default_factory=dict)
    contract_conflicts: int = 0
    contract_conflict_examples: list[tuple[str, int, int]] = field(default_factory=list)
    pharmacy_conflicts: int = 0
    pharmacy_conflict_examples: list[int] = field(default_factory=list)
    unknown_fields: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The stats as JSON-ready values (for the batch's metrics record)."""
        out = asdict(self)
        out["max_edit_date"] = self.max_edit_date.isoformat() if self.max_edit_date else None
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


# --- reading --------------------------------------------------------------------------------------------


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


class _Ticker:
    """Calls `progress` every `every_bytes` bytes or PROGRESS_SECONDS seconds, and once at the end.

    While byte ranges are read side by side, the first range's reader ticks for all of them (`scale`: the
    file's size over its range's): they go at about the same pace, so its bytes and entities are scaled up."""

    def __init__(self, progress: Callable[[ParseProgress], None] | None, total: int, every_bytes: int) -> None:
        self.progress, self.total, self.every_bytes, self.scale = progress, total, every_bytes, 1.0
        self.started = time.monotonic()
        self.next_bytes, self.next_time = every_bytes, self.started + PROGRESS_SECONDS

    def tick(self, position: int, entities: int, done: bool = False) -> None:
        now = time.monotonic()
        if not done:
            position, entities = min(self.total, round(position * self.scale)), round(entities * self.scale)
        if self.progress is None or not (done or position >= self.next_bytes or now >= self.next_time):
            return
        self.progress(ParseProgress(position, self.total, entities, now - self.started, done))
        self.next_bytes, self.next_time = position + self.every_bytes, now + PROGRESS_SECONDS


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: the parse makes millions of short-lived objects without
    cycles, which it would scan again and again (~15% of the parse time). Reference counting still frees them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _snapshot_error(exc: BadValue, file: str, flattener: Flattener, position: int) -> SnapshotError:
    """The error of a bad value: in the entity being read, or (found when its rows were flushed) in an earlier one."""
    if exc.entity is None:
        return SnapshotError(str(exc), file=file, entity_index=flattener.entities, position=position)
    return SnapshotError(str(exc), file=file, entity_index=exc.entity, position=flattener.positions[exc.entity])


_SURROGATE = (
    "a text value holds an unpaired surrogate (an escape such as \\ud800 without its pair), which is no character "
    "and cannot be stored; fix the value at the source or replace the file"
)


def _read(flattener: Flattener, items: Iterator[tuple[Any, int]], file: str, ticker: _Ticker) -> int:
    """Feed every entity of `items` to the flattener; any problem becomes a SnapshotError. Returns bytes read."""
    position = 0
    try:
        for entity, position in items:
            flattener.add(entity, position)
            ticker.tick(position, flattener.entities)
    except BadValue as exc:
        raise _snapshot_error(exc, file, flattener, position) from None
    except JsonProblem as exc:
        raise SnapshotError(exc.problem, file=file, entity_index=flattener.entities, position=exc.position) from None
    except UnicodeEncodeError as exc:
        raise SnapshotError(f"{_SURROGATE} ({exc.object[:80]!r})", file=file, entity_index=flattener.entities) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        where = {"file": file, "entity_index": flattener.entities, "position": position}
        raise SnapshotError(f"the ZIP is damaged or cut short ({exc})", **where) from exc
    return position


def _stats(flattener: Flattener, tables: dict[str, pa.Table], file: str) -> ParseStats:
    return ParseStats(
        file=file,
        backend="json",
        entities=flattener.entities,
        rows={name: table.num_rows for name, table in tables.items()},
        max_edit_date=flattener.max_edit_date,
        duplicates_collapsed=dict(flattener.duplicates),
        contract_conflicts=len(flattener.contract_conflicts),
        contract_conflict_examples=sorted(flattener.contract_conflicts)[:EXAMPLES],
        pharmacy_conflicts=len(flattener.pharmacy_conflicts),
        pharmacy_conflict_examples=sorted(flattener.pharmacy_conflicts)[:EXAMPLES],
        unknown_fields=dict(sorted(flattener.unknown_fields.items())),
    )


def flatten(path: Path, file: str, chunk_rows: int, part: int, parts: int, ticker: _Ticker | None) -> Flattener:
    """Read the whole export and flatten this process's part of its entities; SnapshotError on any problem."""
    flattener = Flattener(chunk_rows, part, parts)
    with _open(path, file) as (raw, total), _without_cyclic_gc():
        position = _read(flattener, array_items(raw, KEY), file, ticker or _Ticker(None, total, 1 << 62))
        _flush(flattener, file, position)
    return flattener


def _is_entity(value: Any) -> bool:
    return type(value) is dict and "id340B" in value and "ceId" in value


FIRST_RANGE_EXTRA = 0.04  # of the file: the workers start ~0.7 s later (imports) and pickle their result


def range_starts(total: int, parts: int) -> list[int]:
    """The first byte of each of `parts` byte ranges of a `total`-byte file; the first range, read by the
    process that is already running, is FIRST_RANGE_EXTRA of the file longer than the others."""
    other = (1 - FIRST_RANGE_EXTRA) / parts if parts > 1 else 1.0
    return [0] + [int(total * (1 - other * (parts - k))) for k in range(1, parts)]


def flatten_range(
    path: Path, file: str, chunk_rows: int, part: int, parts: int, ticker: _Ticker | None
) -> tuple[Flattener, Span]:
    """Flatten the entities of byte range `part` of `parts` ranges of the export's JSON, and say where
    they lie (`lakehouse.sources.opais_parts` proves the ranges meet); SnapshotError on any problem. Entity
    indexes in the flattener count from the range's first entity; positions are bytes of the whole file."""
    flattener, span = Flattener(chunk_rows), Span()
    with _open(path, file) as (raw, total), _without_cyclic_gc():
        cuts: list[int | None] = [*range_starts(total, parts), None]
        if part == 0:
            items = array_items(raw, KEY, until=cuts[1], span=span)
        else:
            items = array_items_after(raw, KEY, cuts[part], _is_entity, until=cuts[part + 1], span=span)  # type: ignore[arg-type]
        position = _read(flattener, items, file, ticker or _Ticker(None, total, 1 << 62))
        _flush(flattener, file, position)
    return flattener, span


def _flush(flattener: Flattener, file: str, position: int) -> None:
    try:
        flattener.flush()
    except BadValue as exc:
        raise _snapshot_error(exc, file, flattener, position) from None
    except UnicodeEncodeError as exc:  # found when the rows became Arrow: in an entity before `position`
        raise SnapshotError(f"{_SURROGATE} ({exc.object[:80]!r})", file=file, position=position) from None


def _check_fields(flattener: Flattener, file: str) -> None:
    """Refuse a file in which no object of a kind has a field a column reads (after every part is merged: each
    process saw part of the file), naming the fields, their columns and the unknown fields of the same objects."""
    missing = flattener.missing_fields()
    if not missing:
        return
    kinds = {split_path(path)[0] for path in missing}
    fields = ", ".join(f"{path} ({', '.join(columns)})" for path, columns in missing.items())
    unknown = [f"{path} ({n:,})" for path, n in flattener.unknown_fields.items() if split_path(path)[0] in kinds]
    what = "a field that columns are read from is" if len(missing) == 1 else "fields that columns are read from are"
    raise SnapshotError(
        f"{what} in no object of that kind in the file: {fields}; unknown fields in the same objects (renamed?): "
        f"{', '.join(sorted(unknown)) or 'none'}. Read as NULL, every row would change (and the PostgreSQL export "
        "with it), so the file is refused. If HRSA renamed or dropped a field, change the parser to read the new name "
        "(SOURCES in lakehouse/sources/opais_flatten.py; a field that may be left out goes in OPTIONAL_FIELDS) and "
        "rerun; if the file is damaged or not the export, replace it with a whole one",
        file=file,
    )


def parse_export(
    path: str | Path,
    *,
    chunk_rows: int = 50_000,
    progress: Callable[[ParseProgress], None] | None = None,
    progress_every_mb: float = 10.0,
    parts: int | None = None,
) -> ParsedExport:
    """Parse a whole OPAIS export (ZIP or JSON) into one Arrow table per entity, streaming.

    Rows become record batches `chunk_rows` at a time, so memory holds the output tables and one entity,
    not the file. `progress` (e.g. `log_progress`) is called every `progress_every_mb` MB of JSON or
    PROGRESS_SECONDS seconds, and once at the end. Raises SnapshotError, naming the file, the entity
    (0-based) and the byte position, if anything in the file cannot be read; then nothing is returned. The
    position is the byte offset of the problem in the JSON (the end of its entity for a bad value; the end
    of the file when it is cut short). A field a column reads that no object of its kind in the file has is
    a SnapshotError too, of the whole file (no entity, no position).

    `parts` processes flatten the entities (default: one per core for a large export, see
    `lakehouse.sources.opais_parts`): each decodes and flattens one byte range of the file. The tables hold
    the same rows either way (in the same order, unless the ranges had to be refused).

        parsed = parse_export("OPA_CE_DAILY_PUBLIC.zip", progress=log_progress)
        parsed.tables["dim_ce"].num_rows, parsed.stats.max_edit_date
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if progress_every_mb <= 0:
        raise ValueError(f"progress_every_mb must be positive, got {progress_every_mb}")
    if parts is not None and parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    file, path = str(path), Path(path)
    from lakehouse.sources.opais_parts import flatten_in_parts, parts_for

    with _open(path, file) as (_raw, total):
        parts = parts or parts_for(total)
    ticker = _Ticker(progress, total, int(progress_every_mb * 1e6))
    if parts == 1:
        flattener = flatten(path, file, chunk_rows, 0, 1, ticker)
    else:
        flattener = flatten_in_parts(path, file, chunk_rows, parts, ticker)
    _check_fields(flattener, file)
    try:
        tables = flattener.tables()
    except BadValue as exc:
        raise _snapshot_error(exc, file, flattener, total) from None
    stats = _stats(flattener, tables, file)
    stats.bytes_read, stats.total_bytes = total, total  # a parse that ends has read the whole document
    stats.seconds = round(time.monotonic() - ticker.started, 3)
    ticker.tick(total, flattener.entities, done=True)
    return ParsedExport(tables, stats)
