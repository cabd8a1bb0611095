"""The encoding a CSV snapshot file is read in: the feed's, checked against the file, or `auto`'s pick for the file.

Read in a single-byte encoding (windows-1252, latin-1), every byte is a character: a file that is UTF-8 text reads
without a replacement character, so nothing is quarantined, and MUÑOZ is stored garbled (its Ñ as Ã and a quotation
mark). A file that decodes as UTF-8 and holds characters beyond ASCII is UTF-8 text (windows-1252 text decodes as
UTF-8 only when each letter beyond ASCII is followed by one to three of the symbols at 0x80-0xBF: text garbled
already), so a feed with a single-byte encoding refuses it. `encoding: auto` reads such a file as UTF-8 and any
other as windows-1252.

The same pass finds how the file's lines end, for the CSV reader (`LineEnds`): the driver reads a file once, in chunks.
"""

from __future__ import annotations

import codecs
import gzip
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, Literal

from lakehouse.config import CsvSnapshotFeed
from lakehouse.errors import InputError
from lakehouse.sources.snapshot import file_name, open_bytes

AUTO = "auto"
FALLBACK = "windows-1252"  # what `auto` reads a file in that is not UTF-8 text (CMS's and Excel's single-byte one)
CHUNK_BYTES = 1 << 20
TextKind = Literal["ascii", "utf-8", "other"]


def is_utf(encoding: str) -> bool:
    """True for a Unicode encoding (UTF-8, UTF-16, UTF-32, any spelling Python knows, Java's `JAVA_WIDE` names); any
    other encoding Python does not know is taken for a single-byte one."""
    try:
        return codecs.lookup(JAVA_WIDE.get(encoding.lower(), encoding)).name.startswith("utf")
    except LookupError:
        return False


@contextmanager
def open_text(path: str) -> Iterator[BinaryIO]:
    """The bytes of the file's text, as the CSV reader reads them (a .gz decompressed), streamed by `open_bytes`."""
    with open_bytes(path) as stored:
        yield gzip.GzipFile(fileobj=stored) if path.lower().endswith(".gz") else stored


def text_kind(path: str, *, also: Callable[[bytes], object] | None = None) -> TextKind:
    """What the text of the file at `path` (a .gz decompressed, as the CSV reader does) decodes as: "ascii" (the
    same in UTF-8 and in any single-byte encoding), "utf-8" (UTF-8 with characters beyond ASCII) or "other".

    Streamed in chunks, through the opener of the file digest (a local file, an S3 object as it downloads); it stops
    at the first byte that is not UTF-8, unless `also` is given: that is handed every chunk, to its end (another
    check sharing the pass). A sequence cut by the file's end is not held against it: a file cut short is the
    unterminated-record check's."""
    # Strict: a byte that is not UTF-8 raises. utf-8-sig drops a leading BOM, which Excel's "CSV UTF-8" writes before
    # ASCII too: such a file is ASCII (read in windows-1252 its BOM is three characters the header's name drops).
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    kind: TextKind = "ascii"
    with open_text(path) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            if also is not None:
                also(chunk)
            if kind == "other":
                continue
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError:
                kind = "other"
                if also is None:
                    break
                continue
            if kind == "ascii" and not text.isascii():
                kind = "utf-8"
    return kind


def file_encoding(
    path: str, feed: CsvSnapshotFeed, *, table: str, also: Callable[[bytes], object] | None = None
) -> tuple[str, list[str]]:
    """The encoding to read the file at `path` in, and what to say about it in the load's notes.

    A UTF encoding is the feed's, unchecked. A single-byte one is checked: a file that is UTF-8 text beyond ASCII is
    refused (InputError). `auto`: UTF-8 when the file decodes as UTF-8, else windows-1252, said in the notes.
    `also`: as for `text_kind`, when the file is read (for a UTF encoding it is not)."""
    if feed.encoding == AUTO:
        if text_kind(path, also=also) == "other":
            return FALLBACK, [f"read as {FALLBACK} (encoding: auto: it is not UTF-8 text)"]
        return "UTF-8", ["read as UTF-8 (encoding: auto)"]
    if is_utf(feed.encoding) or text_kind(path, also=also) != "utf-8":
        return feed.encoding, []
    raise InputError(
        f"snapshot {file_name(path)} is UTF-8 text with characters beyond ASCII, but the feed's encoding is "
        f"{feed.encoding}: read in it, each such character would be stored as two or three others (MUÑOZ garbled) "
        "and nothing quarantined, so the file is refused (nothing was written). Set the feed's `encoding: utf-8` "
        f"(or `encoding: auto`, which reads each file as UTF-8 when it is, else as {FALLBACK}) and rerun; if the "
        f"feed's files are meant to be {feed.encoding}, ask its producer for one.",
        table=table,
    )


