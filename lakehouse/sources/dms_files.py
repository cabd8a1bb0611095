"""Parse one DMS output file (CSV or Parquet, optionally gzip) into rows of strings.

Plain Python on purpose: each file is parsed on its own, so the things Spark's CSV reader cannot
see per file are exact here — the field count of every record (the column layout can change between
files of one table), a header per file (AddColumnName=true), whether the file carries the Op column
(LOAD files only with IncludeOpForFullLoad), and the position of every row inside its file.
A row that cannot be mapped comes out with a `_reason`, never dropped:

* a file whose columns (Parquet names, CSV header) lack configured ones is `missing_columns` on every
  row, unless the missing ones are `optional_columns` or the file has an earlier layout;
* DMS ends every CSV record with a newline, so a file that does not end with one was cut short: its
  last record is `truncated` (the complete records before it are applied);
* a UTF-8 byte order mark is not data, and a \r is, unless it ends a line (records end with \n or \r\n);
* a file is a full load's by its name (LOAD00000001.csv, LOAD0000000A.csv, SEGMENT1_LOAD00000001.csv), else CDC;
  a name with LOAD in it that DMS does not write is `unsupported_file`, read neither way;
* a Parquet column's bytes (BLOB, bytea) are read as lowercase hex; a column with no text form (a nested
  type) makes every row of the file `unparseable`.

Every row carries the SHA-256 of its file's (decompressed) content: the file ledger recognizes a file
delivered again under another name by it.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import posixpath
import re
import zlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from lakehouse.config import DmsSource

Row = dict[str, Any]
MAX_RAW_CHARS = 100_000  # a quarantined remainder of a broken file is kept up to this size
PARQUET_SLICE_ROWS = 20_000  # a Parquet file's rows made Python values at a time
csv.field_size_limit(2**31 - 1)  # a large text column is data, not an error


# A DMS full-load file's name. DMS numbers them with a hexadecimal counter (LOAD00000009.csv, LOAD0000000A.csv);
# a parallel load of type `ranges` without segment-names prefixes the segment (SEGMENT1_LOAD00000001.csv, DMS
# user guide "Parallel load of partitioned sources"; the other parallel loads write LOAD00000001.csv into a
# folder per partition); LOAD_1_00000001.csv is the segment form of Qlik Replicate, DMS's origin. Any extension
# follows (.csv, .parquet, .csv.gz). deploy/lambdas/landing_router.py holds a copy (the Lambda is packaged
# without lakehouse): tests/test_deploy_lambdas.py checks the two agree.
LOAD_NAME = re.compile(r"^(?:SEGMENT[0-9]+_)?LOAD(?:_[0-9]+_)?[0-9A-F]+\.", re.IGNORECASE)
# A name with LOAD in it that LOAD_NAME does not take: read neither as a load nor as changes (see _parse).
_LOAD_LIKE = re.compile(r"(?:^|[^A-Z])LOAD", re.IGNORECASE)


def is_load_file(path: str) -> bool:
    """Whether DMS wrote the file in a full load, by its name (see LOAD_NAME); CDC files are named by their time."""
    return LOAD_NAME.match(posixpath.basename(path)) is not None


_DMS_NAME_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})(\d*)\.")


def dms_file_time(path: str) -> str | None:
    """The UTC time DMS wrote a CDC file, from its name: 20190118-184518184.csv → '2019-01-18 18:45:18.184000'.

    The digits after the seconds are a fraction of a second (DMS writes milliseconds; its documentation
    also shows 20141029-1134010000.csv). None for any other name (LOAD files carry no time).
    """
    match = _DMS_NAME_TIME.match(posixpath.basename(path))
    if not match:
        return None
    y, mo, d, h, mi, sec, fraction = match.groups()
    try:
        datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec))
    except ValueError:
        return None
    return f"{y}-{mo}-{d} {h}:{mi}:{sec}.{fraction[:6]:0<6}"


def file_key(path: str) -> str:
    """The ordering key of a file inside its table: its name (DMS CDC names are timestamps)."""
    return posixpath.basename(path)


def output_columns(source: DmsSource) -> list[str]:
    """Columns of every parsed row, in order: lineage, Op, then the layout columns (all strings)."""
    return [
        "_file",
        "_row",
        "_is_load",
        "_file_time",
        "_content_hash",
        "_absent",
        "_unsupplied",
        "_reason",
        "_detail",
        "_raw",
        "_op",
        *source.columns,
    ]


def _row(path: str, position: int, is_load: bool, **values: Any) -> Row:
    return {"_file": path, "_row": position, "_is_load": is_load, **values}


def _error(path: str, position: int, is_load: bool, reason: str, detail: str, raw: str) -> Row:
    return _row(path, position, is_load, _reason=reason, _detail=detail, _raw=raw[:MAX_RAW_CHARS])


def parse_file(path: str, content: bytes, source: DmsSource) -> Iterator[Row]:
    """Yield one row per record of the file at `path` (its bytes in `content`)."""
    digest = None
    file_time = dms_file_time(path)
    data, problem = _decompressed(path, content)
    for row in [problem] if problem else _parse(path, data, source):
        if digest is None:  # computed once, and only for a file that has rows
            digest = hashlib.sha256(data).hexdigest()
        row["_content_hash"] = digest
        row["_file_time"] = file_time
        yield row


def _decompressed(path: str, content: bytes) -> tuple[bytes, Row | None]:
    """The file's content (decompressed once for a .gz name), or its bytes as they are and the row saying why not."""
    if not path.lower().endswith(".gz"):
        return content, None
    is_load = is_load_file(path)
    try:
        return gzip.decompress(content), None
    except EOFError as exc:
        detail = f"the gzip stream ends early (the file was cut short): {exc}"
        return content, _error(path, -1, is_load, "truncated", detail, "")
    except (OSError, zlib.error) as exc:
        return content, _error(path, -1, is_load, "unparseable", f"not a readable gzip file: {exc}", "")


