"""The Athena lane (`make test-athena`): the engine's tables and the SQL users run, read by a real Trino.

Athena engine version 3 is built on Trino, and reads Delta Lake tables natively through the Glue
catalog; Trino 476's Delta Lake connector is the closest stand-in that runs here. The lane runs the
engine on the demo data (`lakehouse run`), registers every table in Trino the way deploy/terraform
registers it in Glue (same databases, names and locations, S3 buckets mapped to the local zones), and
checks that Trino reads what Spark reads, and that every "as of" query the project gives users — the one
`lakehouse run` prints, `lakehouse as-of --sql`, the Athena saved queries — answers what `lakehouse
as-of` answers.

Where Athena differs from Trino in a way this relies on (AWS Athena User Guide):
- Athena reads Delta tables only through the Glue Data Catalog, registered as in deploy/ATHENA.md
  ("Query Linux Foundation Delta Lake tables"); here `register_table` on a file metastore plays Glue.
- Athena has no Delta time travel (same page: "time travel queries are not supported"): "as of" is a
  WHERE on the history's validity columns, so nothing here uses Trino's `FOR TIMESTAMP AS OF`.
- Athena reads Delta's `timestamp` at millisecond precision ("Data types in Amazon Athena": TIMESTAMP,
  "up to a maximum resolution of milliseconds"); Trino's connector maps it to `timestamp(3) with time
  zone`, rounding the microseconds Spark writes to the nearest millisecond. Values are compared to the
  millisecond, and "as of" times are chosen at least a millisecond away from a change, except where a
  test shows the difference (`test_timestamps_are_read_to_the_millisecond`).
- Athena runs every query with the session time zone UTC ("Time zones" in the Athena engine version 3
  reference); the Trino server and client run in UTC too, so TIMESTAMP literals mean UTC, as the
  engine's validity columns do.
- Athena documents no support for deletion vectors, v2 checkpoints or other newer reader features
  (deploy/ATHENA.md); Trino 476 reads more than Athena documents, so the lane also checks every table's
  protocol against the features Athena documents (tests/delta_readers.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lakehouse.cli import main
from lakehouse.config import Config, load_config
from lakehouse.tables import table_paths
from lakehouse.timetravel import AS_OF_SQL, as_of, as_of_columns, sql_time
from tests.delta_readers import UNSUPPORTED_FEATURES, delta_tables
from tests.hcl_eval import render
from tests.terraform_values import TERRAFORM, parse_dir
from tests.test_deploy_terraform import blocks
from tests.trino_server import TrinoServer

pytestmark = pytest.mark.athena

LOCAL_YAML = Path(__file__).resolve().parents[1] / "config" / "local.yaml"
ENVIRONMENT = "prod"  # var.environment has no default; deploy/README.md's example uses prod
UTC = dt.UTC
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[athena {time.monotonic() - STARTED:6.0f}s] {message}", flush=True)


# --- rows as both engines see them -----------------------------------------------------------------


def _round_ms(micros: int) -> int:
    """Microseconds rounded half up to the millisecond, as Trino's Delta reader does (timestamp(3))."""
    return (micros + 500) // 1000 * 1000


def _spark_value(value: Any, micros: bool) -> Any:
    if micros and value is not None:
        return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=_round_ms(value))
    return value


