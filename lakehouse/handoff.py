"""The landing router's hourly folders, seen from the engine: a run-once job reads only the closed folders.

The router (deploy/lambdas/landing_router.py) copies each DMS file into `p_date=YYYY-MM-DD/p_hour=HH/` of the
in-process bucket: the open folder, named by a control item in DynamoDB. The first step of each state machine
run moves the item on to the run's own hour, so new files land in a new folder while the run works. A run-once
job reads the folders strictly before the open one: the configured path's `p_date=*/p_hour=*` becomes a glob of
the closed folders only. A file still being copied into a closed folder when the job lists it is simply not
there yet; the checkpoint tracks files, not folders, so the next run reads it. The long-running stream reads
every folder (each file once, as it lands).
"""

from __future__ import annotations

import datetime as dt

from lakehouse.config import HandoffSettings
from lakehouse.errors import ConfigError

ALL_FOLDERS = "p_date=*/p_hour=*"


def _before(value: str) -> list[str]:
    """Globs matching every string of `value`'s width that sorts before it (digits compared, other characters kept).

    "11-23" → ["[0-0]*", "1[0-0]*", "11-[0-1]*", "11-2[0-2]"]
    """
    globs = []
    for i, char in enumerate(value):
        if char.isdigit() and char != "0":
            last = str(int(char) - 1)
            rest = "*" if i < len(value) - 1 else ""
            globs.append(f"{value[:i]}[0-{last}]{rest}")
    return globs


def closed_folders(p_date: str, p_hour: str) -> str:
    """A Hadoop glob of every `p_date=/p_hour=` folder strictly before the open one (p_date, p_hour).

    One brace group of alternatives (Hadoop expands braces that contain `/` before it globs), each a plain
    pattern: the earlier days with any hour, then the earlier hours of the open day.
    """
    day = dt.date.fromisoformat(p_date).isoformat()
    hour = f"{int(p_hour):02d}"
    alternatives = [f"p_date={d}/p_hour=*" for d in _before(day)]
    alternatives += [f"p_date={day}/p_hour={h}" for h in _before(hour)]
    if not alternatives:  # the open folder is the first there can be
        return "p_date=0000-00-00/p_hour=00"
    return "{" + ",".join(alternatives) + "}"


def closed_source_path(path: str, p_date: str, p_hour: str) -> str:
    """`path` with its `p_date=*/p_hour=*` segment narrowed to the folders closed before (p_date, p_hour)."""
    if ALL_FOLDERS not in path:
        raise ConfigError(f"source path {path} has no {ALL_FOLDERS} segment for the landing router's folders")
    return path.replace(ALL_FOLDERS, closed_folders(p_date, p_hour), 1)


def open_folder(settings: HandoffSettings) -> tuple[str, str]:
    """(p_date, p_hour) of the folder the router writes to now, from the control item."""
    from lakehouse.aws import client

    dynamodb = client("dynamodb", region=settings.region)
    key = {"pipeline": {"S": settings.pipeline}}
    item = dynamodb.get_item(TableName=settings.control_table, Key=key, ConsistentRead=True).get("Item")
    where = f"control item pipeline={settings.pipeline!r} of DynamoDB table {settings.control_table}"
    if not item or "p_date" not in item or "p_hour" not in item:
        raise ConfigError(
            f"{where} is missing or has no p_date / p_hour: the first step of each state machine run sets them, and "
            "`make deploy-artifacts` seeds them. Start the run from its state machine, or seed the item."
        )
    p_date, p_hour = item["p_date"]["S"], item["p_hour"].get("S", item["p_hour"].get("N", ""))
    try:
        closed_folders(p_date, p_hour)
    except ValueError:
        raise ConfigError(f"{where}: p_date {p_date!r} / p_hour {p_hour!r} are not YYYY-MM-DD / HH") from None
    return p_date, p_hour
