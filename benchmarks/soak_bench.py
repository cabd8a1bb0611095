"""Soak benchmark: the real stream for --minutes with CDC files landing at a steady rate; does it stay flat?

What is measured
    The demo's devices table (consent flags, the non-PHI zone: five Delta tables per batch) after its full
    load and demo CDC, then `run_stream` (the processing-time stream `lakehouse stream --table devices`
    runs) in this process while a CDC file of --rate x --file-seconds updates lands every --file-seconds
    (seeded: the same landing schedule for every run). Every minute it samples: the batches of the minute
    (seconds, lag = age of a batch's oldest file at its start, files and rows), the end-to-end lag (age of
    the oldest landed file not yet applied), the driver JVM's and the Python driver's resident memory
    (and the Python workers'), data files per table (current version and Parquet files on disk), and the
    size of the checkpoint and of each `_delta_log`. At the end, --burst files land at once and the time
    to drain them gives the changes per second the stream sustains with full batches.

    `--maintenance both` (the default) runs the soak twice, each in its own process and at the same time
    (`--sequential`: one after the other): maintenance off (compaction none, no VACUUM) and on (the shipped
    `maintenance:` settings), on the same landing schedule, and plots them side by side.

Run (writes benchmarks/results/soak-<date>.json and soak-<date>-<series>.png):
    python -m benchmarks.soak_bench --minutes 30 --rate 17
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SERIES = {  # series -> (title, unit, keys of one sample)
    "batch_seconds": ("seconds per batch (writes + maintenance), mean of the minute", "s", ["batch_seconds"]),
    "lag": ("lag: age of the oldest file not yet applied / of a batch's oldest file", "s", ["lag", "batch_lag"]),
    "memory": ("resident memory", "MB", ["jvm_rss_mb", "python_rss_mb", "workers_rss_mb"]),
    "files": ("data files in the current version, per table", "files", ["files"]),
    "storage": ("checkpoint and _delta_log size", "MB", ["checkpoint_mb", "delta_log_mb"]),
}


def _read(path: Path) -> str:
    """The file's text, or "" if it went since it was listed (a Python worker ended): gone, not a failed sample."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        return path.read_text(errors="ignore")
    return ""


def _rss_mb(pid: int) -> float:
    for line in _read(Path(f"/proc/{pid}/status")).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []
    return [int(kid) for task in tasks for kid in _read(task / "children").split()]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for kid in _children(todo.pop()):
            found.append(kid)
            todo.append(kid)
    return found


def _size(path: Path) -> tuple[float, int]:
    """MB and number of the files under `path`; a file VACUUM deletes while this walks is left out."""
    sizes = []
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                sizes.append(os.stat(os.path.join(root, name)).st_size)
    return sum(sizes) / 1e6, len(sizes)


def _parquet_files(path: str) -> int:
    return sum(name.endswith(".parquet") for _, _, names in os.walk(path) for name in names)


def _sample(spark, tables: dict[str, str], checkpoint: Path, jvm_pid: int) -> dict:
    from lakehouse.maintenance import file_count

    workers = [p for p in _descendants(jvm_pid) if "python" in _read(Path(f"/proc/{p}/cmdline"))]
    logs = {name: _size(Path(path) / "_delta_log") for name, path in tables.items()}
    checkpoint_mb, checkpoint_files = _size(checkpoint)
    return {
        "jvm_rss_mb": round(_rss_mb(jvm_pid), 1),
        "python_rss_mb": round(_rss_mb(os.getpid()), 1),
        "workers_rss_mb": round(sum(_rss_mb(p) for p in workers), 1),
        "files": {name: file_count(spark, path) for name, path in tables.items()},
        "parquet_on_disk": {name: _parquet_files(path) for name, path in tables.items()},
        "checkpoint_mb": round(checkpoint_mb, 3),
        "checkpoint_files": checkpoint_files,
        "source_log_mb": round(_size(checkpoint / "sources")[0], 3),
        "delta_log_mb": {name: round(mb, 3) for name, (mb, _) in logs.items()},
        "delta_log_files": {name: n for name, (_, n) in logs.items()},
    }


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 3) if values else None


