"""Landing router: copy each file DMS lands into the hourly folder of the in-process bucket.

Triggered by the landing bucket's S3 event notification (or an EventBridge "Object Created" event), it
copies ``s3://<landing>/<SOURCE_PREFIX><relative key>`` to

    s3://<TARGET_BUCKET>/<TARGET_PREFIX>/p_date=YYYY-MM-DD/p_hour=HH/<relative key>

where ``p_date`` and ``p_hour`` are read from the pipeline's control item in DynamoDB, which the first
job of the pipeline moves on. Idempotent under S3's at-least-once delivery: the destination of an object
version is decided once and recorded (a conditional put keyed by bucket/key/version), so a redelivered
event copies to the same key even after the control item has moved on, and a destination that already
holds this version (same source ETag) is not copied again.

Environment:
    CONTROL_TABLE   DynamoDB table of control items, key attribute ``pipeline``
    PIPELINE        this pipeline's control item key; attributes ``p_date`` ("YYYY-MM-DD"), ``p_hour`` ("HH" or 0-23)
    TARGET_BUCKET   the in-process bucket
    TARGET_PREFIX   folder in the in-process bucket (optional, default: the bucket's root)
    SOURCE_PREFIX   folder of the landing bucket the relative key starts after (optional, default: none);
                    objects outside it are skipped
    DEDUP_TABLE     DynamoDB table of claims, key attribute ``id``, TTL attribute ``expires_at``
    DEDUP_TTL_DAYS  how long a routing decision is kept (optional, default 7)
    LOG_LEVEL       optional, default INFO
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError
from s3_events import (
    ConfigurationError,
    NewObject,
    claim,
    is_s3_test_event,
    parse_new_objects,
    require_env,
    resolve_key,
)

log = logging.getLogger("lakehouse.landing_router")
log.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


class ControlItemError(RuntimeError):
    """The control item that names the current p_date/p_hour is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    control_table: str
    pipeline: str
    target_bucket: str
    dedup_table: str
    target_prefix: str = ""
    source_prefix: str = ""
    dedup_ttl_days: int = 7

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> Settings:
        ttl = environ.get("DEDUP_TTL_DAYS", "7")
        if not ttl.isdigit() or int(ttl) < 1:
            raise ConfigurationError(f"DEDUP_TTL_DAYS must be a whole number of days >= 1, got {ttl!r}")
        return cls(
            control_table=require_env(environ, "CONTROL_TABLE"),
            pipeline=require_env(environ, "PIPELINE"),
            target_bucket=require_env(environ, "TARGET_BUCKET"),
            dedup_table=require_env(environ, "DEDUP_TABLE"),
            target_prefix=environ.get("TARGET_PREFIX", "").strip("/"),
            source_prefix=environ.get("SOURCE_PREFIX", "").lstrip("/"),
            dedup_ttl_days=int(ttl),
        )


def relative_key(key: str, source_prefix: str) -> str | None:
    """The key below `source_prefix`, or None for a key outside it or a folder marker."""
    if not key.startswith(source_prefix) or key.endswith("/"):
        return None
    relative = key[len(source_prefix) :].lstrip("/")
    return relative or None


def partition_folder(item: dict[str, Any], *, table: str, pipeline: str) -> str:
    """``p_date=YYYY-MM-DD/p_hour=HH`` from a control item (DynamoDB attribute-value form)."""
    where = f"control item pipeline={pipeline!r} in DynamoDB table {table}"
    raw_date = _attribute(item.get("p_date"))
    raw_hour = _attribute(item.get("p_hour"))
    try:
        day = dt.date.fromisoformat(str(raw_date))
    except ValueError:
        raise ControlItemError(f"{where}: p_date must be 'YYYY-MM-DD', got {raw_date!r}") from None
    hour = str(raw_hour)
    if not hour.isdigit() or not 0 <= int(hour) <= 23:
        raise ControlItemError(f"{where}: p_hour must be an hour 0-23 ('HH' or a number), got {raw_hour!r}")
    return f"p_date={day.isoformat()}/p_hour={int(hour):02d}"


def destination_key(target_prefix: str, folder: str, relative: str) -> str:
    return "/".join(part for part in (target_prefix, folder, relative) if part)


