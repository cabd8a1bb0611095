"""The encoding a CSV snapshot file is read in: the feed's, checked against the file, or `auto`'s pick for the file.

Read in a single-byte encoding (windows-1252, latin-1), every byte is a character: a file that is UTF-8 text reads
without a replacement character, so nothing is quarantined, and MUÑOZ is stored garbled (its Ñ as Ã and a quotation
mark). A file that decodes as UTF-8 and holds characters beyond ASCII is UTF-8 text (windows-1252 text decodes as
UTF-8 only when each letter beyond ASCII is followed by one to three of the symbols at 0x80-0xBF: text garbled
already), so a feed with a single-byte encoding refuses it. `encoding: auto` reads such a file as UTF-8 and any
other as windows-1252.
"""

from __future__ import annotations

import codecs
import gzip
from typing import Literal

from lakehouse.config import CsvSnapshotFeed
from lakehouse.errors import InputError
from lakehouse.sources.snapshot import file_name, open_bytes

AUTO = "auto"
FALLBACK = "windows-1252"  # what `auto` reads a file in that is not UTF-8 text (CMS's and Excel's single-byte one)
CHUNK_BYTES = 1 << 20
TextKind = Literal["ascii", "utf-8", "other"]


def is_utf(encoding: str) -> bool:
    """True for a Unicode encoding (UTF-8, UTF-16, UTF-32, any spelling Python knows); an encoding Python does not
    know is taken for a single-byte one."""
    try:
        return codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        return False


def text_kind(path: str) -> TextKind:
    """What the text of the file at `path` (a .gz decompressed, as the CSV reader does) decodes as: "ascii" (the
    same in UTF-8 and in any single-byte encoding), "utf-8" (UTF-8 with characters beyond ASCII) or "other".

    Streamed in chunks, through the opener of the file digest (a local file, an S3 object as it downloads); it stops
    at the first byte that is not UTF-8. A sequence cut by the file's end is not held against it: a file cut short
    is the unterminated-record check's."""
    # Strict: a byte that is not UTF-8 raises. utf-8-sig drops a leading BOM, which Excel's "CSV UTF-8" writes before
    # ASCII too: such a file is ASCII (read in windows-1252 its BOM is three characters the header's name drops).
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    beyond_ascii = False
    with open_bytes(path) as stored:
        stream = gzip.GzipFile(fileobj=stored) if path.lower().endswith(".gz") else stored
        while chunk := stream.read(CHUNK_BYTES):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError:
                return "other"
            beyond_ascii = beyond_ascii or not text.isascii()
    return "utf-8" if beyond_ascii else "ascii"


def file_encoding(path: str, feed: CsvSnapshotFeed, *, table: str) -> tuple[str, list[str]]:
    """The encoding to read the file at `path` in, and what to say about it in the load's notes.

    A UTF encoding is the feed's, unchecked. A single-byte one is checked: a file that is UTF-8 text beyond ASCII is
    refused (InputError). `auto`: UTF-8 when the file decodes as UTF-8, else windows-1252, said in the notes."""
    if feed.encoding == AUTO:
        if text_kind(path) == "other":
            return FALLBACK, [f"read as {FALLBACK} (encoding: auto: it is not UTF-8 text)"]
        return "UTF-8", ["read as UTF-8 (encoding: auto)"]
    if is_utf(feed.encoding) or text_kind(path) != "utf-8":
        return feed.encoding, []
    raise InputError(
        f"snapshot {file_name(path)} is UTF-8 text with characters beyond ASCII, but the feed's encoding is "
        f"{feed.encoding}: read in it, each such character would be stored as two or three others (MUÑOZ garbled) "
        "and nothing quarantined, so the file is refused (nothing was written). Set the feed's `encoding: utf-8` "
        f"(or `encoding: auto`, which reads each file as UTF-8 when it is, else as {FALLBACK}) and rerun; if the "
        f"feed's files are meant to be {feed.encoding}, ask its producer for one.",
        table=table,
    )
