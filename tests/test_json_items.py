"""`array_items` reads one array of a JSON document element by element: the same values as `json.loads`."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.sources.json_items import JsonProblem, Span, array_items, array_items_after, gap

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),  # written as JSON numbers with a fraction or exponent
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def items(text: str, key: str = "items", chunk_bytes: int = 4096, bom: bool = False) -> list:
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    return list(array_items(io.BytesIO(data), key, chunk_bytes=chunk_bytes))


def problem(text: str, chunk_bytes: int = 4096) -> JsonProblem:
    with pytest.raises(JsonProblem) as caught:
        items(text, chunk_bytes=chunk_bytes)
    return caught.value


@settings(max_examples=300, deadline=None)
@given(
    elements=st.lists(values, max_size=8),
    others=st.dictionaries(st.sampled_from(["a", "b", "meta"]), values, max_size=2),
    indent=st.sampled_from([None, 0, 2]),
    chunk_bytes=st.integers(min_value=1, max_value=64),
    bom=st.booleans(),
)
def test_elements_equal_json_loads_at_any_chunk_size(elements, others, indent, chunk_bytes, bom):
    document = json.dumps({**others, "items": elements}, indent=indent, ensure_ascii=False)
    found = items(document, chunk_bytes=chunk_bytes, bom=bom)
    assert [value for value, _ in found] == json.loads(document, parse_float=Decimal)["items"]
    data = b"\xef\xbb\xbf" * bom + document.encode()
    for _, end in found:  # just after the element's own text (the BOM counts: it is in the file)
        assert data[end - 1 : end].strip() and data[end:].lstrip()[:1] in (b",", b"]")


def test_offsets_are_the_bytes_just_after_each_element():
    document = '{"x": "é", "items": [1, {"a": "ü"}, "z"]}'
    data = document.encode()
    ends = [end for _, end in items(document, chunk_bytes=3)]
    assert [data[:end].decode()[-1] for end in ends] == ["1", "}", '"']
    assert ends[1] == data.index(b"}") + 1


def test_numbers_are_int_or_decimal_never_float():
    (whole, _), (fraction, _), (exponent, _) = items('{"items": [12345678901234567890123, 0.1, 1e400]}', chunk_bytes=2)
    assert whole == 12345678901234567890123 and fraction == Decimal("0.1") and exponent == Decimal("1e400")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "truncated"),
        ('{"items": [1, 2', "truncated"),
        ('{"items": [{"a": "b', "truncated"),
        ('{"items": [{"a": "a long value cut short by an interrupted download', "truncated"),
        ('{"items": [1, 2]', "truncated"),
        ('{"items": [1 2]}', "invalid JSON: expected ',' or ']'"),
        ('{"items": [NaN]}', "NaN is not a JSON value"),
        ('{"items": [1]} x', "something follows the root object"),
        ('{"items": [1], 3: 4}', "expected the name of a member"),
        ("[1]", "the root is an array, not an object"),
        ('{"other": [1]}', "the root object has no items"),
        ('{"items": 5}', "items is a number, not an array"),
    ],
)
def test_problems_are_named(text, message):
    for chunk_bytes in (1, 5, 4096):
        assert message in str(problem(text, chunk_bytes))


def test_a_problem_says_where_it_is():
    text = '{"items": [1, {"a": tru}]}'
    assert problem(text, chunk_bytes=4).position == text.index("tru")
    assert problem('{"items": [1, 2', chunk_bytes=4).position == len('{"items": [1, 2')


def test_a_second_array_of_the_key_is_refused_where_it_is_named():
    """Found by review: both arrays' elements were read, where `json.load` keeps only the last member of a name
    (the byte ranges' reader refused it already). Refused at the second name, at any chunk size."""
    text = '{"items": [1], "meta": 2, "items": [3]}'
    for chunk_bytes in (1, 5, 4096):
        refused = problem(text, chunk_bytes)
        assert "the root object has a second items" in str(refused)
        assert refused.position == text.rindex('"items"') + len('"items"')
    assert [value for value, _ in items('{"items": [1], "other": {"items": [2]}}')] == [1]  # a nested name is not it


def test_bytes_that_are_not_utf8_are_named():
    with pytest.raises(JsonProblem, match="not UTF-8"):
        list(array_items(io.BytesIO(b'{"items": ["\xff"]}'), "items"))


# --- byte ranges ---------------------------------------------------------------------------------------


def is_element(value) -> bool:
    return type(value) is dict and "@element" in value  # 8 characters: no key the strategies write


def ranges(data: bytes, cuts: list[int], chunk_bytes: int = 4096) -> tuple[list, list[Span]]:
    """Every range's elements (with their end offsets) and spans, as the processes of a split read them."""
    bounds = [0, *cuts, None]
    found, spans = [], []
    for k in range(len(bounds) - 1):
        span, until = Span(), bounds[k + 1]
        if k == 0:
            read = array_items(io.BytesIO(data), "items", chunk_bytes=chunk_bytes, until=until, span=span)
        else:
            raw = io.BytesIO(data)
            read = array_items_after(
                raw, "items", bounds[k], is_element, chunk_bytes=chunk_bytes, until=until, span=span
            )
        found += list(read)
        spans.append(span)
    return found, spans


def meet(spans: list[Span]) -> bool:
    return gap(spans) is None


@settings(max_examples=300, deadline=None)
@given(
    payloads=st.lists(values, min_size=1, max_size=8),
    others=st.dictionaries(st.sampled_from(["a", "b", "meta"]), values, max_size=2),
    indent=st.sampled_from([None, 2]),
    chunk_bytes=st.integers(min_value=1, max_value=64),
    bom=st.booleans(),
    data=st.data(),
)
def test_byte_ranges_meet_and_hold_every_element_once(payloads, others, indent, chunk_bytes, bom, data):
    elements = [{"@element": i, "v": payload} for i, payload in enumerate(payloads)]
    before = {k: v for k, v in others.items() if k != "meta"}
    document = json.dumps({**before, "items": elements, **others}, indent=indent, ensure_ascii=False)
    encoded = b"\xef\xbb\xbf" * bom + document.encode()
    whole = list(array_items(io.BytesIO(encoded), "items", chunk_bytes=chunk_bytes))
    last_start = encoded.rindex(b"{", 0, encoded.rindex(b'"@element"'))  # where the last element starts
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=last_start), min_size=1, max_size=3)))
    found, spans = ranges(encoded, cuts, chunk_bytes)
    assert meet(spans), (cuts, spans)
    assert found == whole  # the same values with the same end offsets, in order


