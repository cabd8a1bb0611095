"""A steady feed of DMS CDC files for the demo's devices table, as a live DMS task would write them.

Used by the soak benchmark and the maintenance tests: every file updates `rows` devices of the demo
(status or firmware changes, the other columns as they are), with commit times from the wall clock
and an increasing change-seq, in the layout of `config/local.yaml`. A file is written beside the
landing folder and renamed into it, so the stream never sees half a file.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lakehouse.demo import COLUMNS

STATUSES = ("active", "active", "active", "in_repair", "returned")
FIRMWARE = ("5.0.3", "5.1.0", "5.1.1", "5.2.0")


@dataclass
class DevicesFeed:
    """Writes CDC files of updates to `devices` (rows: device column -> value, as in the latest table)."""

    folder: Path
    devices: list[dict[str, str | None]]
    seed: int = 11
    sequence: int = 10**12  # above every change-seq of the demo's own files
    written: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("the feed needs the devices to update: apply the demo's devices table first")
        self.rng = random.Random(self.seed)
        self.folder.mkdir(parents=True, exist_ok=True)

    def land(self, rows: int, *, exclude_patients: frozenset[str] = frozenset()) -> Path:
        """Write one CDC file of `rows` updates into the folder now; return its path."""
        now = datetime.now(UTC).replace(tzinfo=None)
        choices = [d for d in self.devices if str(d.get("patient_id")) not in exclude_patients]
        records = []
        for device in self.rng.sample(choices, min(rows, len(choices))):
            change = self.rng.choice(("status", "firmware_version"))
            device[change] = self.rng.choice(STATUSES if change == "status" else FIRMWARE)
            self.sequence += self.rng.randint(1, 9)
            row = {**device, "dms_commit_ts": f"{now:%Y-%m-%d %H:%M:%S.%f}", "dms_change_seq": f"{self.sequence:035d}"}
            records.append(["U", *[row.get(c) for c in COLUMNS["devices"]]])
        self.written += 1
        name = f"{now:%Y%m%d-%H%M%S%f}-{self.written:06d}.csv"
        staging = self.folder.parent / f".{self.folder.name}-{name}"
        with staging.open("w", encoding="utf-8", newline="") as out:
            csv.writer(out, lineterminator="\n").writerows(records)
        target = self.folder / name
        os.replace(staging, target)
        return target


def devices_of(spark: object, latest_path: str) -> list[dict[str, str | None]]:
    """The devices of a latest table as the feed needs them: every layout column as text (NULL as None)."""
    from pyspark.sql import functions as F

    columns = [c for c in COLUMNS["devices"] if c not in ("dms_commit_ts", "dms_change_seq")]
    frame = spark.read.format("delta").load(latest_path)  # type: ignore[attr-defined]
    rows = frame.select(*[F.col(c).cast("string").alias(c) for c in columns]).collect()
    return [row.asDict() for row in rows]
