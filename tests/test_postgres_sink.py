"""Specification of the PostgreSQL sink: DDL, settings, and exactly-once export of history rows (a real server)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace as dc_replace
from pathlib import Path
from uuid import uuid4

import psycopg
import pyarrow as pa
import pyarrow.ipc
import pytest
from psycopg import sql

from lakehouse.config import Config
from lakehouse.errors import ConfigError, InputError, LakehouseError
from lakehouse.sinks.delta_changes import file_missing, to_arrow
from lakehouse.sinks.postgres import (
    ExportBusyError,
    PostgresConnectError,
    PostgresSettings,
    StaleVersionError,
    apply_rows,
    arrow_schema,
    connect,
    export_lock,
    exported_state,
    exported_version,
    init_db,
    needs_export,
    render_ddl,
    row_by_row_baseline,
)
from lakehouse.sinks.postgres.comments import COLUMNS
from lakehouse.sinks.postgres_export import export_postgres
from lakehouse.sources.opais_entities import ENTITIES
from lakehouse.tables import table_paths

ROOT = Path(__file__).parent.parent
T0, T1 = dt.datetime(2026, 3, 1, 6, 0), dt.datetime(2026, 3, 2, 6, 0)
OPEN = dt.datetime(9999, 12, 31, 23, 59, 59)
PATH = "s3://lake/opais/dim_ce/history"


# --- rows -----------------------------------------------------------------------------------------


def business(table: str, i: int, edit: int = 0) -> dict:
    """Plausible business values of entity i (edit > 0 changes the non-key values)."""
    values: dict = {}
    for name, spark_type in ENTITIES[table].columns.items():
        if name == "id340b":
            values[name] = f"DSH{i:06d}"
        elif name == "content_key":
            values[name] = hashlib.sha256(f"{table}-{i}".encode()).hexdigest()
        elif name in ("state", "zip", "zip4", "npi_number"):
            values[name] = {"state": "VA", "zip": f"{24000 + i:05d}", "zip4": f"{i % 10000:04d}"}.get(name, f"{i:010d}")
        elif spark_type == "bigint":
            values[name] = 1000 + i
        elif spark_type == "boolean":
            values[name] = (i + edit) % 2 == 0
        elif spark_type == "timestamp":
            values[name] = T0 - dt.timedelta(days=i + edit)
        else:
            values[name] = f"{name} {i}" + (f" edit {edit}" if edit else "")
    return values


def version(table: str, i: int, effective: dt.datetime, *, edit: int = 0, **scd2) -> dict:
    """One history version of entity i: business values plus SCD2 and lineage columns."""
    return (
        business(table, i, edit)
        | {
            "effective_stp": effective,
            "expiration_stp": OPEN,
            "current_version_flg": "Y",
            "change_type": "INSERT",
            "_sequence": f"{effective:%Y%m%d}-{i:06d}",
            "_batch_id": 1,
        }
        | scd2
    )


def arrow(table: str, rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema(table))


def full_load(table: str, n: int = 4) -> list[dict]:
    return [version(table, i, T0) for i in range(n)]


def changes(table: str) -> list[dict]:
    """Entity 0 updated at T1 (old version closed), entity 2 deleted at T1, entity 9 inserted at T1."""
    closed = {"expiration_stp": T1, "current_version_flg": "N"}
    return [
        version(table, 0, T0, **closed),
        version(table, 0, T1, edit=1, change_type="UPDATE", _batch_id=2),
        version(table, 2, T0, **closed, change_type="DELETE"),
        version(table, 9, T1, _batch_id=2),
    ]


def merged(*batches: list[dict], table: str) -> list[tuple]:
    """What the table must hold: the last post-image of every (key..., effective_stp)."""
    key = [*ENTITIES[table].primary_key, "effective_stp"]
    out = {tuple(row[c] for c in key): row for rows in batches for row in rows}
    return sorted(tuple(row[c] for c in arrow_schema(table).names) for row in out.values())


def stored(conn, schema: str, table: str, extra: tuple[str, ...] = ()) -> list[tuple]:
    names = [*arrow_schema(table).names, *extra]
    query = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(schema, table)
    )
    return sorted(conn.execute(query).fetchall())


def export(conn, schema: str, table: str, rows: list[dict], v: int, **kwargs) -> int:
    return apply_rows(
        conn,
        schema=schema,
        table=table,
        rows=arrow(table, rows),
        delta_path=PATH,
        version=v,
        run_id=f"run-{v}",
        **kwargs,
    )


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def conn(postgres):
    with connect(postgres) as connection:
        yield connection


@pytest.fixture
def db(conn, pg_schema: str) -> str:
    init_db(conn, pg_schema)
    return pg_schema


# --- DDL ------------------------------------------------------------------------------------------


def test_init_db_twice_is_idempotent_and_creates_primary_keys_and_current_row_indexes(conn, pg_schema):
    first = init_db(conn, pg_schema)
    assert init_db(conn, pg_schema) == first
    indexes = conn.execute(
        """SELECT c.relname, i.indisprimary, pg_get_expr(i.indpred, i.indrelid),
                  array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace s ON s.oid = c.relnamespace
           WHERE s.nspname = %s""",
        (pg_schema,),
    ).fetchall()
    for name, entity in ENTITIES.items():
        key = list(entity.primary_key)
        assert (name, True, None, [*key, "effective_stp"]) in indexes
        assert (name, False, "(current_version_flg = 'Y'::bpchar)", key) in indexes
    assert ("lakehouse_export", True, None, ["table_name"]) in indexes


def test_ddl_file_is_what_the_code_applies():
    assert (ROOT / "ddl" / "opais_340b.sql").read_text() == render_ddl(), (
        "ddl/opais_340b.sql is stale: regenerate it with "
        "`.venv/bin/python -c 'from lakehouse.sinks.postgres import render_ddl; print(render_ddl(), end=\"\")'"
        " > ddl/opais_340b.sql`"
    )


HISTORY_COLUMNS = ("effective_stp", "expiration_stp", "current_version_flg", "change_type", "_sequence", "_batch_id")
HISTORY_COLUMNS += ("exported_version",)


def test_ddl_columns_follow_the_entities(conn, db):
    pg_types = {"string": ("text", "character varying"), "bigint": ("bigint",), "boolean": ("boolean",)}
    pg_types["timestamp"] = ("timestamp without time zone",)
    for name, entity in ENTITIES.items():
        found = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (db, name),
        ).fetchall()
        assert [c for c, _ in found] == [*entity.columns, *HISTORY_COLUMNS]
        for column, data_type in found[: len(entity.columns)]:
            assert data_type in pg_types[entity.columns[column]], (name, column, data_type)


def test_no_drop_table_in_the_ddl():
    texts = [p.read_text() for p in (ROOT / "ddl").glob("**/*") if p.is_file()] + [render_ddl()]
    assert not [t for t in texts if re.search(r"\bdrop\s+table\b", t, re.IGNORECASE)]


# --- export ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(ENTITIES))
def test_full_load_then_changes_leave_every_version_with_its_last_post_image(conn, db, table):
    assert export(conn, db, table, full_load(table), 1) == 4
    assert export(conn, db, table, changes(table), 2) == 4
    assert stored(conn, db, table) == merged(full_load(table), changes(table), table=table)
    assert exported_version(conn, db, table) == 2


def test_unchanged_versions_are_not_rewritten(conn, db):
    export(conn, db, "dim_ce", full_load("dim_ce"), 1)
    assert export(conn, db, "dim_ce", [*full_load("dim_ce")[1:], *changes("dim_ce")[3:]], 2) == 1
    versions = dict(conn.execute(sql.SQL("SELECT ce_id, exported_version FROM {}.dim_ce").format(sql.Identifier(db))))
    assert versions == {1000: 1, 1001: 1, 1002: 1, 1003: 1, 1009: 2}


def test_a_version_not_newer_than_the_exported_one_is_refused(conn, db):
    export(conn, db, "dim_ce", full_load("dim_ce"), 5)
    for stale in (5, 4):
        assert not needs_export(conn, db, "dim_ce", stale)
        with pytest.raises(StaleVersionError, match=f"already holds Delta version 5; version {stale} is not newer"):
            export(conn, db, "dim_ce", changes("dim_ce"), stale)
    assert needs_export(conn, db, "dim_ce", 6)
    assert stored(conn, db, "dim_ce") == merged(full_load("dim_ce"), table="dim_ce")


def test_a_crash_before_the_bookkeeping_commits_neither_rows_nor_version(conn, db):
    def crash() -> None:
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        export(conn, db, "dim_ce", full_load("dim_ce"), 1, crash_hook=crash)
    assert (stored(conn, db, "dim_ce"), exported_version(conn, db, "dim_ce")) == ([], None)
    export(conn, db, "dim_ce", full_load("dim_ce"), 1)
    with pytest.raises(RuntimeError):
        export(conn, db, "dim_ce", changes("dim_ce"), 2, crash_hook=crash)
    assert stored(conn, db, "dim_ce") == merged(full_load("dim_ce"), table="dim_ce")
    assert exported_version(conn, db, "dim_ce") == 1


CHILD = """
import os, signal, sys
import pyarrow.ipc
from lakehouse.sinks.postgres import PostgresSettings, apply_rows, connect, export_lock

