"""The policy build job: the consent source table's latest rows → the policy table in its store."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

from lakehouse.config import Config, PolicySettings
from lakehouse.errors import ConfigError, TableNotFoundError
from lakehouse.pending import local_path, table_version
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


def _built_from(config: Config) -> str | None:
    """A local file naming the consent table version the stored policy was built from (None: not local)."""
    root = local_path(config.paths.checkpoints)
    return None if root is None else str(root / "_policy" / "built_from_version")


def policy_is_current(config: Config) -> bool:
    """Whether the stored policy was built from the consent source table as it is now (told without Spark)."""
    marker = _built_from(config)
    if config.policy is None or marker is None or not os.path.isfile(marker):
        return False
    latest = table_paths(config, config.table(config.policy.source_table)).latest
    with open(marker) as f:
        return f.read().strip() == str(table_version(latest))


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
    # The build reads the version its marker will name (a consent committed meanwhile makes a later build).
    version = table_version(latest)
    reader = spark.read.format("delta")
    policy = build_policy(
        (reader if version is None else reader.option("versionAsOf", version)).load(latest),
        patient_col=settings.patient_column,
        device_col=settings.device_column,
        allowed_col=settings.allowed_column,
        date_col=settings.date_column,
    )
    # The build is the whole policy: a key it no longer has (its consent records deleted at the source) leaves.
    stats = policy_store(settings).replace(policy_rows(policy))
    log.info(
        json.dumps({"event": "policy_build", "store": settings.store, "rows": stats.rows, "removed": stats.deleted})
    )
    marker = _built_from(config)
    if marker is not None and version is not None:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w") as f:
            f.write(f"{version}\n")
    return stats
