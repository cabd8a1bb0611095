"""PostgreSQL export benchmark: bulk `apply_rows` next to ID304B's row-by-row upsert, 340B dimensions at full size.

What is measured
    Synthetic history rows shaped like the eight 340B dimensions at full size (--scale 1: 90k covered
    entities, 450k contract pharmacy rows, 30k pharmacies and the other children, ~1M rows in all; the
    columns and types of `arrow_schema`) are exported into a fresh PostgreSQL server started like the
    tests' fixture, but with PostgreSQL's durable defaults (fsync and synchronous_commit on), since
    commit costs are what separates the methods:

      bulk full     `apply_rows` of every table into empty tables: COPY into a temporary table, one
                    INSERT ... ON CONFLICT, bookkeeping; one transaction per table;
      bulk 1%       `apply_rows` of the next Delta version: 1% of the keys of every table changed, i.e.
                    their open version closed (expiration, flag N) plus a new open version;
      row-by-row    `row_by_row_baseline`, ID304B's way: per row a SELECT by key, then an INSERT or
                    UPDATE committed on its own; on the full-load rows of a random sample of --sample
                    covered entities (their children, contracts and contracted pharmacies), extrapolated
                    per entity to the whole table;
      copy          (--copy-compare) the COPY into the staging table alone, for the contract table:
                    Arrow's CSV writer (what `apply_rows` does) against psycopg's `write_row` per row.

How to read it
    ms/entity     seconds / covered entities (--scale 1: 90,000), the unit ID304B paid per entity.
    row-by-row s  the row-by-row sample's time extrapolated: per entity to the full load, per row to the
                  changed rows (an old-style job that knew which rows changed; ID304B visited every entity
                  every day, so it paid more).
    x             row-by-row s / bulk s: how many times slower the old way is on the same rows.
    The server runs on this machine (loopback TCP, ~0.05 ms per round trip); against RDS in a VPC a round
    trip costs ~0.3-1 ms, which row-by-row pays twice per row and bulk a handful of times per table.
    Other processes on a shared machine move the figures by tens of percent: the load average is recorded.

Run (writes benchmarks/results/pg-export-<date>.json):
    python -m benchmarks.pg_export_bench                          # full size, 2,000-entity sample
    python -m benchmarks.pg_export_bench --scale 0.02 --sample 100   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from lakehouse.sinks.postgres import apply_rows, arrow_schema, connect, init_db, row_by_row_baseline
from lakehouse.sinks.postgres.load import _batches, _copy_csv
from lakehouse.sources.opais_entities import ENTITIES
from tests.pg_server import start_server

RESULTS = Path(__file__).parent / "results"
SIZES = {  # rows at --scale 1, after the real export's orders of magnitude
    "dim_ce": 90_000,
    "dim_ce_medicaid": 60_000,
    "dim_ce_npi": 120_000,
    "dim_ce_street_address": 90_000,
    "dim_ce_billing_address": 90_000,
    "dim_ce_shipping_address": 110_000,
    "dim_ce_contract_pharmacy": 450_000,
    "dim_pharmacy": 30_000,
}
ONE_PER_ENTITY = {"dim_ce", "dim_ce_street_address", "dim_ce_billing_address"}
T0, T1 = dt.datetime(2026, 3, 1, 6, 0), dt.datetime(2026, 3, 2, 6, 0)
OPEN = dt.datetime(9999, 12, 31, 23, 59, 59)
STATES = ["AL", "AK", "AZ", "CA", "CO", "FL", "GA", "NY", "PR", "TX", "VA", "WA", "GU", "VI"]


# --- rows -----------------------------------------------------------------------------------------


def synthesize(
    table: str, n: int, entities: int, pharmacies: int, rng: np.random.Generator
) -> tuple[pa.Table, np.ndarray]:
    """n full-load history rows of `table` and, per row, the covered entity (or pharmacy) it belongs to."""
    if table == "dim_pharmacy":
        owner = np.arange(n)
    elif table in ONE_PER_ENTITY:
        owner = np.arange(n) % entities
    else:
        owner = np.sort(rng.integers(0, entities, n))
    pharmacy = rng.integers(0, pharmacies, n)
    rows = np.arange(n)
    columns: dict[str, pa.Array] = {}
    for name, spark_type in ENTITIES[table].columns.items():
        if name == "id340b":
            columns[name] = pa.array([f"DSH{e:06d}" for e in owner])
        elif name == "ce_id":
            columns[name] = pa.array(owner + 1_000_000)
        elif name == "pharmacy_id":
            columns[name] = pa.array((owner if table == "dim_pharmacy" else pharmacy) + 1)
        elif name == "contract_id":
            columns[name] = pa.array(rows + 1)
        elif name == "content_key":
            columns[name] = pa.array([hashlib.sha256(f"{table}:{i}".encode()).hexdigest() for i in rows])
        elif name == "state":
            columns[name] = pa.array(np.array(STATES)[rng.integers(0, len(STATES), n)])
        elif name in ("zip", "zip4", "npi_number"):
            digits = {"zip": 5, "zip4": 4, "npi_number": 10}[name]
            columns[name] = pa.array([f"{v:0{digits}d}" for v in rng.integers(0, 10**digits, n)])
        elif spark_type == "bigint":
            columns[name] = pa.array(rng.integers(1, 10**9, n))
        elif spark_type == "boolean":
            columns[name] = pa.array(rng.random(n) < 0.9)
        elif spark_type == "timestamp":
            days = rng.integers(0, 8000, n).astype("timedelta64[D]")
            columns[name] = pa.array(np.datetime64(T0, "us") - days, pa.timestamp("us"))
        else:
            text = pa.array([f"{name.replace('_', ' ')} of row {i} {'x' * (i % 17)}" for i in rows])
            columns[name] = pc.if_else(pa.array(rng.random(n) < 0.1), pa.nulls(n, pa.string()), text)
    columns |= {
        "effective_stp": pa.array(np.full(n, np.datetime64(T0, "us")), pa.timestamp("us")),
        "expiration_stp": pa.array(np.full(n, np.datetime64(OPEN, "us")), pa.timestamp("us")),
        "current_version_flg": pa.array(["Y"] * n),
        "change_type": pa.array(["INSERT"] * n),
        "_sequence": pa.array([f"20260301-{i:012d}" for i in rows]),
        "_batch_id": pa.array(np.ones(n, dtype=np.int64)),
    }
    return pa.table(columns, schema=arrow_schema(table)), owner


def changed(full: pa.Table, table: str, fraction: float, rng: np.random.Generator) -> pa.Table:
    """The next version's rows: `fraction` of the keys get their version closed plus a new, edited one."""
    picked = pa.array(np.sort(rng.choice(full.num_rows, max(1, int(full.num_rows * fraction)), replace=False)))
    old, new = full.take(picked), full.take(picked)
    n = len(picked)
    old = _set(old, expiration_stp=pa.array([T1] * n, pa.timestamp("us")), current_version_flg=pa.array(["N"] * n))
    edits = {
        "effective_stp": pa.array([T1] * n, pa.timestamp("us")),
        "change_type": pa.array(["UPDATE"] * n),
        "_sequence": pa.array([f"20260302-{i:012d}" for i in range(n)]),
        "_batch_id": pa.array(np.full(n, 2, dtype=np.int64)),
    }
    keys = ENTITIES[table].primary_key
    editable = [
        f.name
        for f in full.schema
        if f.type == pa.string() and f.name not in keys and f.name in ENTITIES[table].columns
    ]
    if editable and editable[-1] not in ("state", "zip", "zip4", "npi_number"):
        edits[editable[-1]] = pc.binary_join_element_wise(new.column(editable[-1]), pa.scalar("v2"), " ")
    return pa.concat_tables([old, _set(new, **edits)])


