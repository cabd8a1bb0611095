"""The elements of one array of a JSON document's root object, one at a time, in constant memory.

`{"coveredEntities": [{...}, {...}, ...], ...}` is read a few MB at a time; each element is decoded on its own by
the standard library's C decoder (`json.JSONDecoder.raw_decode`), which builds Python objects faster than a
streaming event parser does, so memory holds one buffer and one element, never the document. Numbers are read
as `json` and ijson read them exactly: whole numbers as int, others as Decimal (never float); NaN and Infinity,
which JSON does not have, are refused.

A large array can be read in byte ranges by several processes (`array_items(..., until=)` for the first range,
`array_items_after` for the others): each range starts at an element it recognizes and ends before the first
element that starts at or after the next range's first byte. `Span` says where a range began and ended, so that
the caller can prove the ranges meet end to end.

Problems are raised as `JsonProblem` with their byte position in the file (the end of the file when it is cut
short); the caller names the file.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO

CHUNK_BYTES = 4 << 20
TAIL = 5  # a value cut this close to the end of the text read so far may be complete in the next chunk
_SPACE = re.compile(r"[ \t\n\r]*")
_CONTINUATION = bytes(range(0x80, 0xC0))  # bytes that continue a UTF-8 sequence, never start one
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


@dataclass
class Span:
    """Where a range of an array's elements lies in the file, in bytes: `first` is where its first element
    starts, `next` where the element after its last one starts (None when the range went to the array's end
    and the rest of the document was checked)."""

    first: int | None = None
    next: int | None = None


class _Text:
    """The document as text, read and decoded (UTF-8, a BOM dropped) a chunk at a time, from byte `start` on.

    From a `start` inside the file, bytes that continue a UTF-8 sequence begun before it are skipped."""

    def __init__(self, raw: BinaryIO, chunk_bytes: int, start: int = 0) -> None:
        self.raw, self.chunk_bytes, self.start = raw, chunk_bytes, start
        self.decoder = codecs.getincrementaldecoder("utf-8" if start else "utf-8-sig")()
        self.text, self.pos = "", 0
        self.bytes_read, self.ended = start, False
        self.mark, self.mark_bytes = 0, start  # a position in `text` and its byte offset in the file

    def offset(self, at: int) -> int:
        """The byte offset in the file of position `at` of the text (at or after the last one asked)."""
        self.mark_bytes += len(self.text[self.mark : at].encode())
        self.mark = at
        return self.mark_bytes

    def more(self) -> bool:
        """Read the next chunk; False at the end of the stream. Consumed text is dropped first."""
        if self.ended:
            return False
        first = self.bytes_read == self.start
        data = self.raw.read(max(self.chunk_bytes, 4) if first else self.chunk_bytes)  # a BOM is whole in the first
        if first and not self.start and data.startswith(codecs.BOM_UTF8):
            self.mark_bytes = len(codecs.BOM_UTF8)
        if first and self.start:
            skipped = len(data) - len(data.lstrip(_CONTINUATION))
            self.bytes_read += skipped
            self.mark_bytes += skipped
            data = data[skipped:]
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
                if not self.more():  # a string still open at the end of the file: the file was cut inside it
                    cut = exc.pos >= len(self.text) - TAIL or exc.msg.startswith("Unterminated")
                    raise self.problem(exc.msg, at=exc.pos, end=cut) from None
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


def array_items(
    raw: BinaryIO, key: str, *, chunk_bytes: int = CHUNK_BYTES, until: int | None = None, span: Span | None = None
) -> Iterator[tuple[Any, int]]:
    """Yield every element of the root object's array `key` and the byte offset just after it, in document order.

    The other members of the root are decoded and dropped. Raises JsonProblem if the root is not an object,
    has no such array or two of them, or anything in the document is not JSON (also after the last element: a
    document is valid or it is not used). With `until`, it stops before the first element that starts at or after
    that byte, and `span.next` says where that element starts; the rest of the document is then not read.
    """
    span = span or Span()
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
            if name == key and found:  # `json.load` would keep only this one; the ranges' reader refuses it too
                raise text.problem(f"the root object has a second {key}")
            text.expect(":", "':' after a member name")
            if name == key:
                found = True
                yield from _elements(text, decoder, key, until, span)
                if span.next is not None:
                    return
            else:
                text.value(decoder)
            if text.expect(",}", "',' or '}' after a member of the root object") == "}":
                break
    if not found:
        raise JsonProblem(f"the root object has no {key}", text.bytes_read)
    if text.peek() != "":
        raise text.problem("something follows the root object")


def array_items_after(
    raw: BinaryIO,
    key: str,
    begin: int,
    is_element: Callable[[Any], bool],
    *,
    chunk_bytes: int = CHUNK_BYTES,
    until: int | None = None,
    span: Span,
) -> Iterator[tuple[Any, int]]:
    """Like `array_items`, for the elements of the array `key` from the first one that starts at or after byte
    `begin` (`raw` is read from there; it must be seekable).

    That element is recognized, not known: the first `{` from which an object decodes that `is_element`
    accepts and that `,` or `]` follows. `span.first` says where it starts (None: no such object). The caller
    proves the guess right when the range before this one ends exactly there. After the array's `]` the rest of
    the root object is checked as `array_items` does; a second member named `key` is a problem here.
    """
    raw.seek(begin)
    text = _Text(raw, chunk_bytes, start=begin)
    decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)
    if not _find_element(text, decoder, is_element):
        return
    span.first = text.offset(text.pos)
    yield from _run(text, decoder, key, until, span)
    if span.next is not None:
        return
    while text.expect(",}", "',' or '}' after a member of the root object") == ",":
        if text.peek() != '"':
            raise text.problem("expected the name of a member of the root object", end=text.peek() == "")
        if text.value(decoder) == key:
            raise text.problem(f"the root object has a second {key}")
        text.expect(":", "':' after a member name")
        text.value(decoder)
    if text.peek() != "":
        raise text.problem("something follows the root object")


def gap(spans: list[Span]) -> str | None:
    """Why byte ranges read in order (the first by `array_items`, the others by `array_items_after`) do not
    hold every element of the array once, or None when they do.

    The first range starts at the array's true start. If a range starts at a true element, it reads true
    elements one after another, so the start of its next element is true; when that is where the following
    range began, that range's guess was right too. By induction every range is then right, none overlaps or
    leaves a gap, and the last one reached the array's end."""
    for k in range(len(spans) - 1):
        if spans[k].next is None or spans[k].next != spans[k + 1].first:
            return f"byte range {k} ends at {spans[k].next} but range {k + 1} starts at {spans[k + 1].first}"
    if spans[-1].next is not None:
        return "the last byte range does not reach the end of the array"
    return None


