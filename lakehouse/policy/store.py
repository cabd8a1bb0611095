"""Where the policy table lives: DynamoDB on AWS, a JSON-lines file locally. Both upsert by key.

Idempotency: an item's key is (patient_id, device_id) and a write puts the whole item, so writing
the same rows twice leaves the same table. A write always overwrites, whatever the stored
``policy_date``: the policy is rebuilt from the whole consent source, so the newest build is the
truth, corrections dated in the past included. `write` leaves rows absent from it as they are;
`replace`, which the policy build uses, removes them: a consent record deleted at the source takes
its patient's row out of the policy (no row: not consented), where an upsert kept the old "allowed".

Never backwards: `replace(rows, built_from=...)` records the consent table version the policy was built from
and is refused (nothing written) when the store holds a policy built from a newer version of that table. A
build that read the consents before a withdrawal and wrote after the build that read the withdrawal would
otherwise put the patient back ("allowed") until the next consent batch. The record is claimed before the rows are
written, so a build that fails half-way leaves the newer claim and its own rerun (same version) finishes it;
two builds writing their rows at the same time are kept apart by the consent table's lease
(`lakehouse.policy.job`), since a batch of rows cannot be written under a condition.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from lakehouse import aws
from lakehouse.errors import ConfigError, InputError, RetryableError

BATCH_SIZE = 25  # DynamoDB's limit of items per BatchWriteItem
ALL_DEVICES = "*"  # DynamoDB keys cannot be NULL: the sort key of a patient-level row
BUILT_FROM_DEVICE = "#built_from"  # the sort key of the item naming the build the DynamoDB store holds
_BUILT_FROM_KEY = {"patient_id": {"N": "-1"}, "device_id": {"S": BUILT_FROM_DEVICE}}


@dataclass(frozen=True)
class PolicyRow:
    """One policy row; `device_id` None means all devices of the patient."""

    patient_id: int
    device_id: str | None
    allow_enhanced_analytics: bool
    policy_date: date | None


@dataclass(frozen=True)
class BuiltFrom:
    """The consent source table version a policy was built from; `table_id` is Delta's id of that table.

    A table made again at its path has another id and starts its versions again: a build from it is not older.
    """

    table_id: str
    version: int

    def older_than(self, other: BuiltFrom) -> bool:
        return other.table_id == self.table_id and self.version < other.version


@dataclass(frozen=True)
class WriteStats:
    """What a write did: its rows, requests sent, and how many retries throttling cost."""

    rows: int  # the rows given (for `replace`: the whole policy, of which only the changed ones are sent)
    requests: int
    retries: int
    retried_rows: int
    deleted: int = 0  # keys removed by `replace`
    newer_stored: BuiltFrom | None = None  # a refused `replace`: the newer build the store keeps (nothing written)


class PolicyStore(Protocol):
    def write(self, rows: Iterable[PolicyRow]) -> WriteStats:
        """Upsert `rows` by (patient_id, device_id)."""
        ...

    def snapshot(self) -> list[PolicyRow]:
        """Every stored row, ordered by (patient_id, device_id)."""
        ...

    def replace(self, rows: Iterable[PolicyRow], *, built_from: BuiltFrom | None = None) -> WriteStats:
        """Make the stored rows exactly `rows`: upsert them, then remove every other key.

        With `built_from`, refused (nothing written, `newer_stored` set) when the stored policy was built from a
        newer version of the same consent table; else `built_from` is recorded as the stored policy's."""
        ...

    def built_from(self) -> BuiltFrom | None:
        """The consent table version the stored policy was built from (None: never recorded)."""
        ...


def _refused(rows: list[PolicyRow], newer: BuiltFrom) -> WriteStats:
    return WriteStats(rows=len(rows), requests=0, retries=0, retried_rows=0, newer_stored=newer)


def unique_rows(rows: Iterable[PolicyRow]) -> list[PolicyRow]:
    """`rows` without exact duplicates; two different rows for one key are an input error."""
    seen: dict[tuple[int, str | None], PolicyRow] = {}
    for row in rows:
        key = (row.patient_id, row.device_id)
        if seen.setdefault(key, row) != row:
            raise InputError(
                f"two different policy rows for patient {row.patient_id}, device {row.device_id}: "
                "build the policy with build_policy, which keeps one row per key"
            )
    return list(seen.values())


