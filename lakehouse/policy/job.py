"""The policy build job: the consent source table's latest rows → the policy table in its store."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

from lakehouse.config import Config, PolicySettings
from lakehouse.delta_log import table_state
from lakehouse.errors import ConfigError, TableNotFoundError
from lakehouse.ownership import UnitBusyError, check_held, hold
from lakehouse.pending import local_path, table_version
from lakehouse.policy.build import build_policy
from lakehouse.policy.snapshot import PolicySnapshot, policy_rows
from lakehouse.policy.store import BuiltFrom, DynamoDbPolicyStore, LocalPolicyStore, PolicyStore, WriteStats
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


def build_policy_table(spark: SparkSession, config: Config, *, job: str | None = None) -> WriteStats:
    """Derive the policy from the source table's latest rows and write it to the store (idempotent).

    The build holds the consent source table's lease (lakehouse.ownership) from its read to its last write, so
    it reads the table's newest version and no other build writes meanwhile: a build beside the job writing the
    table (a stream, which rebuilds the policy itself) is refused naming that job. The store keeps a policy from
    going backwards all the same (a lease lost, a writer that takes none): a build from an older version of the
    table than the stored policy's is refused, logged as `policy_build_refused`, nothing written, and returns
    stats with `newer_stored` set. An older build losing is expected; it is not an error.
    """
    settings = config.policy
    if settings is None:
        raise ConfigError("no `policy:` section in the configuration", file=config.source_file)
    try:
        with hold(config, [settings.source_table], job=job):
            return _build_and_write(spark, config, settings)
    except UnitBusyError as exc:
        raise UnitBusyError(
            f"the policy is not rebuilt: {exc} That job rebuilds the policy itself after each batch of "
            f"{settings.source_table} it applies."
        ) from None


def _build_and_write(spark: SparkSession, config: Config, settings: PolicySettings) -> WriteStats:
    from delta.tables import DeltaTable

    latest = table_paths(config, config.table(settings.source_table)).latest
    if not DeltaTable.isDeltaTable(spark, latest):
        raise TableNotFoundError(
            f"the consent source table {settings.source_table} has not been applied yet ({latest}): "
            f"run `lakehouse run --table {settings.source_table}` first"
        )
    # The build reads the version it records in the store and in its marker (a consent committed meanwhile
    # makes a later build).
    version, table_id = table_state(spark, latest)
    policy = build_policy(
        spark.read.format("delta").option("versionAsOf", version).load(latest),
        patient_col=settings.patient_column,
        device_col=settings.device_column,
        allowed_col=settings.allowed_column,
        date_col=settings.date_column,
    )
    rows = list(policy_rows(policy))
    check_held(config, settings.source_table)  # a lease lost while building: no write beside the job that took it
    # The build is the whole policy: a key it no longer has (its consent records deleted at the source) leaves.
    stats = policy_store(settings).replace(rows, built_from=BuiltFrom(table_id, version))
    if stats.newer_stored is not None:
        log.warning(
            json.dumps(
                {
                    "event": "policy_build_refused",
                    "source_table": settings.source_table,
                    "built_from_version": version,
                    "stored_version": stats.newer_stored.version,
                    "why": "the store holds a policy built from a newer version of the consent source; "
                    "this build read an older one and wrote nothing (the newer policy stays)",
                }
            )
        )
        return stats
    log.info(
        json.dumps({"event": "policy_build", "store": settings.store, "rows": stats.rows, "removed": stats.deleted})
    )
    marker = _built_from(config)
    if marker is not None:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w") as f:
            f.write(f"{version}\n")
    return stats
