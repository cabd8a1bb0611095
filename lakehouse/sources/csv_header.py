"""A CSV snapshot's header: its names normalised to snake_case and matched with the feed's columns.

`ZIP Code` and `ZIP_CODE` are both zip_code: two names of a column the feed reads refuse the file (which of them
holds it cannot be told), two of a column it does not read are numbered (`notes`, `notes_2`) and ignored.
"""

from __future__ import annotations

import re
from itertools import count

from lakehouse.config import CsvSnapshotFeed
from lakehouse.errors import InputError


def normalise_header(name: str) -> str:
    """'Provider Last Name' → provider_last_name, 'City/Town' → city_town, 'NPI' → npi."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def header_columns(header: list[str], feed: CsvSnapshotFeed) -> list[str]:
    """The header's names normalised; an older name (`header_aliases`) takes its column's name when the header
    has neither that name nor an earlier alias of it: `lst_nm` → provider_last_name in a CMS file from before 2024.

    A name met again (`Notes` and `NOTES_` are both notes) is numbered, notes_2: such a name is one no column reads
    (`check_header_names` refuses the file otherwise)."""
    aliases = {normalise_header(old): column for old, column in feed.header_aliases.items()}
    names = [normalise_header(c) for c in header]
    taken = set(names)
    columns: list[str] = []
    for n in names:
        target = aliases.get(n)
        if target is not None and target not in taken:
            taken.add(target)
            n = target
        elif n in columns:
            n = next(f"{n}_{k}" for k in count(2) if f"{n}_{k}" not in taken)
            taken.add(n)
        columns.append(n)
    return columns


def check_header_names(header: list[str], feed: CsvSnapshotFeed, name: str, *, table: str) -> None:
    """Refuse a header two of whose names normalise to a name the feed reads (`ZIP Code` and `ZIP_CODE` are both
    zip_code, or both an alias of a column): which of them holds the column cannot be told."""
    aliases = {normalise_header(old): column for old, column in feed.header_aliases.items()}
    normalised = [normalise_header(c) for c in header]
    by_name: dict[str, list[str]] = {}
    for raw, n in zip(header, normalised, strict=True):
        by_name.setdefault(n, []).append(raw)
    clashes = []
    for n, raws in by_name.items():
        alias = aliases.get(n) if aliases.get(n) not in normalised else None
        if len(raws) > 1 and (n in feed.columns or alias is not None):
            read = n if alias is None else f"{n} (the feed's header_aliases name for {alias})"
            clashes.append(f"{', '.join(repr(r) for r in raws)} all normalise to {read}")
    if clashes:
        raise InputError(
            f"snapshot {name}: header names {'; '.join(clashes)}, a column the feed reads: which of them holds it "
            "cannot be told, so the file is refused (nothing was written). Rename or remove all but one of them in "
            "the file and land it again.",
            table=table,
        )


def spark_header(header: list[str]) -> list[str]:
    """The names Spark's CSV reader gives the header's columns: a name that repeats, ignoring case, numbered by its
    position (`NPI0`, `npi12`). The schema the file is read with has them, as its header check expects."""
    lower = [c.lower() for c in header]
    return [f"{c}{i}" if lower.count(c.lower()) > 1 else c for i, c in enumerate(header)]
