"""Reading tables for the read commands: delta-rs for a local table, Spark where delta-rs cannot give its answer.

`lakehouse as-of`, `latest` and the run summary read small local tables, where a cold Spark start costs
far more than the read itself. delta-rs (the `deltalake` package of the `local` extra) reads the same
Delta tables in-process. It is used when the table is on local disk, `deltalake` is installed, the
table has at most `LOCAL_MAX_ROWS` rows (the rows are sorted in memory) and delta-rs opens it (it refuses
a protocol it does not support); otherwise the command reads with Spark, as on a cluster (s3:// paths),
where Spark is running anyway. Both give the same `Rows`: a test compares them value by value.

Timestamps are naive datetimes in UTC whichever reader produced them, and `at` is read as UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lakehouse.errors import LakehouseError, TableNotFoundError
from lakehouse.pending import local_path
from lakehouse.tables import META_COLUMNS

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame

# delta-rs sorts the selected rows in memory; above this many rows in the table, Spark reads it.
LOCAL_MAX_ROWS = 2_000_000
# History's bookkeeping columns an "as of" answer leaves out (it keeps the validity interval).
AS_OF_HIDDEN = [c for c in META_COLUMNS if c not in ("_valid_from", "_valid_to")]


@dataclass(frozen=True)
class Rows:
    """The first rows of an answer in key order, with the answer's total row count and who read it."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    total: int
    reader: str  # "delta-rs" or "spark"


def _missing(path: str) -> TableNotFoundError:
    return TableNotFoundError(f"no Delta table at {path}; run `lakehouse run` first")


def open_local(path: str, *, version: int | None = None, max_rows: int | None = LOCAL_MAX_ROWS) -> DeltaTable | None:
    """The local Delta table at `path` through delta-rs; None where Spark must read it, or it has over `max_rows`."""
    local = local_path(path)
    if local is None:
        return None
    if not (local / "_delta_log").is_dir():
        raise _missing(path)
    try:
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError
    except ImportError:
        return None
    try:
        table = DeltaTable(str(local))
        if version is not None:
            available = [h["version"] for h in table.history()]
            if version not in available:
                raise LakehouseError(
                    f"{path} has no version {version}; its versions are {min(available)}..{max(available)}"
                )
            table.load_as_version(version)
    except DeltaError:  # a feature or protocol delta-rs does not read: Spark does
        return None
    if max_rows is not None and _row_count(table) > max_rows:
        return None
    return table


def _row_count(table: DeltaTable) -> int:
    actions = table.get_add_actions(flatten=True)
    counts = actions.column("num_records").to_pylist() if actions.num_rows else []
    if any(c is None for c in counts):  # files written without statistics
        return table.to_pyarrow_dataset().count_rows()
    return sum(counts)


def count_rows(path: str) -> int | None:
    """Rows of the local table at `path` (from its files' statistics), or None where Spark must count."""
    table = open_local(path, max_rows=None)
    return None if table is None else _row_count(table)


def utc_naive(value: datetime) -> datetime:
    """A datetime as a naive UTC datetime (a naive one is taken as the machine's local time, as PySpark makes it)."""
    return value.astimezone(UTC).replace(tzinfo=None)


def _sorted_head(table: Any, columns: list[str], key: Sequence[str], limit: int) -> Rows:
    """Sort an Arrow table by `key` (as Spark's orderBy: NULLs first), keep `limit` rows of `columns`."""
    if key and table.num_rows:
        table = table.sort_by([(k, "ascending") for k in key], null_placement="at_start")
    head = table.select(columns).slice(0, limit).to_pylist()
    rows = [tuple(utc_naive(v) if isinstance(v, datetime) and v.tzinfo else v for v in row.values()) for row in head]
    return Rows(columns=columns, rows=rows, total=table.num_rows, reader="delta-rs")


def _utc_scalar(at: datetime) -> Any:
    import pyarrow as pa

    return pa.scalar(at.replace(tzinfo=UTC), type=pa.timestamp("us", tz="UTC"))


def as_of_local(path: str, at: datetime, *, key: Sequence[str], limit: int) -> Rows | None:
    """The history rows live at `at` (UTC) through delta-rs; None where Spark must read the table."""
    import pyarrow.dataset as ds

    table = open_local(path)
    if table is None:
        return None
    columns = [f.name for f in table.schema().fields if f.name not in AS_OF_HIDDEN]
    valid_to = ds.field("_valid_to")
    live = (
        (ds.field("_valid_from") <= _utc_scalar(at))
        & (valid_to.is_null() | (valid_to > _utc_scalar(at)))
        & ~ds.field("_is_deleted")
    )
    return _sorted_head(table.to_pyarrow_dataset().to_table(filter=live), columns, key, limit)


def latest_local(path: str, *, key: Sequence[str], limit: int, version: int | None = None) -> Rows | None:
    """The latest table (at a Delta version) through delta-rs; None where Spark must read it."""
    table = open_local(path, version=version)
    if table is None:
        return None
    columns = [f.name for f in table.schema().fields]
    return _sorted_head(table.to_pyarrow_dataset().to_table(), columns, key, limit)


def rows_of_spark(frame: DataFrame, *, key: Sequence[str], limit: int) -> Rows:
    """The same answer from a Spark DataFrame: its count, and its first `limit` rows in key order."""
    from pyspark.sql.types import TimestampType

    zoned = {f.name for f in frame.schema.fields if isinstance(f.dataType, TimestampType)}
    head = frame.orderBy(*key).limit(limit).collect() if limit > 0 else []
    # PySpark turns a TIMESTAMP into a naive datetime in the Python process's local time zone.
    rows = [
        tuple(utc_naive(v) if c in zoned and v is not None else v for c, v in zip(frame.columns, r, strict=True))
        for r in head
    ]
    return Rows(columns=list(frame.columns), rows=rows, total=frame.count(), reader="spark")


def read_or_spark(local: Callable[[], Rows | None], spark: Callable[[], Rows]) -> Rows:
    """`local()` when it can answer, else `spark()`."""
    rows = local()
    return rows if rows is not None else spark()


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | Decimal):
        return str(value)
    return str(value)


def format_rows(rows: Rows) -> str:
    """The rows as a boxed text table (like Spark's `show(truncate=False)`), with a note if only a head is shown."""
    cells = [[_cell(v) for v in row] for row in rows.rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(rows.columns)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"
    lines = [rule, "|" + "|".join(c.ljust(w) for c, w in zip(rows.columns, widths, strict=True)) + "|", rule]
    lines += ["|" + "|".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + "|" for r in cells]
    lines.append(rule)
    if rows.total > len(rows.rows):
        lines.append(f"only showing the first {len(rows.rows)} rows")
    return "\n".join(lines)