settings = PostgresSettings.from_env()
rows = pyarrow.ipc.open_file(sys.argv[1]).read_all()
with connect(settings) as conn, export_lock(conn, settings.schema):
    apply_rows(conn, schema=settings.schema, table="dim_ce", rows=rows, delta_path=sys.argv[2], version=2,
               run_id="run-2", crash_hook=lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_an_export_killed_before_the_bookkeeping_reruns_to_the_state_of_a_clean_run(postgres, conn, db, tmp_path):
    export(conn, db, "dim_ce", full_load("dim_ce"), 1)
    with pyarrow.ipc.new_file(tmp_path / "rows.arrow", arrow_schema("dim_ce")) as out:
        out.write_table(arrow("dim_ce", changes("dim_ce")))
    env = os.environ | {"PYTHONPATH": str(ROOT), "LAKEHOUSE_PG_SCHEMA": db, "PGSSLMODE": postgres.sslmode}
    env |= {f"LAKEHOUSE_PG_{k.upper()}": str(getattr(postgres, k)) for k in ("host", "port", "dbname", "user")}
    env["LAKEHOUSE_PG_PASSWORD"] = postgres.password.get_secret_value()
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "rows.arrow"), PATH], env=env, timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert stored(conn, db, "dim_ce") == merged(full_load("dim_ce"), table="dim_ce")
    assert exported_version(conn, db, "dim_ce") == 1

    with export_lock(conn, db, timeout=10):  # the dead session's lock went with it
        export(conn, db, "dim_ce", changes("dim_ce"), 2)
    clean = db + "_clean"
    init_db(conn, clean)
    export(conn, clean, "dim_ce", full_load("dim_ce"), 1)
    export(conn, clean, "dim_ce", changes("dim_ce"), 2)
    lineage = ("exported_version",)
    assert stored(conn, db, "dim_ce", lineage) == stored(conn, clean, "dim_ce", lineage)
    bookkeeping = "SELECT table_name, delta_path, exported_version, rows_received, rows_written, run_id FROM {}.{}"
    assert [
        conn.execute(sql.SQL(bookkeeping).format(sql.Identifier(s), sql.Identifier("lakehouse_export"))).fetchall()
        for s in (db, clean)
    ] == [[("dim_ce", PATH, 2, 4, 4, "run-2")]] * 2


def test_nulls_empty_strings_and_awkward_text_arrive_as_sent(conn, db):
    row = version("dim_ce", 1, T0) | {"name": 'Saint "Mary\'s", Inc.\nNorth\\Wing \u00e9\u4e2d', "sub_name": ""}
    row |= {"termination_reason": None, "termination_date": None, "participating": None, "grant_number": "\\."}
    export(conn, db, "dim_ce", [row], 1)
    assert stored(conn, db, "dim_ce") == merged([row], table="dim_ce")


def test_rows_with_other_columns_are_refused_naming_them(conn, db):
    rows = arrow("dim_ce", full_load("dim_ce")).drop_columns(["sub_name"]).append_column("extra", pa.array([1] * 4))
    with pytest.raises(InputError, match=r"missing \['sub_name'\], unexpected \['extra'\] \[table dim_ce\]"):
        apply_rows(conn, schema=db, table="dim_ce", rows=rows, delta_path=PATH, version=1, run_id="r")
    assert exported_version(conn, db, "dim_ce") is None