def _parse(path: str, data: bytes, source: DmsSource) -> Iterator[Row]:
    """The rows of a file's (decompressed) content."""
    is_load = is_load_file(path)
    name = posixpath.basename(path).lower()
    stem = name.removesuffix(".gz")
    if not is_load and dms_file_time(path) is None and _LOAD_LIKE.search(name):
        # Read as changes, a full load's rows would be dated at their transfer time and could sort after the changes
        # committed during the load (or fail the layout without Op): the name is told, not guessed.
        detail = (
            f"file name {posixpath.basename(path)!r} looks like a full-load file but is not one DMS writes "
            "(LOAD00000001.csv, LOAD0000000A.csv, SEGMENT1_LOAD00000001.csv) nor a CDC file's time "
            "(20260301-120000000.csv): nothing of it is read. Land it under its DMS name"
        )
        yield _error(path, -1, is_load, "unsupported_file", detail, "")
    elif stem.endswith(".csv") and source.format == "csv":
        yield from _parse_csv(path, data, is_load, source)
    elif stem.endswith(".parquet") and source.format == "parquet":
        yield from _parse_parquet(path, data, is_load, source)
    else:
        yield _error(
            path,
            -1,
            is_load,
            "unsupported_file",
            f"file name does not end in .{source.format}[.gz], the table's configured format",
            "",
        )


def _layouts(source: DmsSource) -> dict[int, list[str]]:
    layouts = [list(source.columns), *source.previous_layouts]
    return {len(layout): layout for layout in reversed(layouts)}