def _set(table: pa.Table, **columns: pa.Array) -> pa.Table:
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table


# --- measurements ---------------------------------------------------------------------------------


def bulk(conn, schema: str, tables: dict[str, pa.Table], version: int) -> dict[str, float]:
    seconds = {}
    for name, rows in tables.items():
        start = time.perf_counter()
        apply_rows(conn, schema=schema, table=name, rows=rows, delta_path=f"bench/{name}", version=version, run_id="b")
        seconds[name] = round(time.perf_counter() - start, 3)
        print(f"    {name:26} {rows.num_rows:>9,} rows {seconds[name]:8.2f} s", flush=True)
    return seconds


def sample_rows(
    tables: dict[str, pa.Table], owners: dict[str, np.ndarray], entities: np.ndarray
) -> dict[str, pa.Table]:
    """The full-load rows of `entities`: theirs, their children's, and the pharmacies their contracts name."""
    picked = {}
    for name, rows in tables.items():
        if name != "dim_pharmacy":
            picked[name] = rows.filter(pa.array(np.isin(owners[name], entities)))
    pharmacies = pc.unique(picked["dim_ce_contract_pharmacy"].column("pharmacy_id"))
    picked["dim_pharmacy"] = tables["dim_pharmacy"].filter(
        pc.is_in(tables["dim_pharmacy"].column("pharmacy_id"), pharmacies)
    )
    return picked


