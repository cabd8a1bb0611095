"""lakehouse: AWS DMS change files and daily snapshots into Delta history (SCD2) and latest (SCD1).

The public face is small; everything else is internal:

    from lakehouse import load_config, build_spark, run_once, as_of
"""

from lakehouse.config import Config, TableConfig, load_config
from lakehouse.errors import ConfigError, InputError, LakehouseError


def build_spark(*args, **kwargs):
    """Build the SparkSession (see `lakehouse.session.build_spark`)."""
    from lakehouse.session import build_spark as _build

    return _build(*args, **kwargs)


def run_once(*args, **kwargs):
    """Apply everything that has landed (see `lakehouse.runner.run_once`)."""
    from lakehouse.runner import run_once as _run

    return _run(*args, **kwargs)


def as_of(*args, **kwargs):
    """Rows live at a time, from history (see `lakehouse.timetravel.as_of`)."""
    from lakehouse.timetravel import as_of as _as_of

    return _as_of(*args, **kwargs)


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
]
