"""The policy build job: the consent source table's latest rows → the policy table in its store."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from lakehouse.config import Config, PolicySettings
from lakehouse.errors import ConfigError, TableNotFoundError
from lakehouse.policy.build import build_policy
from lakehouse.policy.snapshot import PolicySnapshot, policy_rows
from lakehouse.policy.store import DynamoDbPolicyStore, LocalPolicyStore, PolicyStore, WriteStats
from lakehouse.tables import table_paths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("lakehouse.policy")


def policy_store(settings: PolicySettings) -> PolicyStore:
    """The configured store: a local file for the embedded default, DynamoDB on AWS."""
    if settings.store == "local":
        return LocalPolicyStore(settings.local_path)
    return DynamoDbPolicyStore.connect(settings.dynamodb_table, region=settings.region)


def policy_snapshot(config: Config) -> PolicySnapshot | None:
    """A snapshot of the policy refreshed on the configured interval; None without a `policy:` section."""
    if config.policy is None:
        return None
    return PolicySnapshot(policy_store(config.policy), refresh_seconds=config.policy.refresh_seconds)


def build_policy_table(spark: SparkSession, config: Config) -> WriteStats:
    """Derive the policy from the source table's latest rows and write it to the store (idempotent)."""
    from delta.tables import DeltaTable

    settings = config.policy
    if settings is None:
        raise ConfigError("no `policy:` section in the configuration", file=config.source_file)
    latest = table_paths(config, config.table(settings.source_table)).latest
    if not DeltaTable.isDeltaTable(spark, latest):
        raise TableNotFoundError(
            f"the consent source table {settings.source_table} has not been applied yet ({latest}): "
            f"run `lakehouse run --table {settings.source_table}` first"
        )
    policy = build_policy(
        spark.read.format("delta").load(latest),
        patient_col=settings.patient_column,
        device_col=settings.device_column,
        allowed_col=settings.allowed_column,
        date_col=settings.date_column,
    )
    stats = policy_store(settings).write(policy_rows(policy))
    log.info(json.dumps({"event": "policy_build", "store": settings.store, "rows": stats.rows}))
    return stats