def copy_compare(conn, schema: str, rows: pa.Table, table: str) -> dict[str, float]:
    """Seconds to COPY `rows` into a staging table: Arrow CSV (the sink's way) and psycopg write_row."""
    columns = rows.column_names
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    out = {}
    for method in ("arrow_csv", "write_row"):
        with conn.transaction(), conn.cursor() as cur:
            stage = sql.Identifier(f"bench_{method}")
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                    stage, names, sql.Identifier(schema, table)
                )
            )
            start = time.perf_counter()
            if method == "arrow_csv":
                _copy_csv(cur, stage, columns, _batches(rows, columns, table))
            else:
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, names)) as copy:
                    for batch in rows.to_batches(max_chunksize=50_000):
                        for row in zip(*(batch.column(c).to_pylist() for c in columns), strict=True):
                            copy.write_row(row)
            out[method] = round(time.perf_counter() - start, 3)
        print(f"    copy {method:10} {rows.num_rows:,} rows {out[method]:8.2f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes (default 1)")
    parser.add_argument("--sample", type=int, default=2000, help="covered entities for the row-by-row run")
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of keys changed (default 0.01)")
    parser.add_argument("--copy-compare", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    rng = np.random.default_rng(340)
    sizes = {name: max(10, int(n * args.scale)) for name, n in SIZES.items()}
    entities, pharmacies = sizes["dim_ce"], sizes["dim_pharmacy"]

    print(f"synthesizing {sum(sizes.values()):,} rows ...", flush=True)
    built = {name: synthesize(name, n, entities, pharmacies, rng) for name, n in sizes.items()}
    full = {name: rows for name, (rows, _) in built.items()}
    owners = {name: owner for name, (_, owner) in built.items()}
    changes = {name: changed(rows, name, args.changed, rng) for name, rows in full.items()}
    sample = np.sort(rng.choice(entities, min(args.sample, entities), replace=False))
    few = sample_rows(full, owners, sample)

    load_at_start = os.getloadavg()
    server = start_server(durable=True)
    try:
        with connect(server.settings()) as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
            for schema in ("bulk", "rowwise"):
                init_db(conn, schema)
            print("bulk full load:", flush=True)
            full_s = bulk(conn, "bulk", full, 1)
            print(f"bulk {args.changed:.0%} changed:", flush=True)
            change_s = bulk(conn, "bulk", changes, 2)
            print(f"row-by-row, {len(sample):,} entities, {sum(t.num_rows for t in few.values()):,} rows:", flush=True)
            start = time.perf_counter()
            for name, rows in few.items():
                row_by_row_baseline(conn, "rowwise", name, rows, version=1)
            rowwise_s = time.perf_counter() - start
            copies = (
                copy_compare(conn, "bulk", full["dim_ce_contract_pharmacy"], "dim_ce_contract_pharmacy")
                if args.copy_compare
                else {}
            )
    finally:
        server.stop()

    measured = {"full": full_s, "changed": change_s, "rowwise": rowwise_s, "copy": copies, "postgres": pg_version}
    measured["load"] = {"start": load_at_start, "end": os.getloadavg()}
    report(args, sizes, {"full": full, "changed": changes, "sample": few}, len(sample), measured)


def report(args, sizes: dict[str, int], rows: dict[str, dict[str, pa.Table]], sampled: int, measured: dict) -> None:
    """Print the side-by-side table and write the JSON result."""
    count = {name: sum(t.num_rows for t in tables.values()) for name, tables in rows.items()}
    entities = sizes["dim_ce"]
    per_entity, per_row = measured["rowwise"] / sampled, measured["rowwise"] / count["sample"]
    workloads = {
        "full_load": (count["full"], sum(measured["full"].values()), per_entity * entities),
        "changed": (count["changed"], sum(measured["changed"].values()), per_row * count["changed"]),
    }
    print(f"\nrow-by-row sample: {sampled:,} entities, {count['sample']:,} rows, {measured['rowwise']:.1f} s:")
    print(f"  {per_entity * 1000:.2f} ms per entity, {per_row * 1000:.2f} ms per row")
    print(f"\n{'workload':14} {'rows':>10} {'bulk s':>9} {'ms/entity':>10} {'row-by-row s':>13} {'x':>7}")
    for name, (n, bulk_s, rowwise_s) in workloads.items():
        label = "full load" if name == "full_load" else f"{args.changed:.0%} changed"
        ms = bulk_s / entities * 1000
        print(f"{label:14} {n:>10,} {bulk_s:9.2f} {ms:10.3f} {rowwise_s:13.1f} {rowwise_s / bulk_s:7.1f}")
    print("  (row-by-row extrapolated: full load per entity, changed rows per row)")
    copies = measured["copy"]
    if copies:
        csv, one_by_one = copies["arrow_csv"], copies["write_row"]
        n = rows["full"]["dim_ce_contract_pharmacy"].num_rows
        print(f"COPY of {n:,} contract rows: Arrow CSV {csv:.2f} s, write_row {one_by_one:.2f} s")
    result = {
        "benchmark": "pg-export",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": measured["postgres"],
            "psycopg": metadata.version("psycopg"),
            "pyarrow": pa.__version__,
            "server": "local, loopback TCP, fsync on, synchronous_commit on",
            "load_average_1_5_15": {when: [round(x, 2) for x in avg] for when, avg in measured["load"].items()},
        },
        "params": {"scale": args.scale, "sizes": sizes, "changed": args.changed, "sample_entities": sampled},
        "results": {
            name: {
                "rows": n,
                "bulk_seconds": round(bulk_s, 3),
                "bulk_ms_per_entity": round(bulk_s / entities * 1000, 3),
                "row_by_row_seconds_extrapolated": round(rowwise_s, 1),
                "row_by_row_over_bulk": round(rowwise_s / bulk_s, 1),
                "bulk_seconds_per_table": measured["full" if name == "full_load" else "changed"],
            }
            for name, (n, bulk_s, rowwise_s) in workloads.items()
        }
        | {
            "row_by_row_sample": {
                "entities": sampled,
                "rows": count["sample"],
                "seconds": round(measured["rowwise"], 3),
                "ms_per_entity": round(per_entity * 1000, 3),
                "ms_per_row": round(per_row * 1000, 3),
            },
            "copy_contract_rows_seconds": copies,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"pg-export-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
