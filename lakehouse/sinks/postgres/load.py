"""One export of one table in one transaction: COPY into a staging table, a set-based upsert (a full export also
deletes the versions it does not hold), the bookkeeping.

Also ID304B's row-by-row way (`row_by_row_baseline`), for the benchmarks only.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg import sql

from lakehouse.errors import InputError
from lakehouse.sinks.postgres.base import EXPORT_TABLE, _check_schema, _entity, _names, _require_idle
from lakehouse.sinks.postgres.bookkeeping import StaleVersionError, _bookkeeping, _lock_key
from lakehouse.sinks.postgres.ddl import pg_columns
from lakehouse.sources.opais_entities import Entity


def apply_rows(
    conn: psycopg.Connection,
    *,
    schema: str,
    table: str,
    rows: pa.Table | Iterable[pa.RecordBatch],
    delta_path: str,
    version: int,
    run_id: str,
    delta_table_id: str | None = None,
    delta_commit: str | None = None,
    replace: bool = False,
    crash_hook: Callable[[], None] | None = None,
) -> int:
    """Upsert history rows into `schema.table` and record `version` as exported, in one transaction.

    rows: the net post-images since the last export, one per (key..., effective_stp), with the table's
    columns in any order (`exported_version` may be absent: it is set to `version`). A stored version
    whose values are unchanged is left alone. Returns the rows inserted, updated or deleted.

    replace=True: `rows` are the whole history of the Delta table (a full export): the stored versions they do not
    hold are deleted in the same transaction, so the table holds exactly them, and `version` may be at or below the
    exported one (a Delta table made again starts its versions again), unless `delta_table_id` is the one recorded:
    a full export of an older version of the same table is refused. `delta_table_id` (the Delta table's metadata id)
    is recorded with the version, and so is `delta_commit` (a digest of the version's commit, see
    `delta_changes.commit_fingerprint`).

    Raises StaleVersionError when `version` is not newer than the exported one (see `needs_export`), and
    InputError when PostgreSQL refuses the rows; either way nothing is committed. `crash_hook` runs after
    the rows are written and before the bookkeeping moves (tests simulate crashes there).
    """
    entity = _entity(table)
    _check_schema(schema)
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a Delta table version (an int >= 0), got {version!r}")
    if not delta_path or not run_id:
        raise ValueError("delta_path and run_id must be non-empty: they are recorded in the bookkeeping")
    _require_idle(conn)
    columns = [c for c in pg_columns(table) if c != "exported_version"]
    target, stage = sql.Identifier(schema, table), sql.Identifier(f"lakehouse_stage_{table}")
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", _lock_key("table", f"{schema}.{table}"))
        _refuse_stale(cur, schema, table, version, delta_path, replace=replace, table_id=delta_table_id)
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                stage, _names(columns), target
            )
        )
        staged = list(_batches(rows, columns, table))  # the rows are in memory already; kept to name a refused one
        try:
            received = _copy_csv(cur, stage, columns, staged)
            deleted = _delete_others(cur, entity, target, stage) if replace else 0
            written = cur.execute(_upsert(entity, target, stage, columns), {"version": version}).rowcount + deleted
        except psycopg.errors.CardinalityViolation:
            raise InputError(
                "two rows share a (key, effective_stp): rows must be one per history version. "
                f"Nothing was committed; {schema}.{table} stays at its last exported version",
                table=table,
            ) from None
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            where = f" ({exc.diag.context.strip()})" if exc.diag.context else ""
            line = re.search(r"\bline (\d+)", exc.diag.context or "")
            row = _row_at(staged, int(line.group(1)) - 1) if line else None
            which = f" The row is the version {_version_of(entity, row)}." if row is not None else ""
            raise InputError(
                f"PostgreSQL refused the rows: {exc.diag.message_primary}{where}.{which} "
                f"Nothing was committed; {schema}.{table} stays at its last exported version, and every export of it "
                "fails the same way until the value is corrected in the Delta history (an UPDATE of that version) or "
                f"the column of {schema}.{table} is made to take it (ALTER TABLE ... ALTER COLUMN ... TYPE)",
                table=table,
            ) from None
        if crash_hook is not None:
            crash_hook()
        _record(
            cur,
            schema,
            table,
            delta_path,
            version,
            run_id,
            received,
            written,
            (delta_table_id, delta_commit),
            replace=replace,
        )
    return written


def _delete_others(cur: psycopg.Cursor, entity: Entity, target: sql.Identifier, stage: sql.Identifier) -> int:
    """Delete the stored versions the staged rows do not hold (a full export); unchanged ones stay unwritten."""
    cur.execute(sql.SQL("ANALYZE {}").format(stage))  # a temporary table has no statistics: plan the anti-join on some
    key = [*entity.primary_key, "effective_stp"]
    match = sql.SQL(" AND ").join(sql.SQL("s.{0} = t.{0}").format(sql.Identifier(c)) for c in key)
    query = sql.SQL("DELETE FROM {} AS t WHERE NOT EXISTS (SELECT FROM {} AS s WHERE {})").format(target, stage, match)
    return cur.execute(query).rowcount


def _upsert(entity: Entity, target: sql.Identifier, stage: sql.Identifier, columns: list[str]) -> sql.Composed:
    key = [*entity.primary_key, "effective_stp"]
    values = [c for c in columns if c not in key]
    return sql.SQL(
        # In key order: the B-tree inserts then append to few pages instead of splitting pages at random.
        "INSERT INTO {target} AS t ({columns}, exported_version) SELECT {columns}, %(version)s FROM {stage} "
        "ORDER BY {key} ON CONFLICT ({key}) DO UPDATE SET {sets}, exported_version = EXCLUDED.exported_version "
        "WHERE ({old}) IS DISTINCT FROM ({new})"
    ).format(
        target=target,
        stage=stage,
        columns=_names(columns),
        key=_names(key),
        sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in values),
        old=sql.SQL(", ").join(sql.Identifier("t", c) for c in values),
        new=sql.SQL(", ").join(sql.Identifier("excluded", c) for c in values),
    )


def _refuse_stale(
    cur: psycopg.Cursor, schema: str, table: str, version: int, delta_path: str, *, replace: bool, table_id: str | None
) -> None:
    """Refuse a version that is not newer than the exported one; a full export (`replace`), only an older version of
    the Delta table whose id is recorded."""
    row = _bookkeeping(cur, schema, table, lock=True)
    if row is None:
        return
    if row.delta_path != delta_path:
        raise InputError(
            f"{schema}.{table} was exported from {row.delta_path}, not {delta_path}: versions of two Delta tables "
            f"are not comparable. If the table moved, update {schema}.{EXPORT_TABLE}.delta_path, then rerun",
            table=table,
        )
    if not replace and version <= row.version:
        raise StaleVersionError(
            f"{schema}.{table} already holds Delta version {row.version}; version {version} is not newer. "
            "Nothing was written (skip tables for which needs_export() is False)"
        )
    if replace and table_id is not None and table_id == row.delta_table_id and version < row.version:
        raise StaleVersionError(
            f"{schema}.{table} already holds version {row.version} of this Delta table ({table_id}); a full export "
            f"of its version {version} would go back. Nothing was written"
        )


def _record(
    cur: psycopg.Cursor,
    schema: str,
    table: str,
    path: str,
    version: int,
    run_id: str,
    received: int,
    written: int,
    delta: tuple[str | None, str | None],
    *,
    replace: bool,
) -> None:
    """Move the bookkeeping row to `version`; `delta` is the Delta table id and the commit's digest."""
    done = cur.execute(
        sql.SQL(
            "INSERT INTO {} AS e (table_name, delta_path, exported_version, rows_received, rows_written, "
            "exported_at, run_id, delta_table_id, delta_commit) "
            "VALUES (%s, %s, %s, %s, %s, clock_timestamp(), %s, %s, %s) "
            "ON CONFLICT (table_name) DO UPDATE SET delta_path = EXCLUDED.delta_path, "
            "exported_version = EXCLUDED.exported_version, rows_received = EXCLUDED.rows_received, "
            "rows_written = EXCLUDED.rows_written, exported_at = EXCLUDED.exported_at, run_id = EXCLUDED.run_id, "
            "delta_table_id = EXCLUDED.delta_table_id, delta_commit = EXCLUDED.delta_commit "
            "WHERE e.exported_version < EXCLUDED.exported_version OR %s"
        ).format(sql.Identifier(schema, EXPORT_TABLE)),
        (table, path, version, received, written, run_id, *delta, replace),
    )
    if done.rowcount != 1:  # unreachable under the table lock; kept as the last line of defence
        raise StaleVersionError(f"{schema}.{table} moved past version {version} during this export; rolled back")


def _row_at(batches: list[pa.RecordBatch], index: int) -> dict | None:
    """Row `index` (from 0) of the COPY's rows, or None past their end."""
    for batch in batches:
        if index < batch.num_rows:
            return batch.slice(index, 1).to_pylist()[0]
        index -= batch.num_rows
    return None


def _version_of(entity: Entity, row: dict) -> str:
    """A history version named by its key and effective_stp: `id340b='DSH000001', effective_stp=2026-03-01 06:00:00`."""
    return ", ".join(f"{c}={row[c]!r}" if isinstance(row[c], str) else f"{c}={row[c]}" for c in _key(entity))


def _key(entity: Entity) -> list[str]:
    return [*entity.primary_key, "effective_stp"]


def _refuse_nul(batch: pa.RecordBatch, table: str) -> None:
    """Refuse a text holding U+0000: PostgreSQL's text types cannot store it, and COPY's refusal names only a line."""
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
            continue
        found = pc.match_substring(array, "\x00")
        if not pc.any(found).as_py():
            continue
        row = batch.slice(pc.index(found, True).as_py(), 1).to_pylist()[0]
        raise InputError(
            f"{table}.{name} of the version {_version_of(_entity(table), row)} holds a NUL character (U+0000), which "
            "PostgreSQL text cannot store. Nothing was committed; the table stays at its last exported version, and "
            "every export of it fails until the value is corrected in the Delta history (and latest), e.g. UPDATE "
            f"delta.`<history>` SET {name} = replace({name}, char(0), '') WHERE instr({name}, char(0)) > 0",
            table=table,
        )


def _batches(rows: pa.Table | Iterable[pa.RecordBatch], columns: list[str], table: str) -> Iterator[pa.RecordBatch]:
    """The rows as batches of at most 50k rows with exactly `columns`, timestamps as naive UTC; a text holding U+0000
    is refused naming its column and version."""
    source = rows.to_batches(max_chunksize=50_000) if isinstance(rows, pa.Table) else rows
    for batch in source:
        names = set(batch.schema.names) - {"exported_version"}
        if names != set(columns):
            raise InputError(
                f"the rows' columns differ from the table's: missing {sorted(set(columns) - names)}, "
                f"unexpected {sorted(names - set(columns))}",
                table=table,
            )
        arrays = []
        for name in columns:
            array = batch.column(name)
            if pa.types.is_timestamp(array.type) and array.type.tz is not None:
                array = array.cast(pa.timestamp(array.type.unit))  # the stored instant, i.e. UTC
            arrays.append(array)
        batch = pa.RecordBatch.from_arrays(arrays, names=columns)
        _refuse_nul(batch, table)
        yield batch


def _copy_csv(cur: psycopg.Cursor, stage: sql.Identifier, columns: list[str], batches: Iterable[pa.RecordBatch]) -> int:
    """COPY the batches as CSV that Arrow writes in C++ (an unquoted empty field is NULL, "" an empty string)."""
    received = 0
    options = pa_csv.WriteOptions(include_header=False)
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(stage, _names(columns))) as copy:
        for batch in batches:
            buffer = io.BytesIO()
            pa_csv.write_csv(batch, buffer, options)
            copy.write(buffer.getbuffer())
            received += batch.num_rows
    return received