def test_a_value_postgres_refuses_rolls_back_and_names_the_column(conn, db):
    rows = full_load("dim_ce_street_address")
    rows[2]["state"] = "Virginia"
    with pytest.raises(InputError, match=r"value too long .*line 3, column state"):
        export(conn, db, "dim_ce_street_address", rows, 1)
    assert exported_version(conn, db, "dim_ce_street_address") is None


def test_a_refused_value_names_the_version_and_what_to_do(conn, db):
    """Found by review: such a value fails every later export of the dimension; the message named a COPY line only."""
    rows = full_load("dim_ce_street_address")
    rows[2]["state"] = "Virginia"
    message = r"line 3, column state.*version id340b='DSH000002', .*effective_stp=2026-03-01 06:00:00.*ALTER COLUMN"
    with pytest.raises(InputError, match=message):
        export(conn, db, "dim_ce_street_address", rows, 1)


def test_a_text_holding_nul_is_refused_before_postgres_naming_column_and_version(conn, db):
    rows = full_load("dim_ce")
    rows[1]["sub_name"] = "a\x00b"
    message = r"dim_ce\.sub_name of the version id340b='DSH000001'.* holds a NUL character .*replace\(sub_name, char"
    with pytest.raises(InputError, match=message):
        export(conn, db, "dim_ce", rows, 1)
    assert exported_version(conn, db, "dim_ce") is None


def test_two_rows_of_one_version_are_refused(conn, db):
    rows = full_load("dim_ce")
    with pytest.raises(InputError, match=r"two rows share a \(key, effective_stp\)"):
        export(conn, db, "dim_ce", [*rows, rows[0]], 1)
    assert stored(conn, db, "dim_ce") == []


def test_timezone_aware_timestamps_are_stored_as_utc(conn, db):
    rows = arrow("dim_pharmacy", full_load("dim_pharmacy", 1))
    utc = rows.column("effective_stp").cast(pa.timestamp("us", tz="UTC"))
    rows = rows.set_column(rows.schema.get_field_index("effective_stp"), "effective_stp", utc)
    apply_rows(conn, schema=db, table="dim_pharmacy", rows=rows, delta_path=PATH, version=1, run_id="r")
    query = sql.SQL("SELECT effective_stp FROM {}.dim_pharmacy").format(sql.Identifier(db))
    assert conn.execute(query).fetchall() == [(T0,)]


def test_record_batches_are_taken_as_well_as_tables(conn, db):
    batches = arrow("dim_ce_npi", full_load("dim_ce_npi")).to_batches(max_chunksize=3)
    assert len(batches) == 2
    apply_rows(conn, schema=db, table="dim_ce_npi", rows=iter(batches), delta_path=PATH, version=1, run_id="r")
    assert stored(conn, db, "dim_ce_npi") == merged(full_load("dim_ce_npi"), table="dim_ce_npi")


def test_the_row_by_row_baseline_reaches_the_same_rows(conn, db):
    row_by_row_baseline(conn, db, "dim_ce", arrow("dim_ce", full_load("dim_ce")))
    row_by_row_baseline(conn, db, "dim_ce", arrow("dim_ce", changes("dim_ce")))
    assert stored(conn, db, "dim_ce") == merged(full_load("dim_ce"), changes("dim_ce"), table="dim_ce")


def test_a_connection_without_autocommit_works_too(postgres, db):
    password = postgres.password.get_secret_value()
    with psycopg.connect(postgres.dsn, password=password) as manual, export_lock(manual, db):
        export(manual, db, "dim_pharmacy", full_load("dim_pharmacy"), 1)
        assert exported_version(manual, db, "dim_pharmacy") == 1
        assert manual.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# --- export lock ----------------------------------------------------------------------------------


def hold_lock(settings, schema: str, seconds: float, held: threading.Event, pid: list[int]) -> threading.Thread:
    def run() -> None:
        with connect(settings) as other, export_lock(other, schema):
            pid.append(other.info.backend_pid)
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(10)
    return thread


def test_a_second_export_waits_for_the_first_then_proceeds(postgres, conn, pg_schema):
    held, pid = threading.Event(), []
    thread = hold_lock(postgres, pg_schema, 1.0, held, pid)
    start = time.monotonic()
    with export_lock(conn, pg_schema, timeout=10, poll=0.05):
        waited = time.monotonic() - start
    thread.join()
    assert 0.5 < waited < 5


def test_a_second_export_gives_up_after_its_timeout_naming_the_holder(postgres, conn, pg_schema):
    held, pid = threading.Event(), []
    thread = hold_lock(postgres, pg_schema, 1.5, held, pid)
    with (
        pytest.raises(ExportBusyError, match=rf"another export into schema {pg_schema} is running \(pid {pid[0]} "),
        export_lock(conn, pg_schema, timeout=0.2, poll=0.05),
    ):
        pass
    thread.join()
    with export_lock(conn, pg_schema, timeout=0):  # released by its holder
        pass


# --- settings and connection ----------------------------------------------------------------------

SECRET = "s3cr3t-Pa55word"


def test_settings_from_env_prefer_the_prefix_and_fall_back_to_libpq_variables():
    env = {
        "LAKEHOUSE_PG_HOST": "db.example.org",
        "PGHOST": "ignored",
        "PGPORT": "6432",
        "PGDATABASE": "opais",
        "PGUSER": "exporter",
        "PGPASSWORD": SECRET,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": "/etc/ssl/rds.pem",
        "LAKEHOUSE_PG_SCHEMA": "opais_340b",
    }
    settings = PostgresSettings.from_env(environ=env)
    assert (settings.host, settings.port, settings.dbname, settings.user) == (
        "db.example.org",
        6432,
        "opais",
        "exporter",
    )
    assert (settings.sslmode, settings.sslrootcert, settings.schema) == (
        "verify-full",
        "/etc/ssl/rds.pem",
        "opais_340b",
    )
    assert settings.password.get_secret_value() == SECRET
    assert SECRET not in repr(settings) + str(settings) + settings.dsn
    with pytest.raises(ConfigError, match="set LAKEHOUSE_PG_HOST or PGHOST"):
        PostgresSettings.from_env(environ={"PGDATABASE": "x", "PGUSER": "y"})


