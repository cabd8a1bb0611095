"""One writer per table: a lease on each write unit, taken before the first write and given back at the end.

A write unit is what one job writes (`Config.write_units`): a DMS table with its checkpoint, or a snapshot
feed with all its tables, its checkpoint and its snapshot log. Delta on S3 keeps one commit safe at a time
only with a DynamoDB log store, and even then two jobs applying the same files would each run the whole
apply; so `run`, `stream` and the snapshot load hold the unit's lease while they write, and a second job
asking for it is refused with who holds it and until when.

- `locks.store: local` (a laptop, the tests): an exclusive `flock` on `<checkpoints>/_locks/<unit>.lock`,
  released by the kernel when the process ends, however it ends.
- `locks.store: dynamodb` (AWS): an item per unit in the lease table, put only if absent or expired, renewed
  every third of `lease_seconds` while the job runs; a job that dies frees its units when the lease expires.

Leases are re-entrant inside one process (a feed's run holds the feed; the snapshot load it calls does not
ask again).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from lakehouse.config import Config, LockSettings
from lakehouse.errors import LakehouseError

log = logging.getLogger("lakehouse.ownership")

_held: dict[str, int] = {}  # unit key -> depth, for re-entrance in this process
_held_lock = threading.Lock()
_leases: dict[str, Any] = {}  # unit key -> the lease this process holds on it


class UnitBusyError(LakehouseError):
    """Another job holds the lease of a unit this job would write: nothing was written; run it again later."""


class LeaseLostError(LakehouseError):
    """This job's lease on a unit was taken over or is about to expire unrenewed: it must stop writing it."""


def check_held(config: Config, unit: str) -> None:
    """Raise LeaseLostError when this process's lease on `unit` is lost, or so close to expiring unrenewed that
    another job could take it during a batch: a writer that went on would write beside that job. Called before a
    batch writes; a unit this process does not hold (a test, a job without leases) passes."""
    lease = _leases.get(f"{_scope(config)}#{unit}")
    if lease is not None:
        lease.check()


def holder_id(job: str | None = None) -> str:
    """Who holds a lease: job name, host and process id (and Glue's run id when Glue set one)."""
    parts = [job or os.environ.get("LAKEHOUSE_JOB") or "lakehouse", socket.gethostname(), f"pid {os.getpid()}"]
    if os.environ.get("JOB_RUN_ID"):
        parts.append(os.environ["JOB_RUN_ID"])
    return " ".join(parts)


LEASE_POLL_SECONDS = 15.0  # how often a job that waits for a unit asks again


@contextmanager
def hold(
    config: Config, units: list[str], *, job: str | None = None, wait_seconds: float | None = None
) -> Iterator[None]:
    """Hold the leases of `units` (names from `config.write_units()`) for the duration of the block.

    `wait_seconds`: how long to wait for a unit another job holds before giving up (UnitBusyError); 0 refuses at
    once; by default the configuration's `locks.wait_seconds`. A job started for one file (the snapshot load)
    waits longer, since nothing else would apply its file soon."""
    wait = config.locks.wait_seconds if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    with ExitStack() as stack:
        for unit in sorted(dict.fromkeys(units)):  # one order everywhere: two jobs never wait on each other
            stack.enter_context(_hold_one(config, unit, job=job, deadline=deadline))
        yield


@contextmanager
def _hold_one(config: Config, unit: str, *, job: str | None, deadline: float) -> Iterator[None]:
    key = f"{_scope(config)}#{unit}"
    with _held_lock:
        depth = _held.get(key, 0)
        _held[key] = depth + 1
    try:
        if depth:
            yield
            return
        with _taken(config, unit, job, deadline) as lease:
            _leases[key] = lease
            try:
                yield
            finally:
                _leases.pop(key, None)
    finally:
        with _held_lock:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]


@contextmanager
def _taken(config: Config, unit: str, job: str | None, deadline: float) -> Iterator[Any]:
    """The unit's lease, taken as soon as it is free or refused at `deadline` (UnitBusyError)."""
    while True:
        lease = _lease(config, unit, holder_id(job))
        try:
            lease.__enter__()
            break
        except UnitBusyError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.info(json.dumps({"event": "lease_wait", "unit": unit, "busy": str(exc).split(":")[0]}))
            time.sleep(min(LEASE_POLL_SECONDS, left))
    try:
        yield lease
    finally:
        lease.__exit__(None, None, None)


def _scope(config: Config) -> str:
    settings = config.locks
    return settings.dynamodb_table if settings.store == "dynamodb" else config.paths.checkpoints


def _lease(config: Config, unit: str, holder: str) -> Any:
    if config.locks.store == "dynamodb":
        return DynamoDbLease(config.locks, unit, holder)
    return FileLease(Path(config.paths.checkpoints) / "_locks" / f"{unit}.lock", unit, holder)