def _find_element(text: _Text, decoder: json.JSONDecoder, is_element: Callable[[Any], bool]) -> bool:
    """Move to the first `{` that starts an object `is_element` accepts and `,` or `]` follows; False if none."""
    while True:
        at = text.text.find("{", text.pos)
        if at < 0:
            text.pos = len(text.text)
            if not text.more():
                return False
            continue
        text.pos = at
        name = _SPACE.match(text.text, at + 1).end()  # type: ignore[union-attr]
        if name == len(text.text) and text.more():  # the object's first member name may be in the next chunk
            continue
        if text.text[name : name + 1] != '"':
            text.pos = at + 1
            continue
        try:
            value, end = decoder.raw_decode(text.text, at)
        except json.JSONDecodeError as exc:
            cut = exc.pos >= len(text.text) - TAIL or exc.msg.startswith("Unterminated")
            if not (cut and text.more()):
                text.pos = at + 1
            continue
        except ValueError:  # NaN or Infinity inside
            text.pos = at + 1
            continue
        after = _SPACE.match(text.text, end).end()  # type: ignore[union-attr]
        if after == len(text.text) and text.more():
            continue
        if is_element(value) and text.text[after : after + 1] in (",", "]"):
            return True
        text.pos = at + 1


def _elements(
    text: _Text, decoder: json.JSONDecoder, key: str, until: int | None, span: Span
) -> Iterator[tuple[Any, int]]:
    opening = text.peek()
    if opening != "[":
        raise JsonProblem(f"{key} is {kind(opening) if opening else 'missing'}, not an array", text.bytes_read)
    text.pos += 1
    if text.peek() == "]":
        text.pos += 1
        return
    span.first = text.offset(text.pos)
    yield from _run(text, decoder, key, until, span)


def _run(text: _Text, decoder: json.JSONDecoder, key: str, until: int | None, span: Span) -> Iterator[tuple[Any, int]]:
    """The elements from the one at the current position to the array's `]`, or to the first that starts at or
    after byte `until` (then `span.next` is where it starts)."""
    while True:
        if until is not None and text.peek() and (start := text.offset(text.pos)) >= until:
            span.next = start
            return
        value = text.value(decoder)
        yield value, text.offset(text.pos)
        if text.expect(",]", f"',' or ']' after an element of {key}") == "]":
            return