def test_settings_from_an_rds_secret():
    secret = {"username": "exporter", "password": SECRET, "engine": "postgres", "host": "h.rds.amazonaws.com"}
    secret |= {"port": 5432, "dbInstanceIdentifier": "opais"}

    class Client:
        def get_secret_value(self, SecretId: str) -> dict:
            assert SecretId == "prod/opais/pg"
            return {"SecretString": json.dumps(secret)}

    settings = PostgresSettings.from_secret("prod/opais/pg", client=Client(), sslrootcert="/rds.pem", schema="opais")
    assert (settings.host, settings.port, settings.dbname, settings.user) == (
        "h.rds.amazonaws.com",
        5432,
        "postgres",
        "exporter",
    )
    assert (settings.sslmode, settings.sslrootcert, settings.schema) == ("verify-full", "/rds.pem", "opais")
    assert settings.password.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    with pytest.raises(ConfigError, match=r"prod/opais/pg lacks \['host'\]") as error:
        PostgresSettings.from_secret_value({**secret, "host": ""}, secret_id="prod/opais/pg")
    assert SECRET not in str(error.value)


def test_a_connection_error_names_host_port_database_and_user_but_not_the_password(pg_server):
    settings = pg_server.settings(password=SECRET + "-wrong")
    with pytest.raises(PostgresConnectError) as error:
        connect(settings)
    message = str(error.value)
    assert f"127.0.0.1:{pg_server.port}, database lakehouse_test, user lakehouse_test" in message
    assert "password authentication failed" in message and "Check the user and its password" in message
    assert SECRET not in message and SECRET not in repr(error.value.__cause__)


def test_tls_settings_reach_libpq(pg_server, tmp_path):
    missing = tmp_path / "rds-global-bundle.pem"
    settings = pg_server.settings(sslmode="verify-full", sslrootcert=str(missing))
    assert "sslmode=verify-full" in settings.dsn and f"sslrootcert={missing}" in settings.dsn
    with pytest.raises(PostgresConnectError, match="Check sslmode and sslrootcert"):
        connect(settings)  # the test server speaks no TLS: libpq must insist on it
    with connect(pg_server.settings(sslmode="disable")) as plain:
        assert plain.info.get_parameters()["sslmode"] == "disable"


# --- BI views and comments --------------------------------------------------------------------------


def test_every_table_view_and_column_says_what_it_holds(conn, db):
    relations = conn.execute(
        """SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class'),
                  array(SELECT a.attname FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                          AND col_description(c.oid, a.attnum) IS NULL)
           FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
           WHERE s.nspname = %s AND c.relkind IN ('r', 'v')""",
        (db,),
    ).fetchall()
    views = {name for name, kind, _, _ in relations if kind == "v"}
    assert views == {f"{t}_live" for t in ENTITIES} | {"ce_contract_pharmacy_live"}
    assert {name for name, kind, _, _ in relations if kind == "r"} == {*ENTITIES, "lakehouse_export"}
    assert [(name, about, missing) for name, _, about, missing in relations if not about or missing] == []
    about = dict((name, text) for name, _, text, _ in relations)
    assert "change_type <> 'DELETE'" in about["dim_ce"] and "dim_ce_live" in about["dim_ce"]


def _deleted(table: str, i: int) -> list[dict]:
    """Entity i inserted at T0 and deleted at T1, as the engine exports it: a current DELETE version."""
    return [
        version(table, i, T0, expiration_stp=T1, current_version_flg="N"),
        version(table, i, T1, change_type="DELETE", _batch_id=2),
    ]


BI_QUERY = "SELECT id340b, contract_id, pharmacy_id, pharmacy_name FROM {}.ce_contract_pharmacy_live ORDER BY 1"
NAIVE_QUERY = """SELECT ce.id340b, cp.contract_id FROM {schema}.dim_ce ce
    JOIN {schema}.dim_ce_contract_pharmacy cp ON cp.id340b = ce.id340b AND cp.ce_id = ce.ce_id
    JOIN {schema}.dim_pharmacy p ON p.pharmacy_id = cp.pharmacy_id
    WHERE ce.current_version_flg = 'Y' AND cp.current_version_flg = 'Y' AND p.current_version_flg = 'Y'"""


def test_the_bi_views_leave_out_a_deleted_entity_and_a_deleted_contract(conn, db):
    # Entities 0-3 each have contract 100i with pharmacy 100i; entity 2 and the contract of entity 1 are deleted.
    export(conn, db, "dim_ce", [version("dim_ce", i, T0) for i in (0, 1, 3)] + _deleted("dim_ce", 2), 1)
    contracts = [version("dim_ce_contract_pharmacy", i, T0) for i in (0, 2, 3)]
    export(conn, db, "dim_ce_contract_pharmacy", contracts + _deleted("dim_ce_contract_pharmacy", 1), 1)
    export(conn, db, "dim_pharmacy", [version("dim_pharmacy", i, T0) for i in range(4)], 1)

    naive = conn.execute(sql.SQL(NAIVE_QUERY).format(schema=sql.Identifier(db))).fetchall()
    assert sorted(naive) == [(f"DSH{i:06d}", 1000 + i) for i in range(4)], "the flag alone returns deleted rows"
    rows = conn.execute(sql.SQL(BI_QUERY).format(sql.Identifier(db))).fetchall()
    assert rows == [(f"DSH{i:06d}", 1000 + i, 1000 + i, f"name {i}") for i in (0, 3)]
    live = conn.execute(sql.SQL("SELECT id340b FROM {}.dim_ce_live ORDER BY 1").format(sql.Identifier(db)))
    assert live.fetchall() == [(f"DSH{i:06d}",) for i in (0, 1, 3)]
    assert init_db(conn, db) and conn.execute(sql.SQL(BI_QUERY).format(sql.Identifier(db))).fetchall() == rows


