"""DMS CSV parse benchmark: what each executor task does with a change file, without Spark around it.

What is measured
    One CDC file in the apply benchmark's PEOPLE layout (`--rows` changes: updates, deletes and inserts,
    shuffled) is parsed by `dms_files.parse_file` and cut into the pandas frames `parse_files` hands to
    Spark (`CHUNK_ROWS` rows each), as `mapInPandas` does on an executor. A large file is parsed whole, by
    one task on one core (that is what keeps every DMS quirk exact), so this is the floor of a big batch.
    CPU seconds of this process (steadier than wall seconds on a shared machine), the best of `--repeat`.

    `--trees A B` runs the same measure on two checkouts, alternately (A B A B ...), each in its own Python
    process: "before" and "after" side by side under the same load.

Run (writes benchmarks/results/dms-parse-<date>.json):
    python -m benchmarks.dms_parse_bench                                # this checkout, 200,000 changes
    python -m benchmarks.dms_parse_bench --trees /tmp/base . --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
RESULTS = HERE / "benchmarks" / "results"


def child(rows: int, repeat: int) -> dict:
    """Parse one generated file `repeat` times in this process (the checkout it was started in)."""
    import pandas as pd

    from benchmarks.apply_bench import Batch, write_cdc_file
    from lakehouse.sources import dms_files
    from lakehouse.sources.dms import CHUNK_ROWS, parsed_schema
    from tests.dms_tables import people_config

    folder = Path(tempfile.mkdtemp(prefix="dms-parse-"))
    write_cdc_file(folder, Batch(size=10 * rows, changes=rows))
    path = next(folder.iterdir())
    content = path.read_bytes()
    source = people_config(folder / "lake").tables["people"].source
    names = parsed_schema(source).fieldNames()
    best: dict[str, float] = {}
    for _ in range(repeat):
        started = time.process_time()
        parsed = list(dms_files.parse_file(str(path), content, source))
        parse = time.process_time() - started
        frames = [
            pd.DataFrame.from_records(parsed[i : i + CHUNK_ROWS], columns=names)
            for i in range(0, len(parsed), CHUNK_ROWS)
        ]
        total = time.process_time() - started
        if not best or total < best["cpu_seconds"]:
            best = {"parse_seconds": parse, "cpu_seconds": total, "rows": sum(len(f) for f in frames)}
    return best | {"file_mb": len(content) / 1e6, "module": dms_files.__file__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="changes in the file")
    parser.add_argument("--repeat", type=int, default=3, help="parses per process (the best is kept)")
    parser.add_argument("--rounds", type=int, default=1, help="processes per checkout")
    parser.add_argument("--trees", type=Path, nargs="+", default=[HERE], help="checkouts to measure, alternately")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.rows, args.repeat)))
        return
    from benchmarks import trees

    script = Path(__file__).resolve()
    options = ["--rows", str(args.rows), "--repeat", str(args.repeat)]
    profiles = trees.alternate(args.trees, args.rounds, lambda tree: trees.run_child(script, tree, options))
    summary = {}
    for tree, runs in profiles.items():
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        summary[tree] = {"cpu_seconds_p50": round(cpu, 3), "rows_per_cpu_second": round(runs[0]["rows"] / cpu)}
        print(f"{tree}: {cpu:.2f} CPU s for {runs[0]['rows']:,} rows ({summary[tree]['rows_per_cpu_second']:,}/s)")
    first = summary[str(args.trees[0])]["cpu_seconds_p50"]
    for figures in summary.values():
        figures["x_first"] = round(first / figures["cpu_seconds_p50"], 2)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"dms-parse-{dt.date.today()}.json"
    record = {"benchmark": "dms-parse", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    record |= {"params": vars(args) | {"trees": [str(t) for t in args.trees]}, "summary": summary}
    record["profiles"] = profiles
    out.write_text(json.dumps(record, indent=1, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