def _attribute(value: Any) -> Any:
    if isinstance(value, dict) and value:
        return next(iter(value.values()))
    return value


def read_partition_folder(dynamodb: Any, settings: Settings) -> str:
    response = dynamodb.get_item(
        TableName=settings.control_table, Key={"pipeline": {"S": settings.pipeline}}, ConsistentRead=True
    )
    if "Item" not in response:
        raise ControlItemError(
            f"no control item pipeline={settings.pipeline!r} in DynamoDB table {settings.control_table}: the "
            "pipeline's first job writes it (attributes p_date 'YYYY-MM-DD' and p_hour 'HH'). Run that job or put "
            "the item by hand; S3 retries this event, and it can be redriven from the function's dead-letter queue."
        )
    return partition_folder(response["Item"], table=settings.control_table, pipeline=settings.pipeline)


def route_object(obj: NewObject, settings: Settings, *, s3: Any, dynamodb: Any) -> dict[str, str]:
    """Copy one landed object to its hourly folder once; returns what was done, for the log."""
    relative = relative_key(obj.key, settings.source_prefix)
    if relative is None:
        return {"source": f"s3://{obj.bucket}/{obj.key}", "outcome": "skipped", "reason": "outside SOURCE_PREFIX"}
    try:
        head = resolve_key(s3, obj)
    except LookupError as gone:
        return {"source": f"s3://{obj.bucket}/{obj.key}", "outcome": "skipped", "reason": str(gone)}
    source_key = head["ResolvedKey"]
    relative = relative_key(source_key, settings.source_prefix) or relative
    etag = head["ETag"].strip('"')
    version = obj.version_id or head.get("VersionId")
    proposed = destination_key(settings.target_prefix, read_partition_folder(dynamodb, settings), relative)
    there = _copied_head(s3, settings.target_bucket, proposed)
    older = False
    if there is not None and etag not in _etags(there):
        # A new version of a key already copied into the open folder (DMS rewrites LOAD files under their first
        # names on a reload): copied over it, it would never be read (the file source knows files by path), and a
        # late event of the older version would copy that back. Each version keeps its own path, in a folder named
        # by its time first: the engine orders a reload's rows after the first delivery's by it.
        proposed = version_beside(proposed, version or etag, head.get("LastModified"))
        older = _written_before(head, there)
    elif (
        there is None
        and version
        and _is_load_file(source_key)
        and _has_earlier_version(s3, obj.bucket, source_key, version)
    ):
        # A reload landing once the first load's folder has closed: under its plain name it would take the first
        # load's row sequences (no timestamp column), and be read as a replay of it. In its version folder, the
        # engine orders its rows after the load's, as beside it.
        proposed = version_beside(proposed, version, head.get("LastModified"))
    identity = f"landing-router#{obj.bucket}/{source_key}#{version or etag}"
    earlier = claim(
        dynamodb, settings.dedup_table, identity, {"destination": proposed}, ttl_days=settings.dedup_ttl_days
    )
    destination = earlier["destination"] if earlier else proposed
    if older and not earlier:
        # Its event came after a newer version's (a retry, a redrive): beside the newer one, it is ordered after it.
        log.warning(
            json.dumps(
                {
                    "event": "older_version_after_newer",
                    "source": f"s3://{obj.bucket}/{source_key}",
                    "version": version,
                    "destination": f"s3://{settings.target_bucket}/{destination}",
                    "note": "an older version of the key than the one already copied under its name: the engine "
                    "orders it after that one, as a reload (README: 'A table reload')",
                }
            )
        )
    copied = copy_once(s3, obj.bucket, source_key, version, head, settings.target_bucket, destination)
    return {
        "source": f"s3://{obj.bucket}/{source_key}",
        "destination": f"s3://{settings.target_bucket}/{destination}",
        "outcome": "copied" if copied else "already there",
    }


