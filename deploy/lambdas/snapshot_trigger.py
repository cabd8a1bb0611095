"""Snapshot trigger: start the snapshot-load Glue job for each new HRSA 340B export.

Triggered by an EventBridge "Object Created" rule on the landing bucket (an S3 event notification works
too). For an object under SNAPSHOT_PREFIX ending in one of SNAPSHOT_SUFFIXES it calls
``glue.start_job_run(JobName=GLUE_JOB_NAME, Arguments={"--bucket": ..., "--key": ...})``; other keys
are logged and ignored.

Idempotent under at-least-once delivery: Glue's StartJobRun takes no idempotency token, so the object
version (bucket/key#version, or #ETag) is claimed first with a conditional put in DEDUP_TABLE and the
run id recorded on the claim. A redelivered event finds the claim and starts nothing. If the start fails
the claim is released, so Lambda's retry (or a redrive from the dead-letter queue) can start it; a claim
left without a run id by a crashed invocation is taken over after CLAIM_TIMEOUT_SECONDS.

Environment:
    GLUE_JOB_NAME          the snapshot-load Glue job (script batch/snapshot_load.py)
    SNAPSHOT_PREFIX        folder of the landing bucket the exports arrive in, e.g. "opais/340b/"
    SNAPSHOT_SUFFIXES      accepted file endings, comma-separated (optional, default ".zip,.json")
    DEDUP_TABLE            DynamoDB table of claims, key attribute ``id``, TTL attribute ``expires_at``
    DEDUP_TTL_DAYS         how long a claim is kept (optional, default 7)
    CLAIM_TIMEOUT_SECONDS  age after which a claim without a run id is taken over (optional, default 900)
    LOG_LEVEL              optional, default INFO
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import boto3
from s3_events import (
    ConfigurationError,
    NewObject,
    claim,
    is_s3_test_event,
    parse_new_objects,
    require_env,
    resolve_key,
)

log = logging.getLogger("lakehouse.snapshot_trigger")
log.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


class SnapshotStartError(RuntimeError):
    """The Glue job run could not be started; the claim was released so a retry can start it."""


@dataclass(frozen=True)
class Settings:
    glue_job_name: str
    snapshot_prefix: str
    dedup_table: str
    suffixes: tuple[str, ...] = (".zip", ".json")
    dedup_ttl_days: int = 7
    claim_timeout_seconds: int = 900

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Settings:
        raw = environ.get("SNAPSHOT_SUFFIXES", ".zip,.json")
        suffixes = tuple(s.strip().lower() for s in raw.split(",") if s.strip())
        if not suffixes:
            raise ConfigurationError("SNAPSHOT_SUFFIXES is empty: give file endings such as '.zip,.json'")
        return cls(
            glue_job_name=require_env(environ, "GLUE_JOB_NAME"),
            snapshot_prefix=require_env(environ, "SNAPSHOT_PREFIX").lstrip("/"),
            dedup_table=require_env(environ, "DEDUP_TABLE"),
            suffixes=suffixes,
            dedup_ttl_days=_whole(environ, "DEDUP_TTL_DAYS", 7),
            claim_timeout_seconds=_whole(environ, "CLAIM_TIMEOUT_SECONDS", 900),
        )


def _whole(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name, str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1, got {raw!r}")
    return int(raw)


def why_ignored(key: str, settings: Settings) -> str | None:
    """None for a snapshot export this function should load, else the reason it is ignored."""
    if not key.startswith(settings.snapshot_prefix):
        return f"outside SNAPSHOT_PREFIX {settings.snapshot_prefix!r}"
    if not key.lower().endswith(settings.suffixes):
        return f"not a snapshot export (expected one of {', '.join(settings.suffixes)})"
    return None


def start_snapshot_load(obj: NewObject, settings: Settings, *, s3: Any, glue: Any, dynamodb: Any) -> dict:
    """Start the snapshot load of one export once; returns what was done, for the log."""
    source = f"s3://{obj.bucket}/{obj.key}"
    reason = why_ignored(obj.key, settings)
    if reason:
        return {"source": source, "outcome": "ignored", "reason": reason}
    try:
        head = resolve_key(s3, obj)
    except LookupError as gone:
        return {"source": source, "outcome": "ignored", "reason": str(gone)}
    key = head["ResolvedKey"]
    version = obj.version_id or head.get("VersionId") or head["ETag"].strip('"')
    claim_id = f"snapshot-trigger#{obj.bucket}/{key}#{version}"
    claimed_at = str(int(time.time()))
    earlier = claim(
        dynamodb, settings.dedup_table, claim_id, {"claimed_at": claimed_at}, ttl_days=settings.dedup_ttl_days
    )
    if earlier is not None:
        if earlier.get("job_run_id"):
            return {"source": source, "outcome": "already started", "job_run_id": earlier["job_run_id"]}
        if int(time.time()) - int(earlier.get("claimed_at", "0")) < settings.claim_timeout_seconds:
            return {"source": source, "outcome": "being started by another invocation"}
        if not _take_over(dynamodb, settings.dedup_table, claim_id, earlier.get("claimed_at", "0"), claimed_at):
            return {"source": source, "outcome": "being started by another invocation"}
    run_id = _start(glue, dynamodb, settings, claim_id, claimed_at, bucket=obj.bucket, key=key)
    return {"source": f"s3://{obj.bucket}/{key}", "outcome": "started", "job_run_id": run_id}


def _start(
    glue: Any, dynamodb: Any, settings: Settings, claim_id: str, claimed_at: str, *, bucket: str, key: str
) -> str:
    arguments = {"--bucket": bucket, "--key": key}
    try:
        run_id = glue.start_job_run(JobName=settings.glue_job_name, Arguments=arguments)["JobRunId"]
    except Exception as error:
        _release(dynamodb, settings.dedup_table, claim_id, claimed_at)
        raise SnapshotStartError(
            f"could not start Glue job {settings.glue_job_name} for s3://{bucket}/{key}: {error}. The claim was "
            "released; Lambda retries the event, or redrive it from the dead-letter queue once the cause is fixed "
            "(a snapshot load already running makes Glue refuse a second one: MaxConcurrentRuns is 1)."
        ) from error
    dynamodb.update_item(
        TableName=settings.dedup_table,
        Key={"id": {"S": claim_id}},
        UpdateExpression="SET job_run_id = :run",
        ExpressionAttributeValues={":run": {"S": run_id}},
    )
    return run_id


def _take_over(dynamodb: Any, table: str, claim_id: str, old: str, new: str) -> bool:
    """Move a stale claim to this invocation; False when another invocation moved it first."""
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"id": {"S": claim_id}},
            UpdateExpression="SET claimed_at = :new",
            ConditionExpression="claimed_at = :old AND attribute_not_exists(job_run_id)",
            ExpressionAttributeValues={":new": {"S": new}, ":old": {"S": old}},
        )
        return True
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return False


def _release(dynamodb: Any, table: str, claim_id: str, claimed_at: str) -> None:
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"id": {"S": claim_id}},
            ConditionExpression="claimed_at = :mine",
            ExpressionAttributeValues={":mine": {"S": claimed_at}},
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        log.warning(json.dumps({"claim": claim_id, "outcome": "not released: another invocation took it over"}))


@functools.cache
def _clients() -> tuple[Any, Any, Any]:
    return boto3.client("s3"), boto3.client("glue"), boto3.client("dynamodb")


def handler(event: dict, context: Any) -> dict:
    """Lambda entry point: start one snapshot load per new export the event names."""
    if is_s3_test_event(event):
        log.info(json.dumps({"outcome": "ignored", "reason": "s3:TestEvent"}))
        return {"snapshots": []}
    objects = parse_new_objects(event)
    settings = Settings.from_env(dict(os.environ))
    s3, glue, dynamodb = _clients()
    results = []
    for obj in objects:
        result = start_snapshot_load(obj, settings, s3=s3, glue=glue, dynamodb=dynamodb)
        log.info(json.dumps(result))
        results.append(result)
    return {"snapshots": results}