def _minute(batches: list[dict], since: int, landed: list[float], applied_files: int, now: float) -> dict:
    new = batches[since:]
    oldest_waiting = landed[applied_files] if applied_files < len(landed) else None
    return {
        "batches": len(new),
        "batch_seconds": _mean([b["seconds"] + b["maintenance_seconds"] for b in new]),
        "apply_seconds": _mean([b["seconds"] for b in new]),
        "maintenance_seconds": round(sum(b["maintenance_seconds"] for b in new), 3),
        "batch_lag": _mean([b["lag_seconds"] for b in new if b["lag_seconds"] is not None]),
        "batch_files": _mean([b["files"] for b in new]),
        "rows": sum(b["rows_read"] for b in new),
        "lag": round(now - oldest_waiting, 3) if oldest_waiting is not None else 0.0,
        "files_waiting": len(landed) - applied_files,
    }


def run_one(args: argparse.Namespace, maintenance: bool) -> dict:
    """One soak in this process; returns its samples."""
    from benchmarks.compaction_bench import delta_tables, demo_config
    from lakehouse.demo import generate
    from lakehouse.demo_feed import DevicesFeed, devices_of
    from lakehouse.runner import TableRun, run_once, run_stream
    from lakehouse.session import build_spark

    os.environ.setdefault("LAKEHOUSE_MASKING_KEY", secrets.token_hex(32))
    home = Path(tempfile.mkdtemp(prefix=f"soak-{'on' if maintenance else 'off'}-"))
    generate(home / "landing", patients=args.patients, days=1)
    settings = {} if maintenance else {"compaction": {"method": "none"}, "vacuum": {"enabled": False}}
    config = demo_config(home, maintenance=settings, max_files_per_trigger=args.max_files_per_trigger)
    config = config.model_copy(update={"stream": config.stream.model_copy(update={"trigger_seconds": args.trigger})})
    spark = build_spark(config, app_name=f"soak-{'on' if maintenance else 'off'}")
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    run_once(spark, config, ["consents", "devices"])
    tables = delta_tables(config)
    feed = DevicesFeed(home / "landing/dms/cpap/devices", devices_of(spark, tables["latest"]), seed=args.seed)
    checkpoint = Path(config.paths.checkpoints) / "devices"
    stop = threading.Event()
    runs: list[TableRun] = []
    records = BatchRecords()
    logging.getLogger("lakehouse.metrics").addHandler(records)
    logging.getLogger("lakehouse.metrics").setLevel(logging.INFO)
    stream = threading.Thread(target=lambda: runs.extend(run_stream(spark, config, ["devices"], stop)), daemon=True)
    stream.start()
    landed: list[float] = []
    samples, seen, rows = [], 0, round(args.rate * args.file_seconds)
    started = time.time()
    next_file, next_sample = started, started + 60
    while time.time() < started + args.minutes * 60:
        now = time.time()
        if now >= next_file:
            feed.land(rows)
            landed.append(time.time())
            next_file += args.file_seconds
        if now >= next_sample:
            batches = list(records.batches)
            applied = sum(b["files"] for b in batches)
            sample = {"minute": round((now - started) / 60, 2), **_minute(batches, seen, landed, applied, now)}
            sample |= _sample(spark, tables, checkpoint, jvm_pid)
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            seen, next_sample = len(batches), next_sample + 60
        time.sleep(max(0.0, min(next_file, next_sample) - time.time()))
    burst = _burst(feed, records, landed, args.burst, rows) if args.burst else None
    stop.set()
    stream.join(timeout=300)
    errors = [r.error for r in runs if r.error]
    shutil.rmtree(home, ignore_errors=True)
    return {"maintenance": maintenance, "samples": samples, "burst": burst, "errors": errors}


def _burst(feed, records: BatchRecords, landed: list[float], files: int, rows: int) -> dict:
    """Land `files` files at once after the soak; the time until all are applied gives the sustained changes/s."""
    while records.files() < len(landed):
        time.sleep(0.5)
    before = len(records.batches)
    start = time.time()
    for _ in range(files):
        feed.land(rows)
        landed.append(time.time())
    while records.files() < len(landed):
        time.sleep(0.2)
    seconds = time.time() - start
    batches = records.batches[before:]
    return {
        "files": files,
        "changes": files * rows,
        "seconds": round(seconds, 1),
        "changes_per_second": round(files * rows / seconds, 1),
        "batches": len(batches),
        "max_batch_files": max(b["files"] for b in batches),
    }


