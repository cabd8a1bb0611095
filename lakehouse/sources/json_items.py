"""The elements of one array of a JSON document's root object, one at a time, in constant memory.

`{"coveredEntities": [{...}, {...}, ...], ...}` is read a few MB at a time; each element is decoded on its own by
the standard library's C decoder (`json.JSONDecoder.raw_decode`), which builds Python objects faster than a
streaming event parser does, so memory holds one buffer and one element, never the document. Numbers are read
as `json` and ijson read them exactly: whole numbers as int, others as Decimal (never float); NaN and Infinity,
which JSON does not have, are refused.

Problems are raised as `JsonProblem` with their byte position in the file (the end of the file when it is cut
short); the caller names the file.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, BinaryIO

CHUNK_BYTES = 4 << 20
TAIL = 5  # a value cut this close to the end of the text read so far may be complete in the next chunk
_SPACE = re.compile(r"[ \t\n\r]*")
_KINDS = {"{": "an object", "[": "an array", '"': "a string", "t": "a boolean", "f": "a boolean", "n": "null"}


class JsonProblem(ValueError):
    """What is wrong with the document, and how far (in bytes) it had been read."""

    def __init__(self, problem: str, position: int) -> None:
        super().__init__(problem)
        self.problem, self.position = problem, position


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def kind(char: str) -> str:
    """What a JSON value starting with `char` is ("an object", "a number", ...)."""
    return _KINDS.get(char, "a number" if char in "-0123456789" else f"{char!r}")


class _Text:
    """The document as text, read and decoded (UTF-8, a BOM dropped) a chunk at a time."""

    def __init__(self, raw: BinaryIO, chunk_bytes: int) -> None:
        self.raw, self.chunk_bytes = raw, chunk_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.text, self.pos = "", 0
        self.bytes_read, self.ended = 0, False
        self.mark, self.mark_bytes = 0, 0  # a position in `text` and its byte offset in the file

    def offset(self, at: int) -> int:
        """The byte offset in the file of position `at` of the text (at or after the last one asked)."""
        self.mark_bytes += len(self.text[self.mark : at].encode())
        self.mark = at
        return self.mark_bytes

    def more(self) -> bool:
        """Read the next chunk; False at the end of the stream. Consumed text is dropped first."""
        if self.ended:
            return False
        first = self.bytes_read == 0
        data = self.raw.read(max(self.chunk_bytes, 4) if first else self.chunk_bytes)  # a BOM is whole in the first
        if first and data.startswith(codecs.BOM_UTF8):
            self.mark_bytes = len(codecs.BOM_UTF8)
        self.bytes_read += len(data)
        self.ended = not data
        try:
            fresh = self.decoder.decode(data, final=self.ended)
        except UnicodeDecodeError as exc:
            raise JsonProblem(f"the file is not UTF-8 text ({exc.reason})", self.bytes_read) from None
        if fresh:  # positions in the text stay valid when nothing was added
            self.offset(self.pos)
            self.text, self.pos, self.mark = self.text[self.pos :] + fresh, 0, 0
        return not self.ended or bool(fresh)

    def peek(self) -> str:
        """The next character after white space ('' at the end of the document)."""
        while True:
            self.pos = _SPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos : self.pos + 1]

    def expect(self, chars: str, what: str) -> str:
        char = self.peek()
        if char == "" or char not in chars:
            raise self.problem(f"expected {what}", end=char == "")
        self.pos += 1
        return char

    def value(self, decoder: json.JSONDecoder) -> Any:
        """Decode the value at the current position, reading more of the document as it needs."""
        self.peek()
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                # Near the end of the text the value may just go on in the next chunk (`tru|e`, `"ab|c"`).
                inside = exc.pos < len(self.text) - TAIL and not exc.msg.startswith("Unterminated")
                if inside:
                    raise self.problem(exc.msg, at=exc.pos) from None
                if not self.more():
                    raise self.problem(exc.msg, at=exc.pos, end=exc.pos >= len(self.text) - TAIL) from None
                continue
            except ValueError as exc:  # NaN, Infinity
                raise self.problem(str(exc)) from None
            if end > len(self.text) - TAIL and self.more():  # a number may go on in the next chunk (`0|.5`)
                continue
            self.pos = end
            return value

    def problem(self, message: str, *, at: int | None = None, end: bool = False) -> JsonProblem:
        if end:
            return JsonProblem("the JSON ends early: the file is truncated (an interrupted download?)", self.bytes_read)
        at = self.pos if at is None else at
        near = self.text[max(0, at - 30) : at + 30]
        return JsonProblem(f"invalid JSON: {message} near {near!r}", self.offset(max(at, self.mark)))


def array_items(raw: BinaryIO, key: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[Any, int]]:
    """Yield every element of the root object's array `key` and the byte offset just after it, in document order.

    The other members of the root are decoded and dropped. Raises JsonProblem if the root is not an object,
    has no such array, or anything in the document is not JSON (also after the last element: a document
    is valid or it is not used).
    """
    text = _Text(raw, chunk_bytes)
    decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)
    first = text.peek()
    if first != "{":
        if first == "":
            raise text.problem("", end=True)
        raise JsonProblem(f"the root is {kind(first)}, not an object", text.bytes_read)
    text.pos += 1
    found = False
    if text.peek() == "}":
        text.pos += 1
    else:
        while True:
            if text.peek() != '"':
                raise text.problem("expected the name of a member of the root object", end=text.peek() == "")
            name = text.value(decoder)
            text.expect(":", "':' after a member name")
            if name == key:
                found = True
                yield from _elements(text, decoder, key)
            else:
                text.value(decoder)
            if text.expect(",}", "',' or '}' after a member of the root object") == "}":
                break
    if not found:
        raise JsonProblem(f"the root object has no {key}", text.bytes_read)
    if text.peek() != "":
        raise text.problem("something follows the root object")


def _elements(text: _Text, decoder: json.JSONDecoder, key: str) -> Iterator[tuple[Any, int]]:
    opening = text.peek()
    if opening != "[":
        raise JsonProblem(f"{key} is {kind(opening) if opening else 'missing'}, not an array", text.bytes_read)
    text.pos += 1
    if text.peek() == "]":
        text.pos += 1
        return
    while True:
        value = text.value(decoder)
        yield value, text.offset(text.pos)
        if text.expect(",]", f"',' or ']' after an element of {key}") == "]":
            return
