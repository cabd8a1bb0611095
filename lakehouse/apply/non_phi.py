"""The non-PHI zone: history and latest with only consented rows and every PHI column masked (DESIGN rule 5).

It is written from the same history plan as the PHI zone, after it: the post-state of every version
the batch touched (new versions and the existing ones it re-closed or kept), filtered by consent and
masked, is merged in by (masked key, sequence). That makes the write idempotent and self-healing: a
batch replayed after a crash between the zones brings the non-PHI zone to the same state.
Its root is separate from the PHI lake (its own bucket on AWS); nothing else is written there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.apply.latest import LATEST_META, merge_latest
from lakehouse.config import Config, TableConfig
from lakehouse.masking import MaskingKey, mask_columns
from lakehouse.policy.build import FLAG_COL
from lakehouse.tables import (
    META_COLUMNS,
    derived_history_columns,
    history_ddl,
    history_properties,
    latest_ddl,
    latest_properties,
    schema_of,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class NonPhiZone:
    """Where the non-PHI zone is, the key its pseudonyms are made with, and whether it takes consented rows only."""

    root: str
    key: MaskingKey
    consented_only: bool = True

    def history(self, table: TableConfig) -> str:
        return f"{self.root.rstrip('/')}/{table.name}/history"

    def latest(self, table: TableConfig) -> str:
        return f"{self.root.rstrip('/')}/{table.name}/latest"


def non_phi_zone(config: Config) -> NonPhiZone | None:
    """The zone of `config`, with its key loaded; None if no table goes there. No key → ConfigError."""
    if not config.paths.non_phi_lake or not any(t.non_phi for t in config.tables.values()):
        return None
    from lakehouse.secrets import masking_key

    privacy = config.privacy
    key = masking_key(env_var=privacy.key_env_var, secret_id=privacy.key_secret_id, json_field=privacy.key_json_field)
    return NonPhiZone(root=config.paths.non_phi_lake, key=key, consented_only=privacy.consented_only)


def _masked_schema(spark: SparkSession, ddl: str, table: TableConfig, key: MaskingKey):
    return mask_columns(spark.createDataFrame([], schema_of(spark, ddl)), table.phi_columns, key=key).schema


def ensure_non_phi_tables(spark: SparkSession, table: TableConfig, zone: NonPhiZone) -> None:
    """Create the zone's history and latest tables, with the masked columns' types, if absent."""
    from delta.tables import DeltaTable

    for path, ddl, properties in (
        (zone.history(table), history_ddl(table), history_properties(table)),
        (zone.latest(table), latest_ddl(table), latest_properties(table)),
    ):
        builder = (
            DeltaTable.createIfNotExists(spark).location(path).addColumns(_masked_schema(spark, ddl, table, zone.key))
        )
        for key, value in properties.items():
            builder = builder.property(key, value)
        builder.execute()


def _allowed(rows: DataFrame, zone: NonPhiZone) -> DataFrame:
    if zone.consented_only:
        return rows.where(F.col(FLAG_COL) == 1)
    return rows


def write_non_phi(plan: DataFrame, *, table: TableConfig, zone: NonPhiZone) -> None:
    """Merge the consented, masked post-state of the versions in `plan` into the zone's history and latest."""
    from delta.tables import DeltaTable

    spark = plan.sparkSession
    business = list(table.columns)
    derived = derived_history_columns(table)
    versions = _allowed(plan.where(F.col("_existing") | (F.col("_action") == "insert")), zone)
    history_columns = [*business, *META_COLUMNS]
    source = versions.select(
        *[F.col(f"`{c}`") for c in history_columns], *[F.expr(e).alias(n) for n, e in derived.items()]
    )
    masked = mask_columns(source, table.phi_columns, key=zone.key)
    on = " AND ".join([f"t.`{k}` <=> s.`{k}`" for k in table.primary_key] + ["t._sequence = s._sequence"])
    reclosed = ["_valid_to", "_is_current", *derived]
    (
        DeltaTable.forPath(spark, zone.history(table))
        .alias("t")
        .merge(masked.alias("s"), on)
        .whenMatchedUpdate(
            condition="NOT (t._valid_to <=> s._valid_to) OR NOT (t._is_current <=> s._is_current)",
            set={f"`{c}`": f"s.`{c}`" for c in reclosed},
        )
        .whenNotMatchedInsertAll()
        .execute()
    )
    latest_columns = [*business, *LATEST_META]
    current = mask_columns(
        versions.where(F.col("_is_current")).select(*[F.col(f"`{c}`") for c in latest_columns]),
        table.phi_columns,
        key=zone.key,
    )
    merge_latest(
        DeltaTable.forPath(spark, zone.latest(table)),
        current,
        key=table.primary_key,
        columns=latest_columns,
        nullable=table.nullable_key,
    )
