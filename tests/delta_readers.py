"""Every Delta table the engine writes must be readable by other engines (DESIGN rule 6): checked with delta-rs."""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable

# What Athena's Delta reader documents (deploy/ATHENA.md): reader protocol up to 3, no deletion vectors.
UNSUPPORTED_FEATURES = {"deletionVectors", "v2Checkpoint", "typeWidening", "typeWidening-preview", "clustering"}


def delta_tables(root: str) -> list[Path]:
    """Every Delta table under `root` (a folder with a `_delta_log`)."""
    return sorted(log.parent for log in Path(root).rglob("_delta_log"))


def assert_readable_by_delta_rs(spark, root: str) -> int:
    """Read every table under `root` with delta-rs; rows and protocol must suit Athena. Returns the table count."""
    tables = delta_tables(root)
    for path in tables:
        table = DeltaTable(str(path))
        protocol = table.protocol()
        features = set(protocol.reader_features or []) | set(protocol.writer_features or [])
        assert protocol.min_reader_version <= 3, (path, protocol)
        assert not features & UNSUPPORTED_FEATURES, (path, features)
        rows = table.to_pyarrow_table().num_rows
        assert rows == spark.read.format("delta").load(str(path)).count(), path
    return len(tables)
