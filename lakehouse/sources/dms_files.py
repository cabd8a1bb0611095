"""Parse one DMS output file (CSV or Parquet, optionally gzip) into rows of strings.

Plain Python on purpose: each file is parsed on its own, so the things Spark's CSV reader cannot
see per file are exact here — the field count of every record (the column layout can change between
files of one table), a header per file (AddColumnName=true), whether the file carries the Op column
(LOAD files only with IncludeOpForFullLoad), and the position of every row inside its file.
A row that cannot be mapped comes out with a `_reason`, never dropped.
"""

from __future__ import annotations

import csv
import gzip
import io
import posixpath
import zlib
from collections.abc import Iterator
from typing import Any

from lakehouse.config import DmsSource

Row = dict[str, Any]
MAX_RAW_CHARS = 100_000  # a quarantined remainder of a broken file is kept up to this size
csv.field_size_limit(2**31 - 1)  # a large text column is data, not an error


def is_load_file(path: str) -> bool:
    """DMS names full-load files LOAD00000001.csv …; everything else in the folder is CDC."""
    return posixpath.basename(path).upper().startswith("LOAD")


def file_key(path: str) -> str:
    """The ordering key of a file inside its table: its name (DMS CDC names are timestamps)."""
    return posixpath.basename(path)


def output_columns(source: DmsSource) -> list[str]:
    """Columns of every parsed row, in order: lineage, Op, then the layout columns (all strings)."""
    return ["_file", "_row", "_is_load", "_reason", "_detail", "_raw", "_op", *source.columns]


def _row(path: str, position: int, is_load: bool, **values: Any) -> Row:
    return {"_file": path, "_row": position, "_is_load": is_load, **values}


def _error(path: str, position: int, is_load: bool, reason: str, detail: str, raw: str) -> Row:
    return _row(path, position, is_load, _reason=reason, _detail=detail, _raw=raw[:MAX_RAW_CHARS])


def parse_file(path: str, content: bytes, source: DmsSource) -> Iterator[Row]:
    """Yield one row per record of the file at `path` (its bytes in `content`)."""
    is_load = is_load_file(path)
    name = posixpath.basename(path).lower()
    try:
        data = gzip.decompress(content) if name.endswith(".gz") else content
    except (OSError, EOFError, zlib.error) as exc:
        yield _error(path, -1, is_load, "unparseable", f"not a readable gzip file: {exc}", "")
        return
    stem = name.removesuffix(".gz")
    if stem.endswith(".csv") and source.format == "csv":
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


def _header_layout(header: list[str], has_op: bool, source: DmsSource) -> tuple[list[str] | None, str]:
    names = header[1:] if has_op else header
    by_lower = {c.lower(): c for c in source.columns}
    mapped = [by_lower.get(n.strip().lower()) for n in names]
    unknown = [n for n, m in zip(names, mapped, strict=True) if m is None]
    if unknown:
        return None, f"header names columns not in the configuration: {unknown}; add them to `columns`"
    return [m for m in mapped if m is not None], ""


def _parse_csv(path: str, data: bytes, is_load: bool, source: DmsSource) -> Iterator[Row]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield _error(path, -1, is_load, "unparseable", f"not UTF-8 text: {exc}", "")
        return
    has_op = (not is_load) or source.op_in_full_load
    layouts = _layouts(source)
    header_layout: list[str] | None = None
    header_problem = ""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=source.delimiter, strict=True)
    position = 0
    first = True
    while True:
        start = reader.line_num  # lines consumed so far: the next record starts on the line after
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The rest of the file cannot be split into records reliably: keep it as one row, from the
            # first line of the broken record (an unclosed quote is only reported at the end of the file).
            # The lines are split as the reader splits them, so the remainder is the file's own text.
            rest = io.StringIO(text, newline="").readlines()[start:]
            yield _error(
                path,
                position,
                is_load,
                "unparseable",
                f"CSV error in the record starting at line {start + 1}: {exc}",
                "".join(rest),
            )
            return
        if not record:  # a blank line carries no data
            continue
        if source.header and first:
            first = False
            header_layout, header_problem = _header_layout(record, has_op, source)
            continue
        first = False
        yield _map_record(path, position, is_load, record, has_op, source, layouts, header_layout, header_problem)
        position += 1


def _map_record(
    path: str,
    position: int,
    is_load: bool,
    record: list[str],
    has_op: bool,
    source: DmsSource,
    layouts: dict[int, list[str]],
    header_layout: list[str] | None,
    header_problem: str,
) -> Row:
    raw = _to_csv_line(record, source.delimiter)
    if header_problem:
        return _error(path, position, is_load, "schema_drift", header_problem, raw)
    values = record[1:] if has_op else record
    layout = header_layout if source.header else layouts.get(len(values))
    if layout is None or len(layout) != len(values):
        expected = sorted(n + has_op for n in layouts) if not source.header else [len(header_layout or []) + has_op]
        return _error(
            path,
            position,
            is_load,
            "schema_drift",
            f"record has {len(record)} fields; the configured layouts have {expected}",
            raw,
        )
    row = _row(path, position, is_load, _op=record[0] if has_op else "I")
    row.update({name: (value if value != "" else None) for name, value in zip(layout, values, strict=True)})
    return row


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
    has_op = "op" in {n.lower() for n in table.column_names}
    unknown = [n for n in table.column_names if n.lower() != "op" and n.lower() not in by_lower]
    if unknown:
        for position in range(table.num_rows):
            yield _error(
                path,
                position,
                is_load,
                "schema_drift",
                f"Parquet columns not in the configuration: {unknown}; add them to `columns`",
                "",
            )
        return
    strings = {n: table.column(n).cast(pa.string()).to_pylist() for n in table.column_names}
    for position in range(table.num_rows):
        row = _row(path, position, is_load, _op="I")
        for name, values in strings.items():
            if name.lower() == "op":
                row["_op"] = values[position]
            else:
                row[by_lower[name.lower()]] = values[position]
        if not has_op and not is_load:
            row["_op"] = None  # a CDC file without Op: unknown operation, quarantined downstream
        yield row