def check_named_columns(names: list[str], source: DmsSource) -> tuple[str, str, list[str]]:
    """Match the column names a file carries (Parquet, CSV header; Op excluded) with the configuration.

    Returns (reason, detail, absent): `schema_drift` for a name not configured, `missing_columns` when
    configured columns are absent and neither optional nor explained by an earlier layout, else ("", "",
    the optional columns absent from the file's layout, which are NULL).
    """
    by_lower = {c.lower(): c for c in source.columns}
    unknown = [n for n in names if n.strip().lower() not in by_lower]
    if unknown:
        return "schema_drift", f"columns not in the configuration: {unknown}; add them to `columns`", []
    present = {by_lower[n.strip().lower()] for n in names}
    optional = set(source.optional_columns)
    for layout in (list(source.columns), *source.previous_layouts):
        absent = [c for c in layout if c not in present]
        if all(c in optional for c in absent):
            return "", "", absent
    missing = [c for c in source.columns if c not in present and c not in optional]
    return (
        "missing_columns",
        f"the file has no column(s) {missing}; nothing of it is applied (a missing value would overwrite a real one "
        "with NULL). If the source really dropped them, list them under `optional_columns` or `previous_layouts`",
        [],
    )


def _parse_csv(path: str, data: bytes, is_load: bool, source: DmsSource) -> Iterator[Row]:
    # The text is read as a stream, never decoded whole: a DMS full-load file may be 1 GB, and its text (with
    # the reader's own copy of it) would take several times that in the executor's Python worker.
    text = _Text(data)
    if text.error:
        yield _error(path, -1, is_load, "unparseable", f"not UTF-8 text: {text.error}", "")
        return
    # DMS ends every record with a newline: without one at the end, the file was cut inside its last record.
    truncated = text.truncated
    layout = _CsvLayout(path, is_load, source)
    position = 0
    pending: tuple[int, list[str]] | None = None  # the record read last: the cut one if nothing follows it
    for start, record, error in _records(text, source.delimiter):
        if pending is not None:
            row = layout.record(position, pending[1])
            if row is not None:
                yield row
                position += 1
            pending = None
        if error:
            # In a file cut short, a quoted field left open at the end is the cut, not a broken record.
            cut = truncated and "unexpected end of data" in error
            yield (
                _cut(path, position, is_load, text, start)
                if cut
                else _unparseable(path, position, is_load, text, start, error)
            )
            return
        pending = (start, record)
    if pending is not None:
        if truncated:
            yield _cut(path, position, is_load, text, pending[0])
            return
        row = layout.record(position, pending[1])
        if row is not None:
            yield row


class _Text:
    """A file's bytes as UTF-8 text read line by line: checked first in chunks (no decoded copy of the whole file),
    without a byte order mark, and without a multibyte character the file was cut inside."""

    CHUNK = 1 << 20

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        self.end = len(data)
        self.error = ""
        self.truncated = False
        decoder = codecs.getincrementaldecoder("utf-8")()
        view = memoryview(data)
        for offset in range(self.start, len(data), self.CHUNK):
            chunk = view[offset : offset + self.CHUNK]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                held = len(exc.object) - len(chunk)  # bytes carried over from the chunk before
                at = offset + exc.start - held
                self.error = f"byte 0x{data[at]:02x} at byte {at} of the file: {exc.reason}"
                return
        self.end -= len(decoder.getstate()[0])  # a character cut at the end: the file was cut short (see truncated)
        self.truncated = self.end > self.start and data[self.end - 1 : self.end] != b"\n"
        # DMS ends records with \n (or \r\n): a \r before anything else is data, but Python's CSV reader ends a record
        # at any \r outside quotes. In a file that holds one, each is read as a character the file does not hold.
        self.cr_stand_in = ""
        if b"\r" in data and _LONE_CR.search(data, self.start, self.end):
            self.cr_stand_in = next((c for c in _STAND_INS if c.encode() not in data), "")

    def lines(self) -> io.TextIOWrapper:
        """The text's lines, each ending with \n (records end there; a quoted field may hold several)."""
        raw = io.BytesIO(self.data if self.end == len(self.data) else self.data[: self.end])
        raw.seek(self.start)
        return io.TextIOWrapper(raw, encoding="utf-8", newline="\n")

    def csv_lines(self) -> Iterator[str]:
        """The lines as the CSV reader takes them: a \r not ending a line stands in as `cr_stand_in`."""
        if not self.cr_stand_in:
            return self.lines()
        stand_in = self.cr_stand_in
        return (_stand_in_cr(line, stand_in) if "\r" in line else line for line in self.lines())

    def rest(self, start: int) -> str:
        """The file's text from line `start` (as the CSV reader counts lines), up to MAX_RAW_CHARS characters."""
        out: list[str] = []
        size = 0
        for number, line in enumerate(self.lines()):
            if number >= start:
                out.append(line)
                size += len(line)
                if size >= MAX_RAW_CHARS:
                    break
        return "".join(out)