# A quoted value ending in a carriage return, closed at the end of its record: Spark's reader skips blanks after a
# closing quote, so `"TX7330B1\r"` then LF reads as the value TX7330B1\r, as an unquoted TX7330B1 then CRLF does.
CR_BEFORE_CLOSING_QUOTE = re.compile(r'\r"[\x00-\x09\x0b-\x20]*\n')
_BLANKS = "".join(chr(c) for c in range(0x21) if c != 0x0A)  # what the reader skips after a closing quote


# Java's names of UTF-16 and UTF-32 forms (lower case) that Python's codecs do not know; any other name Python does
# not know is one whose CR, LF and quote are single ASCII bytes (`windows-31j`, `x-EUC-TW`), or EBCDIC (no LF byte).
JAVA_WIDE = {
    "unicode": "utf-16",
    "unicodelittle": "utf-16",
    "unicodebig": "utf-16",
    "unicodelittleunmarked": "utf-16-le",
    "unicodebigunmarked": "utf-16-be",
    "iso-10646-ucs-2": "utf-16-be",
    "x-utf-16le": "utf-16-le",
    "x-utf-16be": "utf-16-be",
    "x-utf-16le-bom": "utf-16",
    "x-utf-32le": "utf-32-le",
    "x-utf-32be": "utf-32-be",
    "x-utf-32le-bom": "utf-32",
    "x-utf-32be-bom": "utf-32",
    "utf_32le_bom": "utf-32",
    "utf-32le-bom": "utf-32",
    "utf_32be_bom": "utf-32",
    "utf-32be-bom": "utf-32",
}


class LineEnds:
    """How a file's lines end, found over its text a chunk at a time (`feed`, then `finish`): whether it has line
    feeds (`lf`), whether any of them ends a CRLF (`crlf`), and the line of the first quoted value that ends in a
    carriage return at the end of its record (`cr_quote_line`, see CR_BEFORE_CLOSING_QUOTE); inside quotes or out;
    and how the first line ends (`first_end`).

    Found on the bytes, one character each (as latin-1): in UTF-8 and the single-byte encodings CR, LF and the quote
    are one byte, never part of another character. A UTF-16 or UTF-32 file is decoded in its encoding."""

    def __init__(self, encoding: str) -> None:
        try:
            name = codecs.lookup(JAVA_WIDE.get(encoding.lower(), encoding)).name
        except LookupError:  # `auto` (UTF-8 or windows-1252), or a name only Java knows (see JAVA_WIDE)
            name = "ascii"
        decoding = name if name.startswith(("utf-16", "utf-32")) else "latin-1"
        self._decoder = codecs.getincrementaldecoder(decoding)(errors="replace")
        self._held = ""  # the text's end so far, that the next chunk may make a CRLF or a CR_BEFORE_CLOSING_QUOTE of
        self._lines = 0  # line feeds before the held text, counted until a cr_quote_line is found
        self.fed = False
        self.lf = False
        self.crlf = False
        self.cr_quote_line: int | None = None
        self.first_end: str | None = None  # the first line's end: "\n", "\r\n" or "\r" (old Mac files)

    def feed(self, chunk: bytes) -> None:
        self.fed = True
        self._find(self._held + self._decoder.decode(chunk))

    def finish(self, path: str) -> LineEnds:
        """Found over the whole file: the file at `path` is read here if nothing fed its chunks (a UTF feed's
        encoding is not checked)."""
        if not self.fed:
            with open_text(path) as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    self.feed(chunk)
        self._find(self._held + self._decoder.decode(b"", final=True), final=True)
        return self

    def _find(self, text: str, *, final: bool = False) -> None:
        end = text.rstrip(_BLANKS)
        held = len(text) if final else len(end) - 2 if end.endswith('\r"') else text.rfind("\r", len(end))
        body = text[:held] if held >= 0 else text
        if self.cr_quote_line is None:
            if (match := CR_BEFORE_CLOSING_QUOTE.search(body)) is not None:
                self.cr_quote_line = self._lines + body.count("\n", 0, match.start()) + 1
            self._lines += body.count("\n")
        if self.first_end is None and (ends := re.search(r"\r\n|\r(?=.)|\n|\r$", body, re.DOTALL)) is not None:
            self.first_end = ends.group()
        self.lf = self.lf or "\n" in body
        self.crlf = self.crlf or "\r\n" in body
        self._held = text[len(body) :]