class BatchRecords(logging.Handler):
    """The batch records the stream logs (logger `lakehouse.metrics`), as dicts, in the order they come."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.batches: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(record.getMessage())
        if line.get("event") == "batch":
            self.batches.append(line)

    def files(self) -> int:
        return sum(b["files"] for b in self.batches)


def summary(run: dict, warmup: float, window: float) -> dict:
    """First `window` minutes after `warmup` against the last `window`: ratios of means (flat: within 1.2x)."""
    samples = run["samples"]
    end = samples[-1]["minute"]
    first = [s for s in samples if warmup < s["minute"] <= warmup + window]
    last = [s for s in samples if s["minute"] > end - window]

    def mean(group: list[dict], key: str) -> float | None:
        values = [s[key] for s in group if s.get(key) is not None]
        return round(statistics.mean(values), 3) if values else None

    out = {}
    for key in ("batch_seconds", "lag", "batch_lag", "jvm_rss_mb", "python_rss_mb", "workers_rss_mb"):
        a, b = mean(first, key), mean(last, key)
        out[key] = {"first": a, "last": b, "ratio": round(b / a, 3) if a and b is not None else None}
    out["max_files"] = {t: max(s["files"][t] for s in samples) for t in samples[0]["files"]}
    out["end_files"] = samples[-1]["files"]
    out["changes_per_second_applied"] = round(sum(s["rows"] for s in samples) / (end * 60), 2)
    return out


def plot(runs: dict[str, dict], prefix: Path) -> list[Path]:
    """One PNG per series, maintenance off and on side by side on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    styles = {"off": "tab:red", "on": "tab:blue"}
    for series, (title, unit, keys) in SERIES.items():
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for name, run in runs.items():
            minutes = [s["minute"] for s in run["samples"]]
            for key in keys:
                values = [s.get(key) for s in run["samples"]]
                if values and isinstance(values[0], dict):
                    for table in values[0]:
                        ax.plot(minutes, [v[table] for v in values], color=styles[name],
                                label=f"{name}: {table}", linestyle=_dash(table))  # fmt: skip
                else:
                    ax.plot(minutes, [v if v is not None else float("nan") for v in values], color=styles[name],
                            label=f"{name}: {key}", linestyle=_dash(key))  # fmt: skip
        ax.set(title=f"soak: {title}", xlabel="minute", ylabel=unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        out = prefix.with_name(f"{prefix.name}-{series}.png")
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


def _dash(key: str) -> str:
    return {"latest": "--", "non_phi.history": "-.", "non_phi.latest": ":", "batch_lag": "--",
            "python_rss_mb": "--", "workers_rss_mb": ":"}.get(key, "-")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=17, help="changes per second landing")
    parser.add_argument("--file-seconds", type=float, default=3, help="a CDC file lands every this many seconds")
    parser.add_argument("--trigger", type=float, default=5, help="the stream's trigger_seconds")
    parser.add_argument("--max-files-per-trigger", type=int, default=200)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200, help="files landed at once at the end (0: none)")
    parser.add_argument("--warmup", type=float, default=5, help="minutes left out of the flatness ratios")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--maintenance", choices=["off", "on", "both"], default="both")
    parser.add_argument("--sequential", action="store_true", help="off, then on (default: both at once)")
    parser.add_argument("--out", type=Path, help="(one run) write its JSON here")
    args = parser.parse_args()
    if args.maintenance != "both":
        result = run_one(args, args.maintenance == "on")
        (args.out or RESULTS / f"soak-{args.maintenance}.json").write_text(json.dumps(result, indent=1))
        return
    runs, loads = {}, {}
    work = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    argv = [a for a in sys.argv[1:] if a not in ("--sequential", "--maintenance", "both")]
    processes = {}
    for name in ("off", "on"):  # each in its own process: memory is the run's own
        loads[name] = {"before": os.getloadavg()}
        cmd = [sys.executable, "-m", "benchmarks.soak_bench", *argv, "--maintenance", name, "--out", str(work / name)]
        processes[name] = subprocess.Popen(cmd)
        if args.sequential:
            processes[name].wait()
    for name, process in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"the soak with maintenance {name} failed (exit {process.returncode})")
        loads[name]["after"] = os.getloadavg()
        runs[name] = json.loads((work / name).read_text())
    window = min(10.0, (args.minutes - args.warmup) / 2)
    date = dt.date.today().isoformat()
    report = {
        "benchmark": "soak",
        "date": date,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": loads},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "window_minutes": window,
        "summary": {name: summary(run, args.warmup, window) for name, run in runs.items()},
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    prefix = RESULTS / f"soak-{date}"
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    pngs = plot(runs, prefix)
    print(json.dumps(report["summary"], indent=1))
    print(f"wrote {prefix.with_suffix('.json')} and {len(pngs)} plots")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
