"""Reading tables for the read commands: delta-rs for a local table, Spark where delta-rs cannot give its answer.

`lakehouse as-of`, `latest` and the run summary read local tables, where a cold Spark start costs far more
than the read itself. delta-rs (the `deltalake` package of the `local` extra) reads the same Delta tables
in-process and answers SQL with its DataFusion engine: the filter, the count and a sorted head, without
pandas, pyarrow's dataset layer or a JVM. It is used when the table is on local disk, `deltalake` is
installed and delta-rs opens and reads the table (it refuses a protocol it does not support); otherwise the
command reads with Spark, as on a cluster (s3:// paths), where Spark is running anyway. Both give the same
`Rows`: a test compares them value by value.

Timestamps are naive datetimes in UTC whichever reader produced them, and `at` is read as UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lakehouse.errors import LakehouseError, TableNotFoundError
from lakehouse.pending import local_path
from lakehouse.tables import META_COLUMNS, REPEATS, UNSUPPLIED

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable
    from pyspark.sql import DataFrame

_EPOCH = datetime(1970, 1, 1)

# History's bookkeeping columns an "as of" answer leaves out (it keeps the validity interval).
AS_OF_HIDDEN = [*[c for c in META_COLUMNS if c not in ("_valid_from", "_valid_to")], UNSUPPLIED, REPEATS]


@dataclass(frozen=True)
class Rows:
    """The first rows of an answer in key order, with the answer's total row count and who read it."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    total: int
    reader: str  # "delta-rs" or "spark"


def open_local(path: str, *, version: int | None = None) -> DeltaTable | None:
    """The local Delta table at `path` through delta-rs; None where Spark must read it."""
    local = local_path(path)
    if local is None:
        return None
    if not (local / "_delta_log").is_dir():
        raise TableNotFoundError(f"no Delta table at {path}; run `lakehouse run` first")
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
    return table


def _name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _query(table: DeltaTable, sql: str) -> pa.Table | None:
    """`sql` over the table (named t) by delta-rs's DataFusion; None if delta-rs cannot run it."""
    import pyarrow as pa
    from deltalake import QueryBuilder
    from deltalake.exceptions import DeltaError

    try:
        return pa.table(QueryBuilder().register("t", table).execute(sql).read_all())
    except DeltaError:
        return None


def _answer(table: DeltaTable, columns: list[str], where: str, key: Sequence[str], limit: int) -> Rows | None:
    """The count of the rows `where` holds, and the first `limit` of them in key order (Spark's: NULLs first)."""
    counted = _query(table, f"SELECT count(*) AS n FROM t WHERE {where}")
    order = ", ".join(f"{_name(k)} ASC NULLS FIRST" for k in key) or "1"
    select = ", ".join(_name(c) for c in columns)
    head = _query(table, f"SELECT {select} FROM t WHERE {where} ORDER BY {order} LIMIT {limit}") if limit else None
    if counted is None or (limit and head is None):
        return None
    rows = (
        [
            tuple(utc_naive(v) if isinstance(v, datetime) and v.tzinfo else v for v in r.values())
            for r in head.to_pylist()
        ]
        if head
        else []
    )
    return Rows(columns=columns, rows=rows, total=counted["n"][0].as_py(), reader="delta-rs")


def count_rows(path: str) -> int | None:
    """Rows of the local table at `path` (from its files' statistics), or None where Spark must count."""
    table = open_local(path)
    if table is None:
        return None
    import pyarrow as pa

    counts = pa.table(table.get_add_actions(flatten=True))["num_records"].to_pylist()
    if any(c is None for c in counts):  # files written without statistics
        counted = _query(table, "SELECT count(*) AS n FROM t")
        return None if counted is None else counted["n"][0].as_py()
    return sum(counts)


def _at(at: datetime) -> str:
    return f"'{at.replace(tzinfo=None).isoformat()}Z'"


def as_of_local(path: str, at: datetime, *, key: Sequence[str], limit: int) -> Rows | None:
    """The history rows live at `at` (UTC) through delta-rs; None where Spark must read the table."""
    table = open_local(path)
    if table is None:
        return None
    columns = [f.name for f in table.schema().fields if f.name not in AS_OF_HIDDEN]
    live = f'"_valid_from" <= {_at(at)} AND ("_valid_to" IS NULL OR "_valid_to" > {_at(at)}) AND NOT "_is_deleted"'
    return _answer(table, columns, live, key, limit)


def latest_local(path: str, *, key: Sequence[str], limit: int, version: int | None = None) -> Rows | None:
    """The latest table (at a Delta version) through delta-rs; None where Spark must read it."""
    table = open_local(path, version=version)
    if table is None:
        return None
    return _answer(table, [f.name for f in table.schema().fields], "TRUE", key, limit)


def valid_from_bounds_local(path: str) -> tuple[datetime, datetime] | None:
    """The first and last `_valid_from` of a history table through delta-rs (naive UTC); None where Spark must."""
    table = open_local(path)
    bounds = (
        None if table is None else _query(table, 'SELECT min("_valid_from") AS lo, max("_valid_from") AS hi FROM t')
    )
    if bounds is None:
        return None
    low, high = bounds["lo"][0].as_py(), bounds["hi"][0].as_py()
    return utc_naive(low), utc_naive(high)


def applied_snapshots_local(log: str) -> list[tuple[date, str]] | None:
    """(date, file) of the snapshots a feed's log (`<lake>/_snapshots/<feed>`) holds as applied; None where
    delta-rs cannot tell (not local, no log yet)."""
    entries = snapshot_log_local(log)
    return None if entries is None else [(day, file) for day, file, status, *_ in entries if status == "applied"]


def snapshot_log_local(log: str) -> list[tuple[date, str, str, str | None, datetime | None]] | None:
    """(date, file, status, detail, logged_at) of every entry of a feed's log ([] when a local one has none yet);
    None where delta-rs cannot tell."""
    try:
        table = open_local(log)
    except TableNotFoundError:
        return []
    names = ("snapshot_date", "source_file", "status", "detail", "logged_at")
    rows = None if table is None else _query(table, f"SELECT {', '.join(names)} FROM t")
    if rows is None:
        return None
    columns = [rows[c].to_pylist() for c in names]
    return list(zip(*columns, strict=True))


def utc_naive(value: datetime) -> datetime:
    """A datetime as a naive UTC datetime (a naive one is taken as the machine's local time, as PySpark makes it)."""
    return value.astimezone(UTC).replace(tzinfo=None)


def rows_of_spark(frame: DataFrame, *, key: Sequence[str], limit: int) -> Rows:
    """The same answer from a Spark DataFrame: its count, and its first `limit` rows in key order."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    # PySpark would turn a TIMESTAMP into a naive datetime in the Python process's zone: east of UTC the open end
    # 9999-12-31 23:59:59 is in the year 10000 (an error), and a fall-back's repeated hour is ambiguous. The
    # instant is read as microseconds instead, and made a naive UTC datetime here.
    zoned = [isinstance(f.dataType, TimestampType) for f in frame.schema.fields]
    columns = [F.col("`" + c.replace("`", "``") + "`") for c in frame.columns]
    exact = [F.unix_micros(c).alias(n) if z else c for c, n, z in zip(columns, frame.columns, zoned, strict=True)]
    head = frame.orderBy(*key).limit(limit).select(*exact).collect() if limit > 0 else []
    rows = [
        tuple(_EPOCH + timedelta(microseconds=v) if z and v is not None else v for z, v in zip(zoned, r, strict=True))
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