_LONE_CR = re.compile(rb"\r(?!\n)")
_STAND_INS = [chr(c) for c in range(0xFDD0, 0xFDF0)]  # Unicode noncharacters: no text DMS writes holds them


def _stand_in_cr(line: str, stand_in: str) -> str:
    body, end = (line[:-2], "\r\n") if line.endswith("\r\n") else (line, "")
    return body.replace("\r", stand_in) + end


def _records(text: _Text, delimiter: str) -> Iterator[tuple[int, list[str], str]]:
    """(first line index, fields, error) of every non-blank record; an error ends the file."""
    reader = csv.reader(text.csv_lines(), delimiter=delimiter, strict=True)
    stand_in = text.cr_stand_in
    while True:
        start = reader.line_num  # lines consumed so far: the next record starts on the line after
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, [], str(exc)
            return
        if stand_in:
            record = [field.replace(stand_in, "\r") for field in record]
        if record:  # a blank line carries no data
            yield start, record, ""


def _cut(path: str, position: int, is_load: bool, text: _Text, start: int) -> Row:
    detail = (
        f"the file ends inside the record starting at line {start + 1} (no final newline: DMS ends every record "
        "with one, so the file was cut short); the complete records before it were read"
    )
    return _error(path, position, is_load, "truncated", detail, text.rest(start))


def _unparseable(path: str, position: int, is_load: bool, text: _Text, start: int, error: str) -> Row:
    # The rest of the file cannot be split into records reliably: keep it as one row, from the first line of
    # the broken record (an unclosed quote is only reported at the end of the file).
    detail = f"CSV error in the record starting at line {start + 1}: {error}"
    return _error(path, position, is_load, "unparseable", detail, text.rest(start))


class _CsvLayout:
    """How the records of one CSV file map to columns: by field count, or by the file's header row."""

    def __init__(self, path: str, is_load: bool, source: DmsSource) -> None:
        self.path, self.is_load, self.source = path, is_load, source
        self.has_op = (not is_load) or source.op_in_full_load
        self.layouts = _layouts(source)
        self.header: list[str] | None = None
        self.problem: tuple[str, str] = ("", "")
        self.absent = ""

    def record(self, position: int, record: list[str]) -> Row | None:
        """The row of one record, or None for the header row (read as the layout of the file)."""
        if self.source.header and self.header is None:
            self._read_header(record)
            return None
        if self.problem[0]:
            return _error(self.path, position, self.is_load, *self.problem, _to_csv_line(record, self.source.delimiter))
        values = record[1:] if self.has_op else record
        layout = self.header if self.source.header else self.layouts.get(len(values))
        if layout is None or len(layout) != len(values):
            expected = (
                sorted(n + self.has_op for n in self.layouts)
                if not self.source.header
                else [len(layout or []) + self.has_op]
            )
            detail = f"record has {len(record)} fields; the configured layouts have {expected}"
            raw = _to_csv_line(record, self.source.delimiter)
            return _error(self.path, position, self.is_load, "schema_drift", detail, raw)
        row = _row(self.path, position, self.is_load, _op=record[0] if self.has_op else "I")
        # DMS's default writes NULL (and '') as an empty field; with CsvNullValue, that text is NULL and '' is ''.
        null = "" if self.source.null_value is None else self.source.null_value
        row.update({name: (value if value != null else None) for name, value in zip(layout, values, strict=True)})
        if self.absent:
            row["_absent"] = self.absent
        _mark_unsupplied(row, layout, self.source.no_sup_value)
        return row

    def _read_header(self, header: list[str]) -> None:
        # The header says whether the file carries Op (AddColumnName names it "Op"), whatever op_in_full_load says.
        self.has_op = dms_op_index(header, self.source.columns, expected=self.has_op) == 0
        names = header[1:] if self.has_op else header
        by_lower = {c.lower(): c for c in self.source.columns}
        reason, detail, absent = check_named_columns(names, self.source)
        self.problem = (reason, f"header: {detail}" if reason else "")
        self.header = [by_lower.get(n.strip().lower(), n) for n in names]
        self.absent = ",".join(absent)


