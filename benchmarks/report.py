"""A benchmark's result file: `benchmarks/results/<name>-<date>.json`, with the machine it ran on."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def save_report(name: str, params: dict, **results: object) -> Path:
    """Write the report of benchmark `name` (its parameters and results, the date, cores and load); return its path."""
    report = {
        "benchmark": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "params": params,
        **results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {path}")
    return path