def _busy(unit: str, holder: str, since: str, until: str | None) -> UnitBusyError:
    expiry = f", lease until {until}" if until else ""
    return UnitBusyError(
        f"unit {unit!r} (its tables and checkpoint) is being written by {holder} (since {since}{expiry}): one "
        "writer per table. Nothing was written by this job; its input stays where it is and is applied by the next "
        "run. Run it again when that job has finished" + (" or its lease has expired." if until else ".")
    )


class FileLease:
    """An exclusive flock on a lock file; the file says who holds it (for the refusal message)."""

    def __init__(self, path: Path, unit: str, holder: str) -> None:
        self.path, self.unit, self.holder = path, unit, holder
        self._fd: int | None = None

    def __enter__(self) -> FileLease:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_holder(fd)
            os.close(fd)
            raise _busy(self.unit, other.get("holder", "another process"), other.get("since", "?"), None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"holder": self.holder, "since": _now_text()}).encode(), 0)
        self._fd = fd
        return self

    def check(self) -> None:
        """A flock is held until the process ends: never lost."""

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict[str, str]:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _now_text(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() if at is None else at))


class DynamoDbLease:
    """A lease item {unit, holder, since, expires_at} in the lease table, renewed by a daemon thread."""

    def __init__(self, settings: LockSettings, unit: str, holder: str) -> None:
        from lakehouse.aws import client

        self.settings, self.unit, self.holder = settings, unit, holder
        self.table = str(settings.dynamodb_table)
        self._dynamodb = client("dynamodb", region=settings.region)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.valid_until = 0.0  # this process's view: when the lease expires unless renewed before
        self.lost = False  # another holder took it (a renewal's condition failed)

    def __enter__(self) -> DynamoDbLease:
        now = time.time()
        item = {
            "unit": {"S": self.unit},
            "holder": {"S": self.holder},
            "since": {"S": _now_text(now)},
            "expires_at": {"N": str(int(now + self.settings.lease_seconds))},
        }
        try:
            self._dynamodb.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(#u) OR expires_at < :now",
                ExpressionAttributeNames={"#u": "unit"},
                ExpressionAttributeValues={":now": {"N": str(int(now))}},
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            other = self._dynamodb.get_item(TableName=self.table, Key={"unit": {"S": self.unit}}, ConsistentRead=True)
            held = other.get("Item", {})
            until = _now_text(int(held["expires_at"]["N"])) if "expires_at" in held else None
            raise _busy(
                self.unit, held.get("holder", {}).get("S", "another job"), held.get("since", {}).get("S", "?"), until
            ) from None
        self.valid_until = now + self.settings.lease_seconds
        log.info(json.dumps({"event": "lease_taken", "unit": self.unit, "holder": self.holder, "table": self.table}))
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.unit}", daemon=True)
        self._renewer.start()
        return self

    def check(self) -> None:
        """LeaseLostError when the lease was taken over, or has gone two renewal periods unrenewed (a third of the
        lease is left: less than a long batch may need)."""
        left = self.valid_until - time.time()
        if self.lost or left < self.settings.lease_seconds / 3:
            why = "another job took it over" if self.lost else f"it was not renewed and expires in {max(left, 0):.0f} s"
            raise LeaseLostError(
                f"the lease on unit {self.unit!r} is no longer safely held ({why}; lease table {self.table}): this job "
                "stops writing before its next batch, so two jobs never write one table. What it committed stays; "
                "the input not yet applied is applied by the next run. Check the DynamoDB table's reachability."
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.settings.lease_seconds / 3):
            started = time.time()
            try:
                self._dynamodb.update_item(
                    TableName=self.table,
                    Key={"unit": {"S": self.unit}},
                    UpdateExpression="SET expires_at = :until",
                    ConditionExpression="holder = :me",
                    ExpressionAttributeValues={
                        ":until": {"N": str(int(time.time() + self.settings.lease_seconds))},
                        ":me": {"S": self.holder},
                    },
                )
            except self._dynamodb.exceptions.ConditionalCheckFailedException:
                self.lost = True  # the item has another holder now
                log.error(json.dumps({"event": "lease_lost", "unit": self.unit, "holder": self.holder}))
                return
            except Exception as exc:  # the next renewal tries again; `check` stops the writes if it keeps failing
                log.warning(json.dumps({"event": "lease_not_renewed", "unit": self.unit, "error": str(exc)[:500]}))
            else:
                self.valid_until = started + self.settings.lease_seconds

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
        try:
            self._dynamodb.delete_item(
                TableName=self.table,
                Key={"unit": {"S": self.unit}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": self.holder}},
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            log.warning(json.dumps({"event": "lease_lost", "unit": self.unit, "holder": self.holder}))