def dms_op_index(names: list[str], columns: Iterable[str], *, expected: bool) -> int | None:
    """Where DMS's `Op` is among a file's column names (a CSV header, a Parquet schema), or None: the first name that
    is `op` in any case, unless the table has a column of that name (Oracle's OP) and the file holds it only once;
    then it is DMS's if it comes first in a file that carries Op (`expected`: a CDC file, or Op in the full load)."""
    ops = [i for i, name in enumerate(names) if name.strip().lower() == "op"]
    own = any(c.lower() == "op" for c in columns)
    return ops[0] if len(ops) > own or (ops[:1] == [0] and expected) else None


def _to_csv_line(record: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(record)
    return out.getvalue()


def _parse_parquet(path: str, data: bytes, is_load: bool, source: DmsSource) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        yield _error(path, -1, is_load, "unparseable", f"not a readable Parquet file: {exc}", "")
        return
    by_lower = {c.lower(): c for c in source.columns}
    op_index = dms_op_index(table.column_names, source.columns, expected=not is_load or source.op_in_full_load)
    has_op = op_index is not None
    fields = [(i, n) for i, n in enumerate(table.column_names) if i != op_index]  # the table's own columns
    reason, detail, absent = check_named_columns([n for _, n in fields], source)
    if reason:
        for position in range(table.num_rows):
            yield _error(path, position, is_load, reason, f"Parquet {detail}", "")
        return
    try:
        for i, name in enumerate(table.column_names):  # every column has a text form, or no row of the file is read
            _strings(name, table.column(i).slice(0, 0))
    except _UnreadableColumn as exc:
        for position in range(table.num_rows):
            yield _error(path, position, is_load, "unparseable", str(exc), "")
        return
    # Arrow holds the file's values compactly; as Python strings they are made a slice at a time (a DMS file may
    # be 1 GB, and all its values at once as Python objects many times that).
    named = [by_lower[n.strip().lower()] for _, n in fields]  # as check_named_columns matched them
    for first in range(0, table.num_rows, PARQUET_SLICE_ROWS):
        part = table.slice(first, PARQUET_SLICE_ROWS)
        strings = [(c, _strings(n, part.column(i))) for c, (i, n) in zip(named, fields, strict=True)]
        ops = _strings("Op", part.column(op_index)) if has_op else None
        for i in range(part.num_rows):
            row = _row(
                path, first + i, is_load, _op=ops[i] if ops is not None else "I", _absent=",".join(absent) or None
            )
            for column, values in strings:
                row[column] = values[i]
            if not has_op and not is_load:
                row["_op"] = None  # a CDC file without Op: unknown operation, quarantined downstream
            _mark_unsupplied(row, named, source.no_sup_value)
            yield row


def _mark_unsupplied(row: Row, names: Iterable[str], marker: str | None) -> None:
    """Columns holding DMS's CsvNoSupValue (not in the source's supplemental log, so not known to have changed):
    NULL here, named in `_unsupplied`, and an update takes the key's value before it (`apply.history`)."""
    if marker is None:
        return
    unsupplied = [name for name in names if row.get(name) == marker]
    for name in unsupplied:
        row[name] = None
    if unsupplied:
        row["_unsupplied"] = ",".join(unsupplied)


class _UnreadableColumn(Exception):
    """A Parquet column whose type has no text form here."""


def _strings(name: str, column: Any) -> list[str | None]:
    """A Parquet column's values as text: binary values (BLOB, bytea) as lowercase hex, others as Arrow casts them."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return [None if v is None else v.hex() for v in column.to_pylist()]
    try:
        return column.cast(pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _UnreadableColumn(f"Parquet column {name} of type {kind} has no text form: {exc}") from None