def _trino_value(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def spark_rows(df, columns: list[str]) -> list[tuple]:
    """The rows of a Spark DataFrame, timestamps as exact UTC values (not the Python process's zone)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    types = {f.name.lower(): f.dataType for f in df.schema.fields}
    micros = [isinstance(types[c], TimestampType) for c in columns]
    selected = df.select(
        *[F.unix_micros(F.col(f"`{c}`")) if m else F.col(f"`{c}`") for c, m in zip(columns, micros, strict=True)]
    )
    return [tuple(_spark_value(v, m) for v, m in zip(row, micros, strict=True)) for row in selected.collect()]


def trino_rows(trino: TrinoServer, sql: str, columns: list[str] | None = None, schema: str | None = None) -> list:
    names, rows = trino.query(sql, schema=schema)
    if columns is not None:
        index = [names.index(c) for c in columns]
        rows = [tuple(row[i] for i in index) for row in rows]
    return [tuple(_trino_value(v) for v in row) for row in rows]


def checksum(rows: list[tuple]) -> str:
    """SHA-256 of the rows in a canonical order and form: equal for equal multisets of rows."""
    canonical = sorted(map(repr, rows))
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def assert_same_rows(what: str, trino: list[tuple], spark: list[tuple]) -> str:
    """Equal row counts and checksums, or a failure showing rows only one side has."""
    if checksum(trino) != checksum(spark):
        only_trino = sorted(set(map(repr, trino)) - set(map(repr, spark)))[:3]
        only_spark = sorted(set(map(repr, spark)) - set(map(repr, trino)))[:3]
        raise AssertionError(
            f"{what}: Trino read {len(trino)} rows, Spark {len(spark)}; only in Trino: {only_trino}; "
            f"only in Spark: {only_spark}"
        )
    return checksum(trino)


# --- the demo lake, registered as deploy/terraform registers it -------------------------------------


@dataclass
class Lake:
    config: Config
    env: dict[str, str]  # LAKEHOUSE_HOME and the masking key of the run
    run_output: str
    databases: dict[str, str]  # zone -> Glue database
    registered: dict[tuple[str, str], Path] = field(default_factory=dict)  # (database, table) -> Delta table
    not_in_glue: list[str] = field(default_factory=list)
    no_table: list[str] = field(default_factory=list)


def _quiet_run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`lakehouse ARGS` in this process (it reuses the session's Spark) with `env` set, its stdout captured."""
    logger = logging.getLogger("lakehouse")
    handlers = logger.handlers[:]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = main(["--config", str(LOCAL_YAML), *argv])
    finally:
        logger.handlers[:] = handlers
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    return code, out.getvalue()


def engine_tables(root: str | Path) -> list[Path]:
    """The history and latest tables under a zone (not quarantine, nor bookkeeping such as `_snapshots`)."""
    return [p for p in delta_tables(str(root)) if p.name in ("history", "latest") and not p.parent.name.startswith("_")]


def register(trino: TrinoServer, database: str, table: str, path: Path) -> None:
    trino.query(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
    trino.query(
        f"CALL system.register_table(schema_name => '{database}', table_name => '{table}', "
        f"table_location => '{trino.location(path)}')"
    )


@pytest.fixture(scope="module")
def lake(spark, trino: TrinoServer) -> Lake:
    env = {"LAKEHOUSE_HOME": str(trino.root / "home"), "LAKEHOUSE_MASKING_KEY": secrets.token_hex(32)}
    started = time.monotonic()
    code, output = _quiet_run(["run"], env)
    assert code == 0, output[-3000:]
    summary = output[output.index("== lakehouse run ==") :]
    log(f"`lakehouse run` on the demo data in {time.monotonic() - started:.0f}s:\n{summary}")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        config = load_config(LOCAL_YAML)
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)

    tf = parse_dir(TERRAFORM)
    database = blocks(tf, "resource")["aws_glue_catalog_database.zone"]
    assert database["name"] == "${local.catalog}_${each.key}", "update the lane to the deploy's database names"
    catalog = render(tf, "catalog", environment=ENVIRONMENT)
    buckets = render(tf, "zones", environment=ENVIRONMENT)
    roots = {"phi": Path(config.paths.lake), "nonphi": Path(config.paths.non_phi_lake)}
    assert set(buckets) == set(roots), "the deploy's zones are the engine's zones"
    result = Lake(config, env, output, {zone: f"{catalog}_{zone}" for zone in roots})

    started = time.monotonic()
    for entry in render(tf, "catalog_tables", environment=ENVIRONMENT).values():
        zone, prefix = entry["zone"], f"s3://{buckets[entry['zone']]}/"
        assert entry["location"].startswith(prefix), entry
        path = roots[zone] / entry["location"][len(prefix) :]
        if (path / "_delta_log").is_dir():
            register(trino, result.databases[zone], entry["name"], path)
            result.registered[result.databases[zone], entry["name"]] = path
        else:
            result.no_table.append(f"{result.databases[zone]}.{entry['name']}")
    for zone, root in roots.items():  # tables the engine writes that the Glue catalog misses: same scheme
        for path in engine_tables(root):
            key = (result.databases[zone], f"{path.parent.name}_{path.name}")
            if key not in result.registered:
                register(trino, *key, path)
                result.registered[key] = path
                result.not_in_glue.append(".".join(key))
    log(
        f"registered {len(result.registered)} Delta tables in Trino in {time.monotonic() - started:.0f}s "
        f"(databases {sorted(result.databases.values())}); written by the engine but not in deploy/terraform's "
        f"Glue catalog: {result.not_in_glue or 'none'}; catalog entries with no table at their location: "
        f"{result.no_table or 'none'}"
    )
    return result


# --- every table reads back --------------------------------------------------------------------------


def read_back(spark, trino: TrinoServer, database: str, table: str, path: Path) -> tuple[int, str]:
    """Read a registered table with Trino and with Spark: the same rows, or an AssertionError."""
    trino_side = trino_rows(trino, f'SELECT * FROM "{database}"."{table}"')
    df = spark.read.format("delta").load(str(path))
    columns = [c.lower() for c in df.columns]
    quoted = ", ".join(f'"{c}"' for c in columns)
    trino_side = trino_rows(trino, f'SELECT {quoted} FROM "{database}"."{table}"')
    digest = assert_same_rows(f"{database}.{table}", trino_side, spark_rows(df, columns))
    return len(trino_side), digest


def test_every_table_the_engine_writes_is_registered_as_the_deploy_registers_it(lake: Lake) -> None:
    written = {
        (lake.databases[zone], f"{p.parent.name}_{p.name}")
        for zone, root in (("phi", lake.config.paths.lake), ("nonphi", lake.config.paths.non_phi_lake))
        for p in engine_tables(root)
    }
    assert set(lake.registered) == written
    expected = {f"{t}_{k}" for t in lake.config.tables for k in ("history", "latest")}
    assert {t for _, t in lake.registered} == expected, "history and latest of every configured table"
    assert lake.not_in_glue == [], "deploy/terraform's Glue catalog misses tables the engine writes"
    assert lake.no_table == [], "a Glue table points where the engine writes nothing"


def test_every_table_reads_back_in_trino_as_spark_reads_it(spark, trino: TrinoServer, lake: Lake) -> None:
    seen: dict[str, set] = {"open end": set(), "decimal": set(), "date": set(), "non-ASCII": set(), "NULL": set()}
    for (database, table), path in sorted(lake.registered.items()):
        started = time.monotonic()
        rows, digest = read_back(spark, trino, database, table, path)
        log(
            f"{database}.{table:<34} {rows:>6} rows  sha256 {digest[:16]}  = Spark  ({time.monotonic() - started:.1f}s)"
        )
        _, sample = trino.query(f'SELECT * FROM "{database}"."{table}"')
        values = [v for row in sample for v in row]
        for kind, hit in (
            ("open end", any(isinstance(v, dt.datetime) and v.year == 9999 for v in values)),
            ("decimal", any(isinstance(v, Decimal) for v in values)),
            ("date", any(type(v) is dt.date for v in values)),
            ("non-ASCII", any(isinstance(v, str) and not v.isascii() for v in values)),
            ("NULL", None in values),
        ):
            if hit:
                seen[kind].add(table)
    partitioned = [t for t in lake.config.tables.values() if t.partition_by]
    counts = {kind: len(tables) for kind, tables in seen.items()}
    log(f"tables holding each kind of value: {counts}; partitioned: {[t.name for t in partitioned]}")
    assert all(seen.values()), seen
    assert partitioned, "the demo has a partitioned table (PECOS by state)"
    history_partitions = {
        table: spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["partitionColumns"]
        for (database, table), path in lake.registered.items()
        if database == lake.databases["phi"] and table.endswith("_history")
    }
    log(f"PHI history tables read back partitioned by _is_current: {len(history_partitions)}")
    assert history_partitions and all(cols[-1] == "_is_current" for cols in history_partitions.values())


def test_timestamps_are_read_to_the_millisecond(spark, trino: TrinoServer, lake: Lake) -> None:
    """Athena's TIMESTAMP keeps milliseconds: sub-millisecond parts of the engine's times are not visible there."""
    database = lake.databases["phi"]
    _, rows = trino.query(f'SELECT typeof(_valid_from) FROM "{database}".patients_history LIMIT 1')
    assert rows[0][0] == "timestamp(3) with time zone"
    history = spark.read.format("delta").load(str(lake.registered[database, "patients_history"]))
    rounded_up = history.selectExpr("unix_micros(_valid_from) AS m").where("m % 1000 >= 500").orderBy("m")
    at = _micros(rounded_up.first()["m"])  # a change Trino sees up to half a millisecond later
    sql = AS_OF_SQL.format(history=f'"{database}".patients_history', at=sql_time(at))
    columns = [c.lower() for c in as_of_columns(lake.config.table("patients"))]
    spark_side = spark_rows(as_of(spark, str(lake.registered[database, "patients_history"]), at), columns)
    trino_side = trino_rows(trino, sql, columns)
    assert checksum(spark_side) != checksum(trino_side)
    log(f"at {sql_time(at)}, a change's own time to the microsecond, Spark and Trino differ: Trino rounds it up")


# --- "as of" in Athena's dialect answers what `lakehouse as-of` answers -------------------------------


@dataclass
class Moment:
    label: str
    at: dt.datetime
    rows: list[tuple]  # what `lakehouse as-of` returns then (as_of), in as_of_columns order
    absent: tuple | None = None  # a key deleted at this moment


def _micros(value: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=value)


def _moments(spark, config: Config, name: str) -> list[Moment]:
    """Before the first version, inside the intervals, at an interval's exact end, at a delete, now."""
    from pyspark.sql import functions as F

    table = config.table(name)
    path = table_paths(config, table).history
    history = spark.read.format("delta").load(path)
    micros = {c: F.unix_micros(c) for c in ("_valid_from", "_valid_to")}
    exact_end = F.when(micros["_valid_to"] % 1000 == 0, micros["_valid_to"])  # Athena sees it exactly
    lo, hi, first_end = history.agg(
        F.min(micros["_valid_from"]), F.max(micros["_valid_from"]), F.min(exact_end)
    ).first()
    times = [
        ("before the first version", _micros(lo) - dt.timedelta(days=1)),
        ("inside the intervals", _micros(lo + (hi - lo) // 2).replace(microsecond=0)),
        ("at an interval's end", _micros(first_end) if first_end is not None else None),
    ]
    key = [F.col(f"`{k}`") for k in table.primary_key]
    deleted = history.where("_is_deleted").orderBy(micros["_valid_from"], *key).select(micros["_valid_from"], *key)
    delete = deleted.first()
    if delete is not None:  # a millisecond after the delete as Athena rounds its time
        times.append(("after a delete", _micros(_round_ms(delete[0]) + 1000)))
    times.append(("now", dt.datetime.now(UTC).replace(tzinfo=None, microsecond=0)))
    columns = as_of_columns(table)
    moments = []
    for label, at in times:
        if at is None:
            continue
        rows = spark_rows(as_of(spark, path, at), columns)
        absent = tuple(delete[1:]) if label == "after a delete" else None
        moments.append(Moment(label, at, rows, absent))
    return moments


@pytest.fixture(scope="module")
def moments(spark, lake: Lake) -> dict[str, list[Moment]]:
    started = time.monotonic()
    out = {name: _moments(spark, lake.config, name) for name in lake.config.tables}
    log(f"`as_of` in Spark for {sum(map(len, out.values()))} (table, time) pairs in {time.monotonic() - started:.0f}s")
    return out


def _check(trino: TrinoServer, lake: Lake, name: str, moment: Moment, sql: str, source: str) -> None:
    columns = [c.lower() for c in as_of_columns(lake.config.table(name))]
    got = trino_rows(trino, sql, columns, schema=lake.databases["phi"])
    digest = assert_same_rows(f"{source} of {name} at {moment.at} ({moment.label})", got, moment.rows)
    if moment.absent is not None:
        index = [columns.index(k.lower()) for k in lake.config.table(name).primary_key]
        keys = {tuple(row[i] for i in index) for row in got}
        assert moment.absent not in keys, f"{name}: key {moment.absent} deleted at {moment.at} is still live"
    log(
        f"{source:<14} {name:<26} {moment.label:<26} {sql_time(moment.at):<26} {len(got):>5} rows  "
        f"sha256 {digest[:12]} = lakehouse as-of"
    )


def test_the_as_of_sql_lakehouse_run_prints_runs_on_trino(trino: TrinoServer, lake: Lake, spark) -> None:
    match = re.search(
        r"As of (.+?) UTC, (\w+) had (\d+) live rows\. The same in Athena:\n(.+?)\n\n", lake.run_output, re.S
    )
    assert match, lake.run_output[-2000:]
    at, name, count, sql = dt.datetime.fromisoformat(match[1]), match[2], int(match[3]), match[4]
    log(f"the SQL `lakehouse run` printed:\n{sql}")
    table = lake.config.table(name)
    columns = [c.lower() for c in as_of_columns(table)]
    got = trino_rows(trino, sql, columns, schema=lake.databases["phi"])
    expected = spark_rows(as_of(spark, table_paths(lake.config, table).history, at), columns)
    assert len(got) == count
    _check(trino, lake, name, Moment("printed by run", at, expected), sql, "run's SQL")


def test_lakehouse_as_of_sql_answers_what_lakehouse_as_of_answers(trino: TrinoServer, lake: Lake, moments) -> None:
    for name, table_moments in moments.items():
        for moment in table_moments:
            code, sql = _quiet_run(["as-of", name, "--at", sql_time(moment.at), "--sql"], lake.env)
            assert code == 0, sql
            _check(trino, lake, name, moment, sql, "as-of --sql")
            if name == "dim_pharmacy" and moment.label == "inside the intervals":  # the README's example
                names, rows = trino.query(sql, schema=lake.databases["phi"])
                shown = "\n".join(" | ".join(str(v) for v in row[:6]) for row in rows[:3])
                log(
                    f"lakehouse as-of {name} --at '{sql_time(moment.at)}' --sql\n{sql}\n"
                    f"Trino: {len(rows)} rows; the first 3, first 6 columns:\n{' | '.join(names[:6])}\n{shown}"
                )
    labels = {m.label for ms in moments.values() for m in ms}
    assert labels == {
        "before the first version",
        "inside the intervals",
        "at an interval's end",
        "after a delete",
        "now",
    }


def test_the_cli_counts_what_trino_counts(trino: TrinoServer, lake: Lake, moments) -> None:
    for name in ("patients", "dim_ce", "pecos_clinicians"):
        for moment in moments[name]:
            code, output = _quiet_run(["as-of", name, "--at", sql_time(moment.at), "--limit", "1"], lake.env)
            assert code == 0, output
            count = int(re.search(r"\(UTC\): (\d+) rows", output)[1])
            assert count == len(moment.rows), (name, moment.label, count)


def test_the_deploys_saved_athena_queries_answer_what_lakehouse_as_of_answers(
    trino: TrinoServer, lake: Lake, moments
) -> None:
    tf = parse_dir(TERRAFORM)
    queries = render(tf, "as_of_queries", environment=ENVIRONMENT)
    placeholder = f"TIMESTAMP '{render(tf, 'as_of', environment=ENVIRONMENT)}'"
    named = blocks(tf, "resource")["aws_athena_named_query.as_of"]
    assert named["query"] == "${each.value}" and named["for_each"] == "${local.as_of_queries}"
    assert set(queries) <= set(lake.config.tables)
    for name, saved in sorted(queries.items()):
        assert saved.count(placeholder) >= 2, saved
        for moment in moments[name]:  # the user edits the timestamp, as the query's first line says
            _check(
                trino,
                lake,
                name,
                moment,
                saved.replace(placeholder, f"TIMESTAMP '{sql_time(moment.at)}'"),
                "saved query",
            )


# --- the lane fails on what Athena or Trino cannot read ------------------------------------------------


def assert_athena_documents_the_protocol(path: Path) -> None:
    """The table's protocol uses only what Athena's Delta reader documents (deploy/ATHENA.md)."""
    from deltalake import DeltaTable

    protocol = DeltaTable(str(path)).protocol()
    features = set(protocol.reader_features or []) | set(protocol.writer_features or [])
    assert protocol.min_reader_version <= 3, f"{path}: reader version {protocol.min_reader_version}"
    assert not features & UNSUPPORTED_FEATURES, f"{path}: {sorted(features & UNSUPPORTED_FEATURES)}"


def test_no_table_uses_a_feature_athena_does_not_document(lake: Lake) -> None:
    for path in lake.registered.values():
        assert_athena_documents_the_protocol(path)


def _throwaway(spark, trino: TrinoServer, name: str, properties: dict[str, str]) -> Path:
    path = trino.root / "throwaway" / name
    options = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
    spark.sql(f"CREATE TABLE delta.`{path}` (id BIGINT, name STRING) USING delta TBLPROPERTIES ({options})")
    spark.sql(f"INSERT INTO delta.`{path}` VALUES (1, 'Zoë'), (2, 'José'), (3, 'Núñez')")
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id = 2")
    return path


def test_deletion_vectors_fail_the_lane(spark, trino: TrinoServer, lake: Lake) -> None:
    """Trino 476 reads deletion vectors, Athena documents no support for them: the protocol check fails the lane."""
    path = _throwaway(spark, trino, "deletion_vectors", {"delta.enableDeletionVectors": "true"})
    assert any(p.name.startswith("deletion_vector") for p in path.iterdir()), "the DELETE wrote a deletion vector"
    register(trino, "lakehouse_throwaway", "deletion_vectors", path)
    rows, _ = read_back(spark, trino, "lakehouse_throwaway", "deletion_vectors", path)
    assert rows == 2
    with pytest.raises(AssertionError, match="deletionVectors") as failure:
        assert_athena_documents_the_protocol(path)
    log(f"a table with deletion vectors: Trino reads it ({rows} rows = Spark), the lane fails it: {failure.value}")


# A reader feature of the Delta protocol that a newer writer sets (Delta 4's shredded variants) and that
# Trino 476 does not implement. Spark 3.5 / Delta 3.3 cannot write one of Trino's unknown reader features:
# every one it can write (deletion vectors, v2 checkpoints, column mapping, timestampNtz, type widening
# preview, vacuum protocol check) Trino 476 reads; so the newer writer's protocol commit is written here.
# Trino registers such a table but then hides it: every query says the table does not exist.
UNKNOWN_READER_FEATURE = "variantShredding-preview"


def test_a_protocol_trino_cannot_read_fails_the_lane(spark, trino: TrinoServer, lake: Lake) -> None:
    path = _throwaway(spark, trino, "newer_protocol", {"delta.enableDeletionVectors": "false"})
    log_dir = path / "_delta_log"
    version = max(int(p.stem) for p in log_dir.glob("*.json")) + 1
    protocol = {
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": [UNKNOWN_READER_FEATURE],
        "writerFeatures": [UNKNOWN_READER_FEATURE, "appendOnly", "invariants"],
    }
    (log_dir / f"{version:020d}.json").write_text(json.dumps({"protocol": protocol}) + "\n")
    from trino.exceptions import TrinoUserError

    register(trino, "lakehouse_throwaway", "newer_protocol", path)
    with pytest.raises(TrinoUserError, match="TABLE_NOT_FOUND") as failure:
        read_back(spark, trino, "lakehouse_throwaway", "newer_protocol", path)
    log(f"a table whose protocol needs {UNKNOWN_READER_FEATURE}: the lane fails: {str(failure.value)[:300]}")