def test_a_cut_anywhere_even_inside_a_character_is_found_or_refused():
    elements = [{"@element": i, "name": "Zoë ☃ 😀" * i, "nested": [{"x": "é"}]} for i in range(4)]
    for indent in (None, 2):
        encoded = json.dumps({"items": elements, "meta": {"n": "ü"}}, indent=indent, ensure_ascii=False).encode()
        whole = list(array_items(io.BytesIO(encoded), "items"))
        last_start = encoded.rindex(b"{", 0, encoded.rindex(b'"@element"'))
        for cut in range(1, len(encoded)):
            found, spans = ranges(encoded, [cut], chunk_bytes=7)
            if cut <= last_start:
                assert meet(spans) and found == whole, cut
            else:  # after the last element's start: the second range finds none, and the split is refused
                assert not meet(spans), cut


def test_a_decoy_inside_an_element_never_gives_a_wrong_split():
    """An object inside an element that looks like one (the marker key, then ',' or ']'): a range that
    starts on it is refused (a problem, or ranges that do not meet); never a split that passes with it."""
    elements = [{"@element": 0}, {"@element": 1, "pad": "x" * 40, "inner": [{"@element": 99}, {"@element": 98}]}]
    elements.append({"@element": 2})
    encoded = json.dumps({"items": elements}).encode()
    whole = list(array_items(io.BytesIO(encoded), "items"))
    holder, decoy = encoded.index(b'{"@element": 1'), encoded.index(b'{"@element": 98}')  # the last decoy
    for cut in range(1, len(encoded)):
        try:
            found, spans = ranges(encoded, [cut], chunk_bytes=5)
        except JsonProblem:
            assert holder < cut <= decoy, cut  # the second range started on a decoy
            continue
        assert not (holder < cut <= decoy and meet(spans)), cut
        if meet(spans):
            assert found == whole, cut


def test_a_range_with_nothing_to_read_has_no_first_element():
    span = Span()
    encoded = b'{"items": [{"@element": 1}], "meta": "' + b"x" * 50 + b'"}'
    assert list(array_items_after(io.BytesIO(encoded), "items", 40, is_element, span=span)) == []
    assert span == Span(first=None, next=None)