def test_a_change_feed_cut_by_log_retention_is_exported_in_full(spark, tmp_path):
    """Found by review: with the log cleaned past the last exported version (no export for longer than
    `log_retention_days`), reading the change feed failed while the DataFrame was made, outside the fallback, with a
    message the fallback did not know: every later export of the table failed. Delta's cleanup deletes the commits
    before a checkpoint; so does this test."""
    from pyspark.sql import functions as F

    from lakehouse.sinks.delta_changes import changed_rows

    path = tmp_path / "history"
    for version, ids in enumerate([(0, 1), (2,), (3,), (4,)]):
        rows = spark.createDataFrame([(i, f"{i:04d}") for i in ids], "id INT, _sequence STRING")
        writer = rows.write.format("delta").mode("append")
        if version == 0:
            writer = writer.option("delta.enableChangeDataFeed", "true").option("delta.checkpointInterval", "1")
        writer.save(str(path))
    log = path / "_delta_log"
    assert (log / f"{3:020d}.checkpoint.parquet").exists()
    for version in range(3):
        (log / f"{version:020d}.json").unlink()

    def export(since: int) -> tuple[list[int], str]:
        rows, mode = changed_rows(spark, str(path), key=["id"], columns=["id", "_sequence"], since=since, until=3)
        return sorted(r.id for r in rows.select(F.col("id")).collect()), mode

    assert export(since=2) == ([4], "incremental")  # version 3 is still in the log
    assert export(since=1) == ([0, 1, 2, 3, 4], "full")  # version 2 is not


# --- full exports replace; a Delta table made again is exported in full ---------------------------------------------

SPARK_TYPES = {"effective_stp": "timestamp", "expiration_stp": "timestamp", "current_version_flg": "string"}
SPARK_TYPES |= {"change_type": "string", "_sequence": "string", "_batch_id": "bigint"}
OLD_BOOKKEEPING = """CREATE TABLE {}.lakehouse_export (
    table_name TEXT PRIMARY KEY, delta_path TEXT NOT NULL, exported_version BIGINT NOT NULL,
    rows_received BIGINT NOT NULL, rows_written BIGINT NOT NULL, exported_at TIMESTAMPTZ NOT NULL, run_id TEXT NOT NULL
)"""


def export_config(root: Path, schema: str, *, tables: dict | None = None, export: list[str] | None = None) -> Config:
    """The 340B feed's eight dimensions (and `tables`) under root/lake; `export` of them (default: the eight) into
    `schema`."""
    document = {
        "paths": {"landing": str(root / "landing"), "lake": str(root / "lake"), "checkpoints": str(root / "cp")},
        "tables": tables or {},
        "snapshots": {"opais": {"kind": "opais", "path": str(root / "landing" / "opais")}},
        "postgres": {"schema": schema, "lock_timeout_seconds": 5, "tables": export or []},
    }
    return Config.model_validate(document)


def history_of(config: Config, table: str = "dim_ce") -> str:
    return table_paths(config, config.table(table)).history


def commit_history(spark, path: str, rows: list[dict], table: str = "dim_ce") -> None:
    """One commit of history rows, MERGEd by (key..., effective_stp) as the engine's history MERGE does (change feed
    on: its updates are read from change files)."""
    from delta.tables import DeltaTable

    from lakehouse.sources.opais_load import arrow_to_spark

    frame = arrow_to_spark(spark, arrow(table, rows), ENTITIES[table].columns | SPARK_TYPES)
    if not DeltaTable.isDeltaTable(spark, path):
        frame.write.format("delta").option("delta.enableChangeDataFeed", "true").save(path)
        return
    on = " AND ".join(f"t.`{c}` = s.`{c}`" for c in [*ENTITIES[table].primary_key, "effective_stp"])
    merge = DeltaTable.forPath(spark, path).alias("t").merge(frame.alias("s"), on)
    merge.whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()


def delta_history(spark, path: str, table: str = "dim_ce") -> list[tuple]:
    """Every history row of the Delta table's newest version, as `stored` reads them from PostgreSQL."""
    names = arrow_schema(table).names
    rows = pa.Table.from_batches(to_arrow(spark.read.format("delta").load(path).select(*names))).to_pylist()
    naive = [[v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in row.values()] for row in rows]
    return sorted(map(tuple, naive))


def exported(spark, config: Config, schema: str, postgres) -> list[tuple[str, str, int | None]]:
    """(table, mode, Delta version) of each table the export did not skip."""
    results = export_postgres(spark, config, settings=dc_replace(postgres, schema=schema))
    return [(r.table, r.mode, r.to_version) for r in results if r.mode != "skipped"]


def made_again(spark, path: str, commits: int) -> None:
    """Move the table aside and make it again from a later first snapshot, in `commits` commits."""
    Path(path).rename(Path(path).with_name("history-moved-aside"))
    commit_history(spark, path, [version("dim_ce", i, T1, edit=2) for i in (0, 1, 3, 9)])
    for n in range(1, commits):
        commit_history(spark, path, [version("dim_ce", 20 + n, T1, edit=2)])


def live_keys_twice(conn, schema: str) -> list[tuple]:
    query = "SELECT id340b, ce_id FROM {}.dim_ce_live GROUP BY 1, 2 HAVING count(*) > 1"
    return conn.execute(sql.SQL(query).format(sql.Identifier(schema))).fetchall()


@pytest.mark.parametrize("commits", [2, 3], ids=["same-version", "later-version"])
def test_a_delta_table_made_again_at_a_version_not_below_the_exported_one_is_exported_in_full(
    spark, postgres, conn, pg_schema, tmp_path, commits
):
    """Found by review: a table made again was caught only at a version below the exported one. At the same version it
    was taken as up to date, above it its change feed was read from the old table's version on (rows skipped or
    mixed). The export keeps the Delta table's id with the version: another id is a full export, which replaces the
    table's rows."""
    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    commit_history(spark, path, changes("dim_ce"))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 1)]
    made_again(spark, path, commits)
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", commits - 1)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)
    assert live_keys_twice(conn, pg_schema) == []
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "up_to_date", commits - 1)]


