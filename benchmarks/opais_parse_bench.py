"""OPAIS parse benchmark: the streaming parser next to json.load of the same export.

What is measured
    A full-size synthetic OPAIS export (`lakehouse.sources.opais_synth`, bare JSON, by default 90,000
    entities with 5 contract pharmacies each on average) is generated once into a cache folder and reused.
    Each method then runs in a fresh Python process, one after the other, so that peak memory is its own:

      naive     `json.load` of the whole file, then a naive flatten into lists of row dicts of the eight
                tables (datetimes parsed, no keys, no dedup) and `pa.Table.from_pylist`: what a first
                script does;
      items     ijson's `items` over coveredEntities with the C backend and nothing else: the read floor
                of any streaming parser;
      parse_one `parse_export(parts=1)`: the standard library's C decoder one entity at a time, checks, keys,
                dedup, pharmacy conflicts, Arrow tables, in one process;
      parse     `parse_export` as the engine runs it: a large export is flattened by one process per core,
                each decoding and flattening the entities of one byte range of the file.

    The child reports wall seconds, CPU seconds and its peak RSS (`ru_maxrss`), and the RSS after its
    imports (the floor of an empty Python with pyarrow loaded). For parse, CPU seconds include its worker
    processes, and peak RSS adds the largest worker's peak to the child's (an upper bound of the sum).

How to read it
    MB/s       JSON megabytes (10^6 bytes) per wall second.
    peak MB    the child's peak resident memory (floor MB: after its imports; out MB: the Arrow tables it
               returns). json.load holds the whole document as Python objects, several times the file;
               parse holds the output tables, up to chunk_rows pending rows per table and the winning
               attributes of each pharmacy, whatever the file size.
    /parse     method figure / parse figure: below 1 the method is faster, or smaller.
    The machine may be shared: CPU seconds are steadier than wall seconds there.

Run (writes benchmarks/results/opais-parse-<date>.json):
    python -m benchmarks.opais_parse_bench                            # 90,000 entities x 5 contracts: 263 MB
    python -m benchmarks.opais_parse_bench --contracts-per-entity 3   # 198 MB, the real export's size
    python -m benchmarks.opais_parse_bench --entities 5000            # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

METHODS = ("naive", "items", "parse_one", "parse")
RESULTS = Path(__file__).parent / "results"
CACHE = Path(tempfile.gettempdir()) / "lakehouse-bench"


# --- the export -----------------------------------------------------------------------------------------


def export_file(cache: Path, entities: int, contracts: float, seed: int) -> tuple[Path, dict]:
    """The synthetic export for these arguments and this generator: generated once, then reused (a sidecar
    marks it complete; the generator's source hash is in the name, so a changed generator writes a new file)."""
    from lakehouse.sources import opais_synth

    version = hashlib.sha256(Path(opais_synth.__file__).read_bytes()).hexdigest()[:8]
    path = cache / f"opais-{entities}-{contracts:g}-s{seed}-{version}.json"
    sidecar = path.with_suffix(".stats.json")
    if path.exists() and sidecar.exists():
        print(f"reusing {path}", flush=True)
        return path, json.loads(sidecar.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    print(f"generating {path} ({entities:,} entities) ...", flush=True)
    stats = opais_synth.write_export(path, entities=entities, contracts_per_entity=contracts, seed=seed)
    figures = {k: getattr(stats, k) for k in ("entities", "contracts", "json_bytes", "seconds")}
    sidecar.write_text(json.dumps(figures))
    print(f"  {stats.json_bytes / 1e6:.1f} MB, {stats.contracts:,} contracts, in {stats.seconds:.1f} s", flush=True)
    return path, figures


# --- the methods (run in the child) ----------------------------------------------------------------------


def naive(path: Path) -> dict[str, int]:
    """json.load, then a flatten anyone would write first: row dicts per table, then Arrow tables."""
    import pyarrow as pa

    from lakehouse.sources.opais import SCHEMAS
    from lakehouse.sources.opais_flatten import CHILD_ARRAYS, ONE_CHILD, SOURCES

    with path.open("rb") as f:
        document = json.load(f)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SCHEMAS}
    for entity in document["coveredEntities"]:
        parent = {"id340b": entity["id340B"], "ce_id": entity["ceId"]}
        out["dim_ce"].append(parent | naive_row(entity, SOURCES["dim_ce"]))
        for name, key in ONE_CHILD.items():
            if entity.get(key):
                out[name].append(parent | naive_row(entity[key], SOURCES[name]))
        for name, key in CHILD_ARRAYS.items():
            out[name] += [parent | naive_row(child, SOURCES[name]) for child in entity.get(key) or []]
        for contract in entity.get("contractPharmacies") or []:
            out["dim_ce_contract_pharmacy"].append(parent | naive_row(contract, SOURCES["dim_ce_contract_pharmacy"]))
            pharmacy = {"pharmacy_id": contract["pharmacyId"]} | naive_row(contract, SOURCES["dim_pharmacy"])
            out["dim_pharmacy"].append(pharmacy)
    tables = {name: pa.Table.from_pylist(rows, schema=SCHEMAS[name]) for name, rows in out.items()}
    return {name: table.num_rows for name, table in tables.items()} | {"output_mb": output_mb(tables)}


def naive_row(obj: dict[str, Any], sources: dict[str, Any]) -> dict[str, Any]:
    """Columns by name; dates parsed, participating as a bool, numbers in text columns as text."""
    row = {}
    for column, source in sources.items():
        value = obj.get(source) if isinstance(source, str) else (obj.get(source[0]) or {}).get(source[1])
        if isinstance(value, str) and column.endswith("_date"):
            value = dt.datetime.fromisoformat(value)
        elif column == "participating" and value is not None:
            value = value.upper() == "TRUE"
        elif isinstance(value, int) and not isinstance(value, bool) and not column.endswith("_id"):
            value = str(value)
        row[column] = value
    return row


def items(path: Path) -> dict[str, int]:
    import ijson

    with path.open("rb") as f:
        count = sum(1 for _ in ijson.get_backend("yajl2_c").items(f, "coveredEntities.item"))
    return {"entities": count}


def parse(path: Path, parts: int | None = None) -> dict[str, int]:
    from lakehouse.sources.opais import parse_export

    parsed = parse_export(path, parts=parts)
    return parsed.stats.rows | {"output_mb": output_mb(parsed.tables)}


def parse_one(path: Path) -> dict[str, int]:
    return parse(path, parts=1)


def output_mb(tables: dict[str, Any]) -> float:
    """Megabytes (2^20) of the Arrow tables a method returns: memory any method must hold at the end."""
    return round(sum(table.nbytes for table in tables.values()) / 2**20, 1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(method: str, path: Path) -> None:
    """Run one method in this (fresh) process and print its figures as one JSON line."""
    import pyarrow  # noqa: F401  (loaded before the floor is read, as every method uses it)

    import lakehouse.sources.opais  # noqa: F401

    floor = peak_rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    rows = {"naive": naive, "items": items, "parse_one": parse_one, "parse": parse}[method](path)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = {
        "seconds": time.perf_counter() - wall,
        # this process and its workers (parse runs one per core for a large export)
        "cpu_seconds": time.process_time() - cpu + workers.ru_utime + workers.ru_stime,
        # its peak plus the largest worker's, as if they had peaked together
        "peak_rss_mb": peak_rss_mb() + workers.ru_maxrss / 1024,
        "worker_peak_rss_mb": workers.ru_maxrss / 1024,
    }
    print(json.dumps(figures | {"floor_rss_mb": floor, "rows": rows}))


# --- the parent -------------------------------------------------------------------------------------------


def run_child(method: str, path: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.opais_parse_bench", "--child", method, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(path: Path, json_bytes: int, repeat: int) -> dict[str, dict[str, Any]]:
    """Per method, the fastest of `repeat` runs (peak RSS: the largest)."""
    results: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        runs = []
        for _ in range(repeat):
            runs.append(run_child(method, path))
            print(f"  {method}: {runs[-1]['seconds']:.1f} s, peak {runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
        best = min(runs, key=lambda r: r["seconds"])
        best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        best["mb_per_s"] = json_bytes / 1e6 / best["seconds"]
        results[method] = {k: round(v, 3) if isinstance(v, float) else v for k, v in best.items()}
    base = results["parse"]
    for figures in results.values():
        figures["x_parse"] = {k: round(figures[k] / base[k], 2) for k in ("seconds", "cpu_seconds", "peak_rss_mb")}
    return results


def machine() -> dict[str, Any]:
    import ijson

    return {
        "cores": os.cpu_count(),
        "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ijson": metadata.version("ijson"),
        "ijson_backend": ijson.backend,
        "pyarrow": metadata.version("pyarrow"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def print_table(results: dict[str, dict[str, Any]], json_bytes: int) -> None:
    print(f"\n== OPAIS parse: {json_bytes / 1e6:.1f} MB of JSON (/parse = method figure / parse figure) ==")
    heads = ("seconds", "cpu s", "MB/s", "peak MB", "floor MB", "out MB", "s /parse", "cpu /parse", "peak /parse")
    print(f"{'method':>8}" + "".join(f"{h:>12}" for h in heads))
    for method, r in results.items():
        x = r["x_parse"]
        cells = [f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}", f"{r['mb_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}"]
        cells += [
            f"{r['floor_rss_mb']:.0f}",
            str(r["rows"].get("output_mb", "-")),
            f"{x['seconds']:.2f}",
            f"{x['cpu_seconds']:.2f}",
            f"{x['peak_rss_mb']:.2f}",
        ]
        print(f"{method:>8}" + "".join(f"{c:>12}" for c in cells))


def save(report: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"opais-parse-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--entities", type=int, default=90_000, help="entities in the synthetic export")
    parser.add_argument("--contracts-per-entity", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per method (the fastest counts)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the export is kept (default {CACHE})")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.entities < 1 or args.repeat < 1:
        parser.error("--entities and --repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    path, export = export_file(args.cache, args.entities, args.contracts_per_entity, args.seed)
    results = measure(path, export["json_bytes"], args.repeat)
    report = {
        "benchmark": "opais-parse",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": {"entities": args.entities, "contracts_per_entity": args.contracts_per_entity, "seed": args.seed},
        "export": export | {"file": str(path)},
        "results": results,
    }
    print_table(results, export["json_bytes"])
    print(f"\nwritten to {save(report)}")


if __name__ == "__main__":
    main()
