"""How far behind the stream is: the lag a batch reports, and an alarm watches.

The lag of a micro-batch is the age, when the batch starts, of the oldest file in it: the wall clock at
the start of the batch minus that file's modification time (when it landed). The file source takes the
oldest unprocessed files first (`latestFirst` false, at most `max_files_per_trigger` per batch), so the
oldest file of a batch is the oldest file still waiting when it starts. A stream that keeps up has a lag
of about one trigger interval plus the previous batch's time; a lag that grows batch after batch means
files land faster than batches finish even at `max_files_per_trigger` files a batch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def batch_file_stats(files: DataFrame) -> tuple[datetime | None, int]:
    """The modification time (UTC) of the oldest file of a batch of `binaryFile` rows (None for no files), and the
    batch's bytes.

    Only the files' metadata is read (the binary file source reads no content for these columns).
    """
    from pyspark.sql import functions as F

    # As epoch microseconds: a collected timestamp would be shifted into the Python process's local zone.
    micros, size = files.agg(F.unix_micros(F.min("modificationTime")), F.sum("length")).first()
    return (datetime.fromtimestamp(micros / 1e6, tz=UTC) if micros is not None else None), int(size or 0)


def lag_seconds(started: datetime, oldest: datetime | None) -> float | None:
    """The batch's lag: seconds from the landing of its oldest file to its start (never negative)."""
    if oldest is None:
        return None
    return round(max(0.0, (started - oldest).total_seconds()), 3)