def _ordered(rows: Iterable[PolicyRow]) -> list[PolicyRow]:
    return sorted(rows, key=lambda r: (r.patient_id, r.device_id is not None, r.device_id or ""))


class DynamoDbPolicyStore:
    """The policy table in DynamoDB: key patient_id (N, hash) + device_id (S, range; '*' = all devices).

    Writes go in BatchWriteItem requests of 25 on `writers` threads; UnprocessedItems (throttling)
    are resent with exponential backoff and full jitter, up to `max_retries` times per request.
    `snapshot()` is a parallel Scan over `segments` segments, paginated (`page_size` items a page,
    else DynamoDB's 1 MB pages), strongly consistent.
    """

    def __init__(
        self,
        table_name: str,
        client: Any,
        segments: int = 4,
        *,
        writers: int = 4,
        max_retries: int = 8,
        backoff_seconds: float = 0.05,
        max_backoff_seconds: float = 5.0,
        page_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if segments < 1 or writers < 1:
            raise ValueError("segments and writers must be at least 1")
        self.table_name = table_name
        self.client = client
        self.segments = segments
        self.writers = writers
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.page_size = page_size
        self._sleep = sleep
        self._rng = rng or random.Random()

    @classmethod
    def connect(
        cls, table_name: str, *, region: str | None = None, endpoint_url: str | None = None, segments: int = 4
    ) -> DynamoDbPolicyStore:
        """A store with its own client from `lakehouse.aws`."""
        return cls(table_name, aws.client("dynamodb", region=region, endpoint_url=endpoint_url), segments)

    def create_table_if_missing(self) -> bool:
        """Create the table (on-demand billing) unless it exists; True when created. For tests and local runs."""
        try:
            self.client.describe_table(TableName=self.table_name)
            return False
        except Exception as exc:
            if aws.error_code(exc) != "ResourceNotFoundException":
                raise
        self.client.create_table(
            TableName=self.table_name,
            KeySchema=[
                {"AttributeName": "patient_id", "KeyType": "HASH"},
                {"AttributeName": "device_id", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "patient_id", "AttributeType": "N"},
                {"AttributeName": "device_id", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.client.get_waiter("table_exists").wait(
            TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        return True

    def write(self, rows: Iterable[PolicyRow]) -> WriteStats:
        """Upsert `rows` (put overwrites the whole item). A failed write may be rerun: it converges."""
        items = [_to_item(row, self.table_name) for row in unique_rows(rows)]
        return self._send_all([{"PutRequest": {"Item": item}} for item in items], rows=len(items))

    def replace(self, rows: Iterable[PolicyRow], *, built_from: BuiltFrom | None = None) -> WriteStats:
        """Upsert the rows of `rows` the store does not hold as they are, then delete every stored key not among
        them (a reader between the two sees the keys of both builds, as before the build; never a patient missing
        that both builds hold). Only the differences are written: a stream rebuilds the policy after each batch of
        its consent source, and a policy of a million patients changes by a few rows.

        `built_from` is claimed first, by a conditional put of the store's record (see the module's docstring)."""
        rows = unique_rows(rows)
        if built_from is not None:
            newer = self._claim(built_from)
            if newer is not None:
                return _refused(rows, newer)
        stored = self.snapshot()
        held = set(stored)
        written = self.write([r for r in rows if r not in held])
        keep = {(r.patient_id, r.device_id) for r in rows}
        gone = [_key_item(r) for r in stored if (r.patient_id, r.device_id) not in keep]
        deleted = self._send_all([{"DeleteRequest": {"Key": key}} for key in gone], rows=0)
        return WriteStats(
            rows=len(rows),
            requests=written.requests + deleted.requests,
            retries=written.retries + deleted.retries,
            retried_rows=written.retried_rows + deleted.retried_rows,
            deleted=len(gone),
        )

    def _claim(self, built_from: BuiltFrom) -> BuiltFrom | None:
        """Record `built_from` unless the store holds a build from a newer version of the same table (returned).

        One conditional put: of two builds claiming at once, the older never overwrites the newer's record."""
        try:
            self._call(
                "put_item",
                TableName=self.table_name,
                Item={
                    **_BUILT_FROM_KEY,
                    "table_id": {"S": built_from.table_id},
                    "version": {"N": str(built_from.version)},
                },
                ConditionExpression="attribute_not_exists(#v) OR #t <> :table OR #v <= :version",
                ExpressionAttributeNames={"#v": "version", "#t": "table_id"},
                ExpressionAttributeValues={
                    ":table": {"S": built_from.table_id},
                    ":version": {"N": str(built_from.version)},
                },
            )
            return None
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise
        return self.built_from() or built_from  # the record is never deleted; were it, refuse all the same

    def built_from(self) -> BuiltFrom | None:
        """The build the store holds, from its record (strongly consistent read)."""
        item = self._call("get_item", TableName=self.table_name, Key=_BUILT_FROM_KEY, ConsistentRead=True).get("Item")
        return BuiltFrom(item["table_id"]["S"], int(item["version"]["N"])) if item else None

    def _send_all(self, requests: list[dict[str, Any]], *, rows: int) -> WriteStats:
        """BatchWriteItem `requests` (puts or deletes) 25 at a time on `writers` threads."""
        chunks = [requests[i : i + BATCH_SIZE] for i in range(0, len(requests), BATCH_SIZE)]
        with ThreadPoolExecutor(max_workers=self.writers) as pool:
            results = list(pool.map(self._send, chunks))
        return WriteStats(
            rows=rows,
            requests=sum(r[0] for r in results),
            retries=sum(r[1] for r in results),
            retried_rows=sum(r[2] for r in results),
        )

    def _send(self, pending: list[dict[str, Any]]) -> tuple[int, int, int]:
        requests = retries = retried_rows = 0
        while True:
            response = self._call("batch_write_item", RequestItems={self.table_name: pending})
            requests += 1
            pending = (response.get("UnprocessedItems") or {}).get(self.table_name) or []
            if not pending:
                return requests, retries, retried_rows
            if retries == self.max_retries:
                raise RetryableError(
                    f"DynamoDB table {self.table_name} still throttles {len(pending)} policy rows after "
                    f"{retries} retries; the table is partly written. Rerun the policy build: writes are idempotent."
                )
            retries += 1
            retried_rows += len(pending)
            ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2**retries)
            self._sleep(self._rng.uniform(0, ceiling))

    def snapshot(self) -> list[PolicyRow]:
        """Every row, read by `segments` parallel Scans."""
        with ThreadPoolExecutor(max_workers=self.segments) as pool:
            parts = list(pool.map(self._scan_segment, range(self.segments)))
        return _ordered(row for part in parts for row in part)

    def _scan_segment(self, segment: int) -> list[PolicyRow]:
        rows: list[PolicyRow] = []
        start: dict[str, Any] | None = None
        while True:
            extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
            if self.page_size:
                extra["Limit"] = self.page_size
            page = self._call(
                "scan",
                TableName=self.table_name,
                Segment=segment,
                TotalSegments=self.segments,
                ConsistentRead=True,
                **extra,
            )
            rows.extend(
                _from_item(item) for item in page.get("Items", []) if item["device_id"]["S"] != BUILT_FROM_DEVICE
            )
            start = page.get("LastEvaluatedKey")
            if not start:
                return rows

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One API call, its errors told in the engine's terms (botocore already retried throttling)."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            code = aws.error_code(exc)
            if code == "ResourceNotFoundException":
                raise ConfigError(
                    f"DynamoDB policy table {self.table_name} does not exist in this account and region; "
                    "create it (deploy/) or point the configuration at the right table"
                ) from exc
            if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
                raise RetryableError(
                    f"DynamoDB table {self.table_name} throttled {operation} beyond the client's retries; "
                    "rerun later or raise the table's capacity. Nothing is half-applied that a rerun would not fix."
                ) from exc
            raise


def _to_item(row: PolicyRow, table: str) -> dict[str, Any]:
    if row.device_id == ALL_DEVICES:
        raise InputError(f"device_id {ALL_DEVICES!r} is reserved for patient-level policy rows", table=table)
    if row.device_id == BUILT_FROM_DEVICE:
        raise InputError(f"device_id {BUILT_FROM_DEVICE!r} is reserved for the store's own record", table=table)
    return {
        "patient_id": {"N": str(row.patient_id)},
        "device_id": {"S": ALL_DEVICES if row.device_id is None else row.device_id},
        "allow_enhanced_analytics": {"BOOL": bool(row.allow_enhanced_analytics)},
        "policy_date": {"NULL": True} if row.policy_date is None else {"S": row.policy_date.isoformat()},
    }


def _key_item(row: PolicyRow) -> dict[str, Any]:
    return {
        "patient_id": {"N": str(row.patient_id)},
        "device_id": {"S": ALL_DEVICES if row.device_id is None else row.device_id},
    }


def _from_item(item: dict[str, Any]) -> PolicyRow:
    device = item["device_id"]["S"]
    stored_date = item.get("policy_date", {}).get("S")
    return PolicyRow(
        patient_id=int(item["patient_id"]["N"]),
        device_id=None if device == ALL_DEVICES else device,
        allow_enhanced_analytics=bool(item.get("allow_enhanced_analytics", {}).get("BOOL", False)),
        policy_date=date.fromisoformat(stored_date) if stored_date else None,
    )


class LocalPolicyStore:
    """The policy table as `policy.jsonl` under a local directory (the embedded default; one writer).

    A write merges the rows into the stored ones and atomically replaces the file, so a reader
    sees the old table or the new one, never half of it. `built_from.json` beside it names the build.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.directory = Path(path)
        self.file = self.directory / "policy.jsonl"
        self.record = self.directory / "built_from.json"

    def write(self, rows: Iterable[PolicyRow]) -> WriteStats:
        """Upsert `rows` and replace the file in one rename."""
        new = unique_rows(rows)
        merged = {(r.patient_id, r.device_id): r for r in self.snapshot()}
        merged.update({(r.patient_id, r.device_id): r for r in new})
        self._store(merged.values())
        return WriteStats(rows=len(new), requests=1, retries=0, retried_rows=0)

    def replace(self, rows: Iterable[PolicyRow], *, built_from: BuiltFrom | None = None) -> WriteStats:
        """Make the file hold exactly `rows`, in one rename; `built_from` is recorded first (or refused)."""
        new = unique_rows(rows)
        if built_from is not None:
            stored = self.built_from()
            if stored is not None and built_from.older_than(stored):
                return _refused(new, stored)
            record = {"table_id": built_from.table_id, "version": built_from.version}
            self._store_lines(self.record, [json.dumps(record) + "\n"])
        keep = {(r.patient_id, r.device_id) for r in new}
        gone = sum((r.patient_id, r.device_id) not in keep for r in self.snapshot())
        self._store(new)
        return WriteStats(rows=len(new), requests=1, retries=0, retried_rows=0, deleted=gone)

    def built_from(self) -> BuiltFrom | None:
        """The build the file holds, from `built_from.json` (None before the first recorded build)."""
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
            return BuiltFrom(str(record["table_id"]), int(record["version"]))
        except FileNotFoundError:
            return None
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                "not a policy build record; delete it and rebuild the policy", file=str(self.record)
            ) from None

    def _store(self, rows: Iterable[PolicyRow]) -> None:
        self._store_lines(self.file, (json.dumps(_to_json(r), separators=(",", ":")) + "\n" for r in _ordered(rows)))

    def _store_lines(self, path: Path, lines: Iterable[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".policy-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.writelines(lines)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def snapshot(self) -> list[PolicyRow]:
        """Every stored row; an empty list before the first write."""
        if not self.file.exists():
            return []
        with self.file.open(encoding="utf-8") as lines:
            return [_from_json(json.loads(line), self.file, n) for n, line in enumerate(lines, 1) if line.strip()]


def _to_json(row: PolicyRow) -> dict[str, Any]:
    return {
        "patient_id": row.patient_id,
        "device_id": row.device_id,
        "allow_enhanced_analytics": row.allow_enhanced_analytics,
        "policy_date": row.policy_date.isoformat() if row.policy_date else None,
    }


def _from_json(record: dict[str, Any], file: Path, line: int) -> PolicyRow:
    try:
        stored_date = record["policy_date"]
        return PolicyRow(
            patient_id=int(record["patient_id"]),
            device_id=record["device_id"],
            allow_enhanced_analytics=bool(record["allow_enhanced_analytics"]),
            policy_date=date.fromisoformat(stored_date) if stored_date else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"line {line} is not a policy row ({type(exc).__name__}); rebuild the policy to rewrite it",
            file=str(file),
        ) from None