def version_beside(key: str, version: str, modified: dt.datetime | None) -> str:
    """`key` in a `version=<UTC yyyymmddHHMMSSffffff>-<id>/` folder beside its name: read by the table's recursive
    listing, never the same path as another version's (a name of its own would lose the DMS file name the engine
    orders by). The time is the version's LastModified: S3's version ids do not sort, the times do, and the engine
    orders a later delivery's rows by it (`changes.normalize`), as the ledger tells reloads in the folders' order."""
    folder, _, name = key.rpartition("/")
    when = (modified or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    tag = when.strftime("%Y%m%d%H%M%S%f") + "-" + re.sub(r"[^A-Za-z0-9._-]", "_", version)
    return f"{folder}/version={tag}/{name}" if folder else f"version={tag}/{name}"


# A DMS full-load file's name: a hexadecimal counter (LOAD00000001.csv … LOAD0000000A.csv), SEGMENT1_LOAD00000001.csv
# (a ranges parallel load without segment-names), any extension. A copy of lakehouse.sources.dms_files.LOAD_NAME: this
# Lambda is packaged without lakehouse; tests/test_deploy_lambdas.py checks the two agree.
LOAD_NAME = re.compile(r"^(?:SEGMENT[0-9]+_)?LOAD(?:_[0-9]+_)?[0-9A-F]+\.", re.IGNORECASE)


def _is_load_file(key: str) -> bool:
    return LOAD_NAME.match(key.rpartition("/")[2]) is not None


def _has_earlier_version(s3: Any, bucket: str, key: str, version: str) -> bool:
    """Whether the landing bucket holds a version of `key` written before `version` (a reload's first load; versions
    older than the bucket's noncurrent-version expiry are gone and not seen). S3 lists a key's versions newest
    first, which tells two versions written in the same second (LastModified has no finer grain) apart."""
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
    ids = [v["VersionId"] for page in pages for v in page.get("Versions", []) if v["Key"] == key]
    return version in ids and ids.index(version) < len(ids) - 1


def _copied_head(s3: Any, target: str, dest: str) -> dict | None:
    """The HEAD of `dest`, or None if it does not exist."""
    try:
        return s3.head_object(Bucket=target, Key=dest)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise


def _etags(existing: dict) -> set[str]:
    """The ETags a copy answers to: its own, and the source's it was copied from."""
    return {existing["ETag"].strip('"'), existing.get("Metadata", {}).get("source-etag")}


def _written_before(head: dict, existing: dict) -> bool:
    """Whether the source version `head` was written before the one copied to `existing` (when the copy says)."""
    copied = existing.get("Metadata", {}).get("source-last-modified")
    if not copied or head.get("LastModified") is None:
        return False
    return head["LastModified"] < dt.datetime.fromisoformat(copied)


def copy_once(s3: Any, bucket: str, key: str, version: str | None, head: dict, target: str, dest: str) -> bool:
    """Copy unless `dest` already holds this source version (its ETag, or the source ETag it was copied from)."""
    etag = head["ETag"].strip('"')
    existing = _copied_head(s3, target, dest)
    if existing is not None and etag in _etags(existing):
        return False
    source = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
    # SSE-KMS makes a copy's ETag differ from its source's: the source ETag is kept in the metadata. So is the source's
    # LastModified: an older version of the key routed after this one is told (route_object).
    modified = head.get("LastModified")
    metadata = {
        **head.get("Metadata", {}),
        "source-etag": etag,
        "source-version-id": version or "",
        **({"source-last-modified": modified.astimezone(dt.UTC).isoformat()} if modified else {}),
    }
    extra = {"MetadataDirective": "REPLACE", "Metadata": metadata}
    if head.get("ContentType"):
        extra["ContentType"] = head["ContentType"]
    s3.copy(source, target, dest, ExtraArgs=extra)
    return True


@functools.cache
def _clients() -> tuple[Any, Any]:
    return boto3.client("s3"), boto3.client("dynamodb")


def handler(event: dict, context: Any) -> dict:
    """Lambda entry point: route every created object the event names."""
    if is_s3_test_event(event):
        log.info(json.dumps({"outcome": "ignored", "reason": "s3:TestEvent"}))
        return {"routed": []}
    objects = parse_new_objects(event)
    settings = Settings.from_env(dict(os.environ))
    s3, dynamodb = _clients()
    routed = []
    for obj in objects:
        result = route_object(obj, settings, s3=s3, dynamodb=dynamodb)
        log.info(json.dumps(result))
        routed.append(result)
    return {"routed": routed}