def test_a_table_put_back_from_an_older_copy_is_refused_with_what_to_do_before_anything_is_read(
    spark, postgres, conn, pg_schema, tmp_path
):
    """The same Delta table (same id) at a version below the exported one: PostgreSQL holds changes it no longer has.
    Found by review: it was read in full and then refused in PostgreSQL on every run, saying nothing of what to do."""
    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    copy = tmp_path / "copy-at-version-0"
    shutil.copytree(path, copy)
    commit_history(spark, path, changes("dim_ce"))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 1)]
    shutil.rmtree(path)
    shutil.copytree(copy, path)  # put back: the same table id, version 0
    spark.catalog.clearCache()
    with pytest.raises(InputError, match=r"below version 1 of the same table .*DELETE FROM"):
        export_postgres(spark, config, settings=dc_replace(postgres, schema=pg_schema))


def test_deleting_a_tables_bookkeeping_row_exports_it_again_as_exactly_its_delta_history(
    spark, postgres, conn, pg_schema, tmp_path
):
    """README's way to export a table again in full (it was the remedy for a table made again at a lower version).
    Found by review: a full export only upserted, so the versions of the table made again from a later first snapshot
    were added beside the old ones, each key current twice."""
    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    commit_history(spark, path, changes("dim_ce"))
    exported(spark, config, pg_schema, postgres)
    made_again(spark, path, 1)
    delete = "DELETE FROM {}.lakehouse_export WHERE table_name = 'dim_ce'"
    conn.execute(sql.SQL(delete).format(sql.Identifier(pg_schema)))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 0)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)
    assert live_keys_twice(conn, pg_schema) == []


def test_a_bookkeeping_row_from_before_table_ids_exports_its_table_in_full_once(
    spark, postgres, conn, pg_schema, tmp_path
):
    """A database from before the table id: init_db adds the column (NULL in the rows there). Such a row cannot tell
    a table made again at its version from the one exported, so that table is exported in full, once."""
    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, [version("dim_ce", i, T1, edit=2) for i in (0, 1, 3, 9)])  # the table made again
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
    conn.execute(sql.SQL(OLD_BOOKKEEPING).format(sql.Identifier(pg_schema)))
    init_db(conn, pg_schema)
    rows = arrow("dim_ce", full_load("dim_ce"))  # what the old table held at version 0
    apply_rows(conn, schema=pg_schema, table="dim_ce", rows=rows, delta_path=path, version=0, run_id="before")
    query = sql.SQL("SELECT table_name, delta_table_id FROM {}.lakehouse_export").format(sql.Identifier(pg_schema))
    assert conn.execute(query).fetchall() == [("dim_ce", None)]

    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 0)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)
    assert conn.execute(query).fetchone()[1] is not None
    assert exported_state(conn, pg_schema, "dim_ce").delta_commit is not None
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "up_to_date", 0)]


def test_a_full_export_replaces_the_tables_rows_in_the_transaction_of_its_bookkeeping(conn, db):
    export(conn, db, "dim_ce", full_load("dim_ce"), 1)
    export(conn, db, "dim_ce", changes("dim_ce"), 2)
    later = [version("dim_ce", i, T1, edit=2) for i in (0, 1, 3, 9)]

    def crash() -> None:
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        export(conn, db, "dim_ce", later, 1, replace=True, delta_table_id="id-2", crash_hook=crash)
    assert stored(conn, db, "dim_ce") == merged(full_load("dim_ce"), changes("dim_ce"), table="dim_ce")
    assert exported_version(conn, db, "dim_ce") == 2
    # 6 versions replaced by 4: the 4 versions of T0 deleted, 2 inserted and 2 updated (0 and 9 at T1)
    assert export(conn, db, "dim_ce", later, 1, replace=True, delta_table_id="id-2") == 4 + 4
    assert stored(conn, db, "dim_ce") == merged(later, table="dim_ce")
    assert exported_state(conn, db, "dim_ce") == (1, PATH, "id-2", None)
    with pytest.raises(StaleVersionError, match="already holds version 1 of this Delta table"):
        export(conn, db, "dim_ce", full_load("dim_ce"), 0, replace=True, delta_table_id="id-2")
    assert stored(conn, db, "dim_ce") == merged(later, table="dim_ce")


# --- a new or changed column -----------------------------------------------------------------------------------------


def test_a_new_dimension_column_is_asked_for_with_its_alter_table_then_joins_the_views(conn, db, monkeypatch):
    """Found by review: the views were made before the columns were checked, so a column added to an entity failed
    with PostgreSQL's `column "region" does not exist`; once added, CREATE OR REPLACE VIEW refused a column before
    effective_stp ("cannot change name of view column"). Grants on the views outlive their making again."""
    export(conn, db, "dim_ce", full_load("dim_ce"), 1)
    conn.execute(
        sql.SQL("GRANT SELECT ON {}.dim_ce_live, {}.ce_contract_pharmacy_live TO PUBLIC").format(
            sql.Identifier(db), sql.Identifier(db)
        )
    )
    entity = ENTITIES["dim_ce"]
    columns = dict(entity.columns)
    at = list(columns).index("sub_name")
    columns = dict([*list(columns.items())[:at], ("region", "string"), *list(columns.items())[at:]])
    monkeypatch.setitem(ENTITIES, "dim_ce", dc_replace(entity, columns=columns))
    monkeypatch.setitem(COLUMNS, "region", "HRSA region of the covered entity")

    alter = f"ALTER TABLE {db}.dim_ce ADD COLUMN region TEXT"
    with pytest.raises(LakehouseError, match=rf"{db}\.dim_ce lacks columns \['region'\].*{re.escape(alter)}"):
        init_db(conn, db)
    conn.execute(alter)
    init_db(conn, db)
    view = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'dim_ce_live' "
        "ORDER BY ordinal_position",
        (db,),
    ).fetchall()
    assert [c for (c,) in view] == [*columns, "effective_stp"]
    export(conn, db, "dim_ce", full_load("dim_ce"), 2)  # the rows now carry region
    live = conn.execute(sql.SQL("SELECT region FROM {}.dim_ce_live ORDER BY 1").format(sql.Identifier(db)))
    assert live.fetchall() == [(f"region {i}",) for i in range(4)]
    grants = conn.execute(
        "SELECT c.relname, a.grantee, a.privilege_type FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace,"
        " aclexplode(c.relacl) a WHERE s.nspname = %s AND a.grantee = 0 ORDER BY 1",
        (db,),
    ).fetchall()
    assert grants == [("ce_contract_pharmacy_live", 0, "SELECT"), ("dim_ce_live", 0, "SELECT")]