def row_by_row_baseline(
    conn: psycopg.Connection, schema: str, table: str, rows: pa.Table | Iterable[pa.RecordBatch], *, version: int = 0
) -> int:
    """ID304B's way, for benchmarks only: per row, SELECT the stored version by key, then UPDATE or INSERT it,
    committed on its own (two round trips and a commit per row). Same end state as `apply_rows`, without
    the bookkeeping; returns rows written."""
    entity = _entity(table)
    columns = [c for c in pg_columns(table) if c != "exported_version"]
    key = [*entity.primary_key, "effective_stp"]
    values = [c for c in columns if c not in key]
    target = sql.Identifier(schema, table)
    match = sql.SQL(" AND ").join(sql.SQL("{} = %({})s").format(sql.Identifier(c), sql.SQL(c)) for c in key)
    select = sql.SQL("SELECT {} FROM {} WHERE {}").format(_names(values), target, match)
    update = sql.SQL("UPDATE {} SET {}, exported_version = %(exported_version)s WHERE {}").format(
        target, sql.SQL(", ").join(sql.SQL("{} = %({})s").format(sql.Identifier(c), sql.SQL(c)) for c in values), match
    )
    insert = sql.SQL("INSERT INTO {} ({}, exported_version) VALUES ({}, %(exported_version)s)").format(
        target, _names(columns), sql.SQL(", ").join(sql.SQL("%({})s").format(sql.SQL(c)) for c in columns)
    )
    written = 0
    for batch in _batches(rows, columns, table):
        for row in batch.to_pylist():
            row["exported_version"] = version
            stored = conn.execute(select, row).fetchone()
            if stored is None:
                conn.execute(insert, row)
            elif stored != tuple(row[c] for c in values):
                conn.execute(update, row)
            else:
                continue
            if not conn.autocommit:
                conn.commit()
            written += 1
    return written
