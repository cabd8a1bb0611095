"""Consent withdrawn: remove a patient's rows from the non-PHI zone physically, and record that it was done.

A Delta DELETE rewrites the files that held the rows (deletion vectors are off, so the rows are not
merely hidden); the old files stay readable by time travel until VACUUM removes them after the
retention period, which `vacuum_hours` runs right away. The record (`<non_phi_lake>/_privacy/forgotten`)
holds the patient's pseudonym, never the id. Later changes of the patient stop flowing once the
policy says so: the flags come from the policy snapshot.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.apply.non_phi import NonPhiZone
from lakehouse.config import Config
from lakehouse.masking import pseudonym

log = logging.getLogger("lakehouse.privacy")

FORGOTTEN_DDL = "patient STRING, tables STRING, rows_removed BIGINT, vacuumed BOOLEAN, forgotten_at TIMESTAMP"


@dataclass
class Forgotten:
    """What `forget_patient` removed."""

    patient: str  # the pseudonym
    rows: dict[str, int] = field(default_factory=dict)
    vacuumed: bool = False


def _deleted_rows(table: DeltaTable) -> int:
    metrics = table.history(1).select("operation", "operationMetrics").first()
    if metrics is None or metrics["operation"] != "DELETE":
        return 0
    return int((metrics["operationMetrics"] or {}).get("numDeletedRows", 0))


def forget_patient(
    spark: SparkSession, config: Config, zone: NonPhiZone, patient_id: str, *, vacuum_hours: float | None = None
) -> Forgotten:
    """Delete every row of `patient_id` from the zone's history and latest tables; optionally VACUUM them."""
    result = Forgotten(patient=pseudonym(patient_id, zone.key))
    for table in config.tables.values():
        if not table.non_phi or table.consent is None:
            continue
        column = table.consent.patient_column
        masked = table.phi_columns.get(column) == "pseudonym"
        value = F.lit(result.patient) if masked else F.lit(patient_id).cast(table.columns[column])
        for kind, path in (("history", zone.history(table)), ("latest", zone.latest(table))):
            if not DeltaTable.isDeltaTable(spark, path):
                continue
            delta = DeltaTable.forPath(spark, path)
            delta.delete(F.col(f"`{column}`") == value)
            result.rows[f"{table.name}.{kind}"] = _deleted_rows(delta)
            if vacuum_hours is not None:
                delta.vacuum(vacuum_hours)
    result.vacuumed = vacuum_hours is not None
    record = spark.createDataFrame(
        [
            (
                result.patient,
                json.dumps(result.rows, sort_keys=True),
                sum(result.rows.values()),
                result.vacuumed,
                datetime.now(UTC).replace(tzinfo=None),
            )
        ],
        FORGOTTEN_DDL,
    )
    record.write.format("delta").mode("append").save(f"{zone.root.rstrip('/')}/_privacy/forgotten")
    log.info(json.dumps({"event": "patient_forgotten", "patient": result.patient, "rows": result.rows}))
    return result
