"""lakehouse: AWS DMS change files and daily snapshots into Delta history (SCD2) and latest (SCD1).

The public face is small; everything else is internal:

    from lakehouse import load_config, build_spark, run_once, as_of

    config = load_config("config/local.yaml")
    spark = build_spark(config)
    runs = run_once(spark, config)              # apply what has landed, table by table
    rows = as_of(spark, "<lake>/patients/history", datetime(2026, 3, 2))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from lakehouse.config import Config, TableConfig, load_config
from lakehouse.errors import ConfigError, InputError, LakehouseError

# Imported on first use: pyspark is an optional dependency (a cluster provides it).
_LAZY = {
    "build_spark": "lakehouse.session",
    "run_once": "lakehouse.runner",
    "run_stream": "lakehouse.runner",
    "as_of": "lakehouse.timetravel",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lakehouse' has no attribute {name!r}")


__all__ = [
    "Config",
    "ConfigError",
    "InputError",
    "LakehouseError",
    "TableConfig",
    "as_of",
    "build_spark",
    "load_config",
    "run_once",
    "run_stream",
]
