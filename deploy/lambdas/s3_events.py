"""What the two Lambdas share: reading "object created" events and claiming an object once.

Two event shapes carry a new S3 object:

- an S3 event notification: ``{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
  "s3": {"bucket": {"name": ...}, "object": {"key": ..., "eTag": ..., "versionId": ...}}}, ...]}``,
  possibly several records per event;
- an EventBridge event: ``{"source": "aws.s3", "detail-type": "Object Created",
  "detail": {"bucket": {"name": ...}, "object": {"key": ..., "etag": ..., "version-id": ...}}}``.

Object keys arrive URL-encoded the way HTML forms encode them (a space is ``+``, a ``+`` is ``%2B``), so
they are decoded with ``unquote_plus``; `resolve_key` checks the decoded key against S3 and falls back to
the key as written, for a sender that did not encode it. Anything else is rejected with `EventShapeError`.

S3 delivers events at least once. `claim` records an object's identity (bucket, key, version or ETag) in
a DynamoDB table with a conditional put, so a redelivered event finds the claim of the first one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

EXPECTED_SHAPES = (
    "an S3 event notification {'Records': [{'eventSource': 'aws:s3', 'eventName': 'ObjectCreated:*', "
    "'s3': {'bucket': {'name': ...}, 'object': {'key': ...}}}]} or an EventBridge event "
    "{'source': 'aws.s3', 'detail-type': 'Object Created', 'detail': {'bucket': {'name': ...}, 'object': {'key': ...}}}"
)


class EventShapeError(ValueError):
    """The event is not an "object created" event of either shape; nothing was done."""


class ConfigurationError(RuntimeError):
    """An environment variable the function needs is missing or malformed."""


@dataclass(frozen=True)
class NewObject:
    """One created object, with its key decoded (``raw_key`` is the key as the event wrote it)."""

    bucket: str
    key: str
    raw_key: str
    etag: str | None = None
    version_id: str | None = None
    size: int | None = None

    @property
    def identity(self) -> str:
        """Stable across redeliveries of the same object version: bucket/key#version (or #etag)."""
        return f"{self.bucket}/{self.key}#{self.version_id or self.etag or 'unversioned'}"


def require_env(environ: dict[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"environment variable {name} is not set: the Terraform deploy sets it on this function"
        )
    return value


def parse_new_objects(event: Any) -> list[NewObject]:
    """The created objects an event names, in event order; raises `EventShapeError` for any other event."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        if not event["Records"]:
            raise EventShapeError(f"the event has an empty Records list; expected {EXPECTED_SHAPES}")
        return [_from_record(i, record) for i, record in enumerate(event["Records"])]
    if isinstance(event, dict) and event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        return [_from_eventbridge(event)]
    raise EventShapeError(f"unrecognised event {_describe(event)}; expected {EXPECTED_SHAPES}")


def is_s3_test_event(event: Any) -> bool:
    """S3 sends ``{"Service": "Amazon S3", "Event": "s3:TestEvent"}`` when a notification is configured."""
    return isinstance(event, dict) and event.get("Event") == "s3:TestEvent"


def _from_record(index: int, record: Any) -> NewObject:
    where = f"Records[{index}]"
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        raise EventShapeError(f"{where} is not an S3 record (eventSource must be 'aws:s3'); expected {EXPECTED_SHAPES}")
    name = str(record.get("eventName", ""))
    if not name.startswith("ObjectCreated:"):
        raise EventShapeError(
            f"{where} is an S3 {name or 'unnamed'} event, not ObjectCreated:*: "
            "the bucket notification should send only object-created events to this function"
        )
    s3 = _mapping(record.get("s3"), f"{where}.s3")
    obj = _mapping(s3.get("object"), f"{where}.s3.object")
    return _new_object(
        bucket=_text(_mapping(s3.get("bucket"), f"{where}.s3.bucket").get("name"), f"{where}.s3.bucket.name"),
        raw_key=_text(obj.get("key"), f"{where}.s3.object.key"),
        etag=obj.get("eTag"),
        version_id=obj.get("versionId"),
        size=obj.get("size"),
    )


def _from_eventbridge(event: dict) -> NewObject:
    detail = _mapping(event.get("detail"), "detail")
    obj = _mapping(detail.get("object"), "detail.object")
    return _new_object(
        bucket=_text(_mapping(detail.get("bucket"), "detail.bucket").get("name"), "detail.bucket.name"),
        raw_key=_text(obj.get("key"), "detail.object.key"),
        etag=obj.get("etag"),
        version_id=obj.get("version-id"),
        size=obj.get("size"),
    )


def _new_object(*, bucket: str, raw_key: str, etag: Any, version_id: Any, size: Any) -> NewObject:
    return NewObject(
        bucket=bucket,
        key=unquote_plus(raw_key),
        raw_key=raw_key,
        etag=str(etag).strip('"') if etag else None,
        version_id=str(version_id) if version_id and version_id != "null" else None,
        size=size if isinstance(size, int) else None,
    )


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise EventShapeError(f"{where} is missing or not an object; expected {EXPECTED_SHAPES}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise EventShapeError(f"{where} is missing or not a non-empty string; expected {EXPECTED_SHAPES}")
    return value


def _describe(event: Any) -> str:
    if isinstance(event, dict):
        return f"with keys {sorted(map(str, event))[:10]}"
    return f"of type {type(event).__name__}"


def resolve_key(s3: Any, obj: NewObject) -> dict:
    """HEAD the object under its decoded key, else under the key as written; returns the HEAD response.

    The decoded key is right for S3's own encoding; the raw key covers a sender that wrote keys plainly
    (a literal ``+`` would otherwise be read as a space). Raises `LookupError` when neither exists.
    """
    candidates = [obj.key] if obj.key == obj.raw_key else [obj.key, obj.raw_key]
    for key in candidates:
        head = _head(s3, obj.bucket, key, obj.version_id)
        if head is not None:
            return {**head, "ResolvedKey": key}
    raise LookupError(
        f"s3://{obj.bucket}/{obj.key} (event key {obj.raw_key!r}, version {obj.version_id}) does not exist: "
        "it was deleted or overwritten after the event was sent; nothing to do for this record"
    )


def _head(s3: Any, bucket: str, key: str, version_id: str | None) -> dict | None:
    args = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    try:
        return s3.head_object(**args)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}:
            return None
        raise


def claim(dynamodb: Any, table: str, claim_id: str, attributes: dict[str, str], *, ttl_days: int) -> dict | None:
    """Record `claim_id` once; returns None when this call made the claim, else the existing item's attributes.

    The item expires after `ttl_days` (DynamoDB TTL on ``expires_at``), long after S3 stops redelivering.
    """
    item = {
        "id": {"S": claim_id},
        "expires_at": {"N": str(int(time.time()) + ttl_days * 86400)},
        **{name: {"S": value} for name, value in attributes.items()},
    }
    try:
        dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(id)")
        return None
    except dynamodb.exceptions.ConditionalCheckFailedException:
        existing = dynamodb.get_item(TableName=table, Key={"id": {"S": claim_id}}, ConsistentRead=True).get("Item", {})
        return {name: value.get("S", value.get("N")) for name, value in existing.items()}