def test_a_column_of_a_type_every_copy_would_refuse_is_named_with_the_statements_that_change_it(conn, db):
    """Found by review: columns were compared by name only. participating as CHAR(1) 'Y'/'N' (flags as ID304B's seed
    DDL kept them) passed init_db, then refused every export of dim_ce ("value too long for type character(1)")."""
    schema = sql.Identifier(db)
    conn.execute(sql.SQL("DROP VIEW {}.ce_contract_pharmacy_live, {}.dim_ce_live").format(schema, schema))
    conn.execute(
        sql.SQL(
            "ALTER TABLE {}.dim_ce ALTER COLUMN participating TYPE CHAR(1) USING "
            "CASE WHEN participating THEN 'Y' ELSE 'N' END"
        ).format(schema)
    )
    message = (
        rf"{db}\.dim_ce\.participating is character\(1\), where the export writes boolean values: PostgreSQL would "
        rf"refuse them.*DROP VIEW IF EXISTS {db}\.ce_contract_pharmacy_live, {db}\.dim_ce_live; "
        rf"ALTER TABLE {db}\.dim_ce ALTER COLUMN participating TYPE BOOLEAN"
    )
    with pytest.raises(LakehouseError, match=message):
        init_db(conn, db)


# --- tables the sink does not know ------------------------------------------------------------------------------------


def test_a_configured_table_the_sink_has_no_ddl_for_fails_alone_saying_what_to_do(
    spark, postgres, conn, pg_schema, tmp_path
):
    """Found by review: postgres.tables naming a table with a change feed that is no 340B dimension raised ValueError
    from the sink, which stopped the export of the tables after it and ended the job with a traceback. The
    configuration refuses it at load now (tests/test_config.py); this is the sink's own net, for a config made in code
    (model_copy does not validate)."""
    people = {"kind": "dms", "path": str(tmp_path / "landing" / "people"), "columns": {"id": "bigint"}}
    tables = {"people": {"primary_key": ["id"], "source": people, "change_feed": True}}
    config = export_config(tmp_path, pg_schema, tables=tables, export=["dim_ce"])
    postgres_target = config.postgres.model_copy(update={"tables": ["people", "dim_ce"]})  # type: ignore[union-attr]
    config = config.model_copy(update={"postgres": postgres_target})
    spark.range(3).write.format("delta").save(history_of(config, "people"))
    commit_history(spark, history_of(config), full_load("dim_ce"))
    message = (
        r"export of 1 table\(s\) failed \(exported: dim_ce\): people: postgres.tables names people, which is not one "
        r"of the 340B dimensions .* Remove it from postgres.tables"
    )
    with pytest.raises(InputError, match=message):
        export_postgres(spark, config, settings=dc_replace(postgres, schema=pg_schema))
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, history_of(config))


# --- a change feed whose files are gone -------------------------------------------------------------------------------


def test_a_change_feed_whose_files_were_vacuumed_is_exported_in_full(spark, postgres, conn, pg_schema, tmp_path):
    """VACUUM deletes the change files of versions not yet exported: the feed fails as it is read (not as it is made),
    with a java.io.FileNotFoundException; the table is exported in full instead."""
    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 0)]
    commit_history(spark, path, changes("dim_ce"))
    commit_history(spark, path, [version("dim_ce", 5, T1)])
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(check, "false")
    try:
        spark.sql(f"VACUUM delta.`{path}` RETAIN 0 HOURS")
    finally:
        spark.conf.unset(check)
    with pytest.raises(Exception) as gone:  # what Spark raises: a FileNotFoundException, known by its class
        spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 1).load(path).collect()
    assert file_missing(gone.value)
    newest = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first().version  # VACUUM commits too
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", newest)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)


def test_a_change_file_missing_on_s3_is_known_by_its_exception_not_its_text(
    spark, postgres, conn, pg_schema, tmp_path, monkeypatch
):
    """Found by review: the fallback matched error texts. S3A says 'No such file or directory: s3a://...' where the
    local file system says 'File ... does not exist': on S3 a vacuumed change file failed every export of the table.
    Spark raises the same class for both; here it carries S3A's text, as Spark 3.5 builds it for a task."""
    from py4j.protocol import Py4JJavaError

    import lakehouse.sinks.delta_changes as delta_changes

    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    exported(spark, config, pg_schema, postgres)
    commit_history(spark, path, changes("dim_ce"))
    jvm = spark.sparkContext._jvm
    missing = jvm.java.io.FileNotFoundException(f"No such file or directory: s3a://lake/dim_ce/history/{uuid4()}")
    with contextlib.suppress(Exception):  # Spark 3.5 wraps it so (Spark 4 otherwise: the plain one will do)
        missing = jvm.org.apache.spark.sql.errors.QueryExecutionErrors.readCurrentFileNotFoundError(missing)
    failure = jvm.org.apache.spark.SparkException("Job aborted due to stage failure: " + missing.toString(), missing)
    real, calls = delta_changes.to_arrow, []

    def read_once_missing(rows):
        calls.append(1)
        if len(calls) == 1:
            raise Py4JJavaError("An error occurred while calling o42.collectToPython.\n", failure)
        return real(rows)

    monkeypatch.setattr(delta_changes, "to_arrow", read_once_missing)
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 1)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)


# --- versions Delta no longer has: RESTORE, a DELETE of a day -------------------------------------------------------


def test_a_restore_of_the_history_is_exported_as_the_restored_history(spark, postgres, conn, pg_schema, tmp_path):
    """Found by review: the incremental export read only the change feed's inserts and post-images. RESTORE to the
    first day's version re-adds that day's files (inserts: entity 0's T0 version open again) and removes the second
    day's (deletes: entity 0's T1 version): PostgreSQL kept the T1 version too, entity 0 current twice."""
    from delta.tables import DeltaTable

    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 0)]
    commit_history(spark, path, changes("dim_ce"))  # a MERGE that closes versions: pre- and post-images, no deletes
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "incremental", 1)]
    DeltaTable.forPath(spark, path).restoreToVersion(0)
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 2)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)
    assert delta_history(spark, path) == merged(full_load("dim_ce"), table="dim_ce")
    assert live_keys_twice(conn, pg_schema) == []
    commit_history(spark, path, changes("dim_ce"))  # the day again: incremental as before
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "incremental", 3)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)


def test_a_days_versions_deleted_from_the_history_are_deleted_from_postgres(spark, postgres, conn, pg_schema, tmp_path):
    """A manual DELETE of a bad day's versions: the change feed holds them as deletes, which PostgreSQL must follow."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    commit_history(spark, path, changes("dim_ce"))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 1)]
    DeltaTable.forPath(spark, path).delete(F.col("effective_stp") == F.lit(T1))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 2)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "up_to_date", 2)]


@pytest.mark.parametrize("commits", [2, 3], ids=["same-version", "later-version"])
def test_a_table_put_back_from_an_older_copy_that_commits_again_past_the_exported_version_is_exported_in_full(
    spark, postgres, conn, pg_schema, tmp_path, commits
):
    """Found by review: a copy put back (the same Delta table id) was caught only while its version was below the
    exported one. Once the corrected days brought it to the exported version, the export said up_to_date and PostgreSQL
    kept the bad day for good; past it, only the versions after the exported one were read. The bookkeeping keeps a
    digest of the exported commit: another commit at that version is a full export."""
    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    copy = tmp_path / "copy-at-version-0"
    shutil.copytree(path, copy)
    commit_history(spark, path, changes("dim_ce"))  # version 1
    commit_history(spark, path, [version("dim_ce", 5, T1)])  # version 2: the bad day
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 2)]
    shutil.rmtree(path)
    shutil.copytree(copy, path)  # put back: the same table id, version 0
    spark.catalog.clearCache()
    for n in range(commits):  # the corrected days: versions 1, 2 (and 3)
        commit_history(spark, path, [version("dim_ce", 30 + n, T1, edit=3)])
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", commits)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)
    assert live_keys_twice(conn, pg_schema) == []
    commit_history(spark, path, [version("dim_ce", 40, T1)])
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "incremental", commits + 1)]
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)


def test_a_bookkeeping_row_without_a_commit_digest_is_taken_as_matching_and_gets_one(
    spark, postgres, conn, pg_schema, tmp_path
):
    """An upgrade: init_db adds delta_commit, NULL in the rows there. The export goes on incrementally (no full export
    of every table after the upgrade) and records the digest of the version it exports."""
    config = export_config(tmp_path, pg_schema)
    path = history_of(config)
    commit_history(spark, path, full_load("dim_ce"))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "full", 0)]
    forget = "UPDATE {}.lakehouse_export SET delta_commit = NULL"
    conn.execute(sql.SQL(forget).format(sql.Identifier(pg_schema)))
    commit_history(spark, path, changes("dim_ce"))
    assert exported(spark, config, pg_schema, postgres) == [("dim_ce", "incremental", 1)]
    assert exported_state(conn, pg_schema, "dim_ce").delta_commit is not None
    assert stored(conn, pg_schema, "dim_ce") == delta_history(spark, path)


# --- a failure of one table ------------------------------------------------------------------------------------------


def test_any_error_of_one_table_is_reported_and_the_others_are_exported(
    spark, postgres, conn, pg_schema, tmp_path, monkeypatch
):
    """Found by review: only a LakehouseError was reported per table; any other (a Spark or Delta failure) stopped the
    run and the tables after it were not exported."""
    import lakehouse.sinks.postgres_export as pg_export

    config = export_config(tmp_path, pg_schema, export=["dim_ce", "dim_ce_npi"])
    for table in ("dim_ce", "dim_ce_npi"):
        commit_history(spark, history_of(config, table), full_load(table), table)
    real = pg_export.export_rows

    def failing(spark, history, **kwargs):
        if history == history_of(config, "dim_ce"):
            raise RuntimeError("the executor was lost")
        return real(spark, history, **kwargs)

    monkeypatch.setattr(pg_export, "export_rows", failing)
    message = r"export of 1 table\(s\) failed \(exported: dim_ce_npi\): dim_ce: RuntimeError: the executor was lost"
    with pytest.raises(InputError, match=message):
        export_postgres(spark, config, settings=dc_replace(postgres, schema=pg_schema))
    assert stored(conn, pg_schema, "dim_ce_npi") == delta_history(spark, history_of(config, "dim_ce_npi"), "dim_ce_npi")
    assert exported_version(conn, pg_schema, "dim_ce") is None


def test_a_connection_lost_to_postgres_stops_the_run(spark, postgres, conn, pg_schema, tmp_path, monkeypatch):
    """The per-table net does not hide a lost connection: no later table could be written."""
    import lakehouse.sinks.postgres as pg_sink

    config = export_config(tmp_path, pg_schema, export=["dim_ce", "dim_ce_npi"])
    for table in ("dim_ce", "dim_ce_npi"):
        commit_history(spark, history_of(config, table), full_load(table), table)
    real, asked = pg_sink.exported_state, []

    def cut(export_conn, schema, table):
        asked.append(table)
        conn.execute("SELECT pg_terminate_backend(%s)", (export_conn.info.backend_pid,))
        return real(export_conn, schema, table)

    monkeypatch.setattr(pg_sink, "exported_state", cut)
    with pytest.raises(psycopg.OperationalError):
        export_postgres(spark, config, settings=dc_replace(postgres, schema=pg_schema))
    assert asked == ["dim_ce"]


def test_a_change_feed_range_without_change_data_is_exported_in_full(spark, tmp_path):
    """The change feed off for a version of the range (DELTA_MISSING_CHANGE_DATA): the history is read in full."""
    from lakehouse.sinks.delta_changes import export_rows

    path = str(tmp_path / "history")
    for ids in [(0, 1), (2,)]:
        rows = spark.createDataFrame([(i, f"{i:04d}") for i in ids], "id INT, _sequence STRING")
        rows.write.format("delta").mode("append").save(path)
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    spark.createDataFrame([(3, "0003")], "id INT, _sequence STRING").write.format("delta").mode("append").save(path)
    batches, mode = export_rows(spark, path, key=["id"], columns=["id", "_sequence"], since=0, until=3)
    assert (sorted(pa.Table.from_batches(batches).column("id").to_pylist()), mode) == ([0, 1, 2, 3], "full")
