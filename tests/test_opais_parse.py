"""The OPAIS export parser and its synthetic generator, on small files shaped like the real export (no Spark)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lakehouse.errors import InputError, SnapshotError
from lakehouse.sources.opais import (
    SCHEMAS,
    ParseProgress,
    content_key,
    log_progress,
    open_export,
    parse_export,
    range_starts,
)
from lakehouse.sources.opais_entities import ENTITIES
from lakehouse.sources.opais_flatten import SOURCES
from lakehouse.sources.opais_synth import EXPORT_NAME, write_export

ABSENT = object()  # a field left out of the JSON


def entity(ce_id: int = 1, id340b: str = "CH01234A", **fields: Any) -> dict[str, Any]:
    """A covered entity as the export writes it; fields=ABSENT leaves a field out."""
    base: dict[str, Any] = {
        "ceId": ce_id,
        "id340B": id340b,
        "entityType": "CH",
        "name": "VALLEY HEALTH CENTER",
        "subName": None,
        "participating": "TRUE",
        "participatingStartDate": "2010-01-01T00:00:00",
        "terminationDate": None,
        "grantNumber": "H80CS00123",
        "certifiedDecertifiedDate": "2023-05-01T10:11:12.123",
        "editDate": "2024-02-16T09:29:10.8756857",
        "authorizingOfficial": {"name": "Maria Garcia", "title": "CEO", "phoneNumber": "6175550123"},
        "primaryContact": {"name": "Li Wei", "title": "CFO", "phoneNumber": "(617) 555-0124"},
        "streetAddress": address(),
        "billingAddress": {"organization": "VALLEY HEALTH", **address()},
        "shippingAddresses": [{**address(), "is340BStreetAddress": True}],
        "medicaidNumbers": [{"medicaidNumber": "0012345A", "state": "MA"}],
        "npiNumbers": [{"npiNumber": "1234567893", "state": "MA"}],
        "contractPharmacies": [contract()],
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ABSENT}


def address(**fields: Any) -> dict[str, Any]:
    return {"addressLine1": "1 MAIN ST", "addressLine2": None, "city": "BOSTON", "state": "MA", "zip": "02134"} | {
        "zip4": "0001",
        **fields,
    }


def contract(contract_id: int = 100, pharmacy_id: int = 7, **fields: Any) -> dict[str, Any]:
    base = {
        "contractId": contract_id,
        "pharmacyId": pharmacy_id,
        "name": "WALGREENS #123",
        "address": address(addressLine1="9 ELM ST"),
        "phoneNumber": "6175550199",
        "beginDate": "2019-10-01T00:00:00",
        "terminationDate": None,
        "certifiedDecertifiedDate": "2023-06-01T00:00:00.5",
        "editDate": "2023-06-02T08:00:00.1234567",
        "comments": None,
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ABSENT}


def write_json(folder: Path, entities: list[Any], name: str = EXPORT_NAME, **root: Any) -> Path:
    path = folder / name
    path.write_text(json.dumps({"coveredEntities": entities, **root}), encoding="utf-8")
    return path


def write_zip(folder: Path, members: dict[str, str], name: str = "OPA_CE_DAILY_PUBLIC.zip") -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, text in members.items():
            archive.writestr(member, text)
    return path


def rows(path: Path, table: str, **options: Any) -> list[dict[str, Any]]:
    return parse_export(path, **options).tables[table].to_pylist()


def one(path: Path, table: str) -> dict[str, Any]:
    (row,) = rows(path, table)
    return row


def failure(path: Path, **options: Any) -> SnapshotError:
    with pytest.raises(SnapshotError) as caught:
        parse_export(path, **options)
    return caught.value


# --- the tables ---------------------------------------------------------------------------------------


def test_every_table_has_the_arrow_schema_of_its_entity(tmp_path: Path) -> None:
    parsed = parse_export(write_json(tmp_path, [entity()]))
    assert list(parsed.tables) == list(ENTITIES)
    for name, table in parsed.tables.items():
        assert table.schema == SCHEMAS[name]
        assert list(table.schema.names) == list(ENTITIES[name].columns)


def test_every_column_but_the_keys_is_read_from_json_in_column_order() -> None:
    for name, spec in ENTITIES.items():
        keys = [
            c for c in ("id340b", "ce_id", "content_key", "pharmacy_id") if c in spec.columns and c not in SOURCES[name]
        ]
        assert list(spec.columns) == keys + list(SOURCES[name]), name


def test_entity_fields_land_in_dim_ce(tmp_path: Path) -> None:
    row = one(write_json(tmp_path, [entity(terminationReason="Lost eligibility")]), "dim_ce")
    assert row == {
        "id340b": "CH01234A",
        "ce_id": 1,
        "entity_type": "CH",
        "name": "VALLEY HEALTH CENTER",
        "sub_name": None,
        "participating": True,
        "participating_start_date": dt.datetime(2010, 1, 1),
        "termination_date": None,
        "termination_reason": "Lost eligibility",
        "grant_number": "H80CS00123",
        "certified_decertified_date": dt.datetime(2023, 5, 1, 10, 11, 12, 123000),
        "edit_date": dt.datetime(2024, 2, 16, 9, 29, 10, 875685),
        "authorizing_official_name": "Maria Garcia",
        "authorizing_official_title": "CEO",
        "authorizing_official_phone_number": "6175550123",
        "primary_contact_name": "Li Wei",
        "primary_contact_title": "CFO",
        "primary_contact_phone_number": "(617) 555-0124",
        "primary_contact_phone_number_extension": None,
    }


def test_children_land_in_their_tables_under_their_parent(tmp_path: Path) -> None:
    parsed = parse_export(write_json(tmp_path, [entity()]))
    contract_row = parsed.tables["dim_ce_contract_pharmacy"].to_pylist()[0]
    assert contract_row == {
        "id340b": "CH01234A",
        "ce_id": 1,
        "contract_id": 100,
        "pharmacy_id": 7,
        "begin_date": dt.datetime(2019, 10, 1),
        "termination_date": None,
        "certified_decertified_date": dt.datetime(2023, 6, 1, 0, 0, 0, 500000),
        "edit_date": dt.datetime(2023, 6, 2, 8, 0, 0, 123456),
        "comments": None,
    }
    assert parsed.tables["dim_pharmacy"].to_pylist() == [
        {
            "pharmacy_id": 7,
            "name": "WALGREENS #123",
            **{"address_line1": "9 ELM ST", "address_line2": None, "city": "BOSTON", "state": "MA"},
            **{"zip": "02134", "zip4": "0001", "phone_number": "6175550199"},
        }
    ]
    shipping = parsed.tables["dim_ce_shipping_address"].to_pylist()[0]
    assert shipping["is_340b_street_address"] is True
    assert shipping["content_key"] == content_key(["1 MAIN ST", None, "BOSTON", "MA", "02134", "0001", True])
    assert parsed.tables["dim_ce_billing_address"].to_pylist()[0]["organization"] == "VALLEY HEALTH"
    assert parsed.stats.rows == dict.fromkeys(ENTITIES, 1)


# --- the quirks ---------------------------------------------------------------------------------------


def test_participating_is_true_or_false_in_any_case(tmp_path: Path) -> None:
    entities = [entity(1, "A", participating="TRUE"), entity(2, "B", participating="false")]
    entities += [entity(3, "C", participating="True"), entity(4, "D", participating=None)]
    path = write_json(tmp_path, entities)
    assert [r["participating"] for r in rows(path, "dim_ce")] == [True, False, True, None]


def test_participating_other_than_true_or_false_fails_naming_entity_and_value(tmp_path: Path) -> None:
    error = failure(write_json(tmp_path, [entity(1, "A"), entity(2, "B", participating="YES")]))
    assert "entity #1" in str(error) and "participating" in str(error) and "'YES'" in str(error)


def test_datetimes_with_0_3_or_7_fraction_digits_become_microseconds(tmp_path: Path) -> None:
    dates = ["2010-01-01T00:00:00", "2024-02-16T09:29:10.123", "2024-02-16T09:29:10.8756857"]
    path = write_json(tmp_path, [entity(i, f"E{i}", editDate=d) for i, d in enumerate(dates)])
    assert [r["edit_date"] for r in rows(path, "dim_ce")] == [
        dt.datetime(2010, 1, 1),
        dt.datetime(2024, 2, 16, 9, 29, 10, 123000),
        dt.datetime(2024, 2, 16, 9, 29, 10, 875685),
    ]


def test_other_datetime_layouts_are_read_by_python(tmp_path: Path) -> None:
    path = write_json(tmp_path, [entity(participatingStartDate="2010-01-01", terminationDate="2020-05-06 07:08:09")])
    row = one(path, "dim_ce")
    assert (row["participating_start_date"], row["termination_date"]) == (
        dt.datetime(2010, 1, 1),
        dt.datetime(2020, 5, 6, 7, 8, 9),
    )


def test_empty_datetime_is_null(tmp_path: Path) -> None:
    assert one(write_json(tmp_path, [entity(terminationDate="")]), "dim_ce")["termination_date"] is None


@pytest.mark.parametrize(
    "value", ["2024-02-30T00:00:00", "2024-02-16T09:29:10Z", "yesterday", "2024-02-16T09:29:10.1234567+05:00"]
)
def test_bad_datetime_fails_naming_its_entity(tmp_path: Path, value: str) -> None:
    entities = [entity(1, "A"), entity(2, "B", contractPharmacies=[contract(5, beginDate=value)]), entity(3, "C")]
    error = failure(write_json(tmp_path, entities))
    assert error.entity_index == 1
    assert "contractPharmacies[contractId=5].beginDate" in str(error) and repr(value) in str(error)


def test_leading_zeros_and_letters_in_identifiers_are_kept(tmp_path: Path) -> None:
    path = write_json(
        tmp_path,
        [
            entity(
                npiNumbers=[{"npiNumber": "0123456789", "state": "PR"}],
                medicaidNumbers=[{"medicaidNumber": "00A12", "state": "CT"}],
                primaryContact={
                    "name": "Li Wei",
                    "title": "CFO",
                    "phoneNumber": "0617555012",
                    "phoneNumberExtension": "007",
                },
            )
        ],
    )
    parsed = parse_export(path)
    assert parsed.tables["dim_ce_npi"].to_pylist()[0]["npi_number"] == "0123456789"
    assert parsed.tables["dim_ce_medicaid"].to_pylist()[0]["medicaid_number"] == "00A12"
    street = parsed.tables["dim_ce_street_address"].to_pylist()[0]
    assert (street["zip"], street["zip4"]) == ("02134", "0001")
    ce = parsed.tables["dim_ce"].to_pylist()[0]
    assert (ce["primary_contact_phone_number"], ce["primary_contact_phone_number_extension"]) == ("0617555012", "007")


def test_json_numbers_in_string_columns_keep_their_digits(tmp_path: Path) -> None:
    text = json.dumps({"coveredEntities": [entity(npiNumbers=[{"npiNumber": 1234567893, "state": "MA"}])]})
    text = text.replace('"zip4": "0001"', '"zip4": 12.50', 1)  # digits as written, even a decimal
    (tmp_path / "e.json").write_text(text)
    parsed = parse_export(tmp_path / "e.json")
    assert parsed.tables["dim_ce_npi"].to_pylist()[0]["npi_number"] == "1234567893"
    assert parsed.tables["dim_ce_street_address"].to_pylist()[0]["zip4"] == "12.50"


@pytest.mark.parametrize("missing", [ABSENT, None, []], ids=["absent", "null", "empty"])
def test_absent_null_and_empty_arrays_mean_no_children(tmp_path: Path, missing: Any) -> None:
    arrays = ("shippingAddresses", "medicaidNumbers", "npiNumbers", "contractPharmacies")
    parsed = parse_export(write_json(tmp_path, [entity(**dict.fromkeys(arrays, missing))]))
    children = ("dim_ce_shipping_address", "dim_ce_medicaid", "dim_ce_npi", "dim_ce_contract_pharmacy")
    assert [parsed.tables[t].num_rows for t in children] == [0, 0, 0, 0]
    assert parsed.tables["dim_pharmacy"].num_rows == 0


def test_fields_absent_from_an_entity_are_null_in_its_rows(tmp_path: Path) -> None:
    bare = {"ceId": 9, "id340B": "X9"}
    parsed = parse_export(write_json(tmp_path, [entity(), bare]))  # the other entity has every field
    ce = parsed.tables["dim_ce"].to_pylist()[1]
    assert ce == {column: None for column in ENTITIES["dim_ce"].columns} | {"id340b": "X9", "ce_id": 9}
    assert [parsed.tables[t].num_rows for t in ("dim_ce_street_address", "dim_ce_billing_address")] == [1, 1]


@pytest.mark.parametrize(
    "empty",
    [{}, dict.fromkeys(address(), None), dict.fromkeys(address(), "")],
    ids=["empty-object", "nulls", "empty-strings"],
)
def test_an_address_object_without_values_is_no_address_like_an_absent_one(tmp_path: Path, empty: dict) -> None:
    """An empty address written as {} (or as fields all null or "") instead of left out must not make an all-NULL
    row: HRSA changing how it writes one would then insert and delete addresses. Like absent and null, and like an
    element of the arrays, it is no child."""
    none = entity(streetAddress=ABSENT, billingAddress=None, shippingAddresses=[])
    nothing = parse_export(write_json(tmp_path, [entity(2, "B"), none], name="absent.json"))
    empties = entity(streetAddress=empty, billingAddress=empty, shippingAddresses=[empty, None])
    parsed = parse_export(write_json(tmp_path, [entity(2, "B"), empties]))
    assert parsed.tables == nothing.tables
    assert parsed.stats.rows["dim_ce_street_address"] == 1  # entity B's
    numbers = entity(npiNumbers=[{"npiNumber": None, "state": ""}], medicaidNumbers=[{}])
    counts = parse_export(write_json(tmp_path, [entity(2, "B"), numbers], name="numbers.json")).stats.rows
    assert (counts["dim_ce_npi"], counts["dim_ce_medicaid"]) == (1, 1)  # entity B's


def test_free_text_is_kept_verbatim(tmp_path: Path) -> None:
    name, comment = "  ST. MARY'S  HOSPITAL ", " Mail order  pharmacy"
    parsed = parse_export(write_json(tmp_path, [entity(name=name, contractPharmacies=[contract(comments=comment)])]))
    assert parsed.tables["dim_ce"].to_pylist()[0]["name"] == name
    assert parsed.tables["dim_ce_contract_pharmacy"].to_pylist()[0]["comments"] == comment


def test_unknown_fields_are_ignored_and_counted_by_their_path(tmp_path: Path) -> None:
    odd = entity(ceStatus={"code": 3, "flags": [True, None]}, contractPharmacies=[contract(wholesaler=[1, {"a": 2}])])
    odd["streetAddress"]["county"] = "SUFFOLK"
    odd["authorizingOfficial"]["email"] = "ao@example.org"
    odd["contractPharmacies"][0]["address"]["county"] = "SUFFOLK"
    other = entity(ce_id=2, id340b="CH09999B", ceStatus=None, npiNumbers=[{"npiNumber": "1234567893", "taxonomy": "x"}])
    path = write_json(tmp_path, [odd, other], exportDate="2024-02-16", meta={"count": 1})
    parsed = parse_export(path)
    plain = [entity(), entity(ce_id=2, id340b="CH09999B", npiNumbers=[{"npiNumber": "1234567893"}])]
    assert parsed.tables == parse_export(write_json(tmp_path, plain, name="plain.json")).tables
    assert parsed.stats.unknown_fields == {
        "authorizingOfficial.email": 1,
        "ceStatus": 2,
        "contractPharmacies[].address.county": 1,
        "contractPharmacies[].wholesaler": 1,
        "npiNumbers[].taxonomy": 1,
        "streetAddress.county": 1,
    }
    assert parse_export(path, parts=2).stats.unknown_fields == parsed.stats.unknown_fields
    assert parse_export(write_json(tmp_path, plain, name="again.json")).stats.unknown_fields == {}


def renamed(obj: dict[str, Any], **names: str) -> dict[str, Any]:
    """obj with keys renamed (old=new), as HRSA might rename a field."""
    return {names.get(key, key): value for key, value in obj.items()}


def test_a_field_renamed_in_every_entity_refuses_the_file_naming_it_its_columns_and_the_new_names(
    tmp_path: Path,
) -> None:
    """Read as absent, participating and editDate renamed by HRSA would be NULL in every dim_ce row: an update of
    every row, exported as such to PostgreSQL. The file is refused instead, like a cut one, saying what to do."""
    names = {"participating": "isParticipating", "editDate": "lastEditDate"}
    error = failure(write_json(tmp_path, [renamed(entity(i, f"E{i}"), **names) for i in range(3)]))
    message = str(error)
    assert "participating (dim_ce.participating), editDate (dim_ce.edit_date)" in message
    assert "isParticipating (3), lastEditDate (3)" in message  # the likely new names
    assert "SOURCES in lakehouse/sources/opais_flatten.py" in message
    assert "Nothing of this snapshot was applied" in message and isinstance(error, InputError)
    assert (error.file, error.entity_index) == (str(tmp_path / EXPORT_NAME), None)


def _in_contracts(e: dict[str, Any], **names: str) -> dict[str, Any]:
    return e | {"contractPharmacies": [renamed(c, **names) for c in e["contractPharmacies"]]}


def _in_contract_addresses(e: dict[str, Any], **names: str) -> dict[str, Any]:
    contracts = [c | {"address": renamed(c["address"], **names)} for c in e["contractPharmacies"]]
    return e | {"contractPharmacies": contracts}


@pytest.mark.parametrize(
    ("rename", "missing", "new"),
    [
        (
            lambda e: e | {"authorizingOfficial": renamed(e["authorizingOfficial"], title="jobTitle")},
            "authorizingOfficial.title (dim_ce.authorizing_official_title)",
            "authorizingOfficial.jobTitle (2)",
        ),
        (
            lambda e: renamed(e, primaryContact="contact"),
            "primaryContact (dim_ce.primary_contact_name, dim_ce.primary_contact_title",
            "contact (2)",
        ),
        (
            lambda e: e | {"streetAddress": renamed(e["streetAddress"], city="cityName")},
            "streetAddress.city (dim_ce_street_address.city)",
            "streetAddress.cityName (2)",
        ),
        (
            lambda e: e | {"npiNumbers": [renamed(n, npiNumber="npi") for n in e["npiNumbers"]]},
            "npiNumbers[].npiNumber (dim_ce_npi.npi_number)",
            "npiNumbers[].npi (2)",
        ),
        (
            lambda e: _in_contracts(e, editDate="lastEditDate"),
            "contractPharmacies[].editDate (dim_ce_contract_pharmacy.edit_date)",
            "contractPharmacies[].lastEditDate (3)",
        ),
        (
            lambda e: _in_contract_addresses(e, zip="zipCode"),
            "contractPharmacies[].address.zip (dim_pharmacy.zip)",
            "contractPharmacies[].address.zipCode (3)",
        ),
    ],
    ids=["sub-object", "object", "one-child", "array", "contracts", "contract-address"],
)
def test_a_field_renamed_in_every_object_of_its_kind_refuses_the_file(
    tmp_path: Path, rename: Any, missing: str, new: str
) -> None:
    entities = [entity(1, "A"), entity(2, "B", contractPharmacies=[contract(1), contract(2)])]
    message = str(failure(write_json(tmp_path, [rename(e) for e in entities])))
    assert missing in message and new in message


def test_a_field_null_everywhere_or_absent_from_some_objects_is_read_as_null(tmp_path: Path) -> None:
    entities = [
        entity(1, "A", participating=None, editDate=ABSENT, contractPharmacies=[contract(pharmacyId=ABSENT)]),
        entity(2, "B", participating=None, contractPharmacies=[contract(2, pharmacyId=None)]),
    ]
    parsed = parse_export(write_json(tmp_path, entities))
    assert [(r["participating"], r["edit_date"] is None) for r in parsed.tables["dim_ce"].to_pylist()] == [
        (None, True),
        (None, False),
    ]
    assert [r["pharmacy_id"] for r in parsed.tables["dim_ce_contract_pharmacy"].to_pylist()] == [None, None]


def test_optional_fields_and_children_no_entity_has_do_not_refuse_the_file(tmp_path: Path) -> None:
    """A small export may lack in every entity what HRSA leaves out when it has no value (a subName, a grant,
    a termination, an extension, an address's second line) and the children no entity has."""
    bare_address = {"addressLine1": "1 MAIN ST", "city": "BOSTON", "state": "MA", "zip": "02134"}
    plain = entity(
        subName=ABSENT,
        terminationDate=ABSENT,
        grantNumber=ABSENT,
        streetAddress=bare_address,
        billingAddress=ABSENT,
        shippingAddresses=ABSENT,
        medicaidNumbers=ABSENT,
        npiNumbers=ABSENT,
        contractPharmacies=[contract(address=bare_address, terminationDate=ABSENT, comments=ABSENT)],
    )
    parsed = parse_export(write_json(tmp_path, [plain]))
    assert parsed.stats.rows["dim_ce"] == parsed.stats.rows["dim_pharmacy"] == 1


@pytest.mark.parametrize(
    ("names", "missing", "new"),
    [
        ({"terminationDate": "terminatedDate"}, "terminationDate (dim_ce.termination_date)", "terminatedDate (2)"),
        ({"subName": "SubName"}, "subName (dim_ce.sub_name)", "SubName (2)"),
    ],
    ids=["similar", "case"],
)
def test_an_optional_field_renamed_in_every_entity_refuses_the_file(
    tmp_path: Path, names: dict[str, str], missing: str, new: str
) -> None:
    """Found by review: a field HRSA may leave out (a terminated entity's terminationDate) renamed in every entity
    was read as a day without it: every terminated entity turned un-terminated, the update the delete guard does
    not see. An unknown field of the same objects that looks like its new name refuses the file."""
    entities = [
        renamed(entity(i, f"E{i}", terminationDate="2026-01-0" + str(i), subName="CLINIC"), **names) for i in (1, 2)
    ]
    message = str(failure(write_json(tmp_path, entities)))
    assert missing in message and new in message
    unrelated = [
        entity(i, f"E{i}", terminationDate=ABSENT, wholesaler="X") for i in (1, 2)
    ]  # a day without, a new field
    assert parse_export(write_json(tmp_path, unrelated, name="other.json")).stats.rows["dim_ce"] == 2


def test_an_unpaired_surrogate_escape_refuses_the_file_naming_it(tmp_path: Path) -> None:
    """Found by review: JSON allows an escaped lone surrogate (a UTF-16 source's broken text), Python decodes it, and
    storing it failed with a bare UnicodeEncodeError naming neither file nor value."""
    error = failure(write_json(tmp_path, [entity(1, "A"), entity(2, "B", name="VALLEY \ud800 CLINIC")]))
    assert "unpaired surrogate" in str(error) and "VALLEY" in str(error) and error.file == str(tmp_path / EXPORT_NAME)


def test_fields_seen_by_any_process_count_for_the_whole_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Byte ranges in parallel: a field only the last range has is in the file; renamed in every range it is not,
    and the message is the one a single process gives. The same when the parts are every n-th entity instead."""
    from lakehouse.sources import opais_parts

    last_only = [entity(i, f"E{i}", notes="z" * 400, editDate=ABSENT) for i in range(9)] + [entity(9, "E9")]
    present = write_json(tmp_path, last_only, name="present.json")
    gone = write_json(tmp_path, [renamed(e, editDate="lastEditDate") for e in last_only], name="gone.json")
    with caplog.at_level(logging.INFO, logger="lakehouse.opais"):
        assert parse_export(present, parts=3).stats.entities == 10
        assert str(failure(gone)) == str(failure(gone, parts=3))
    assert not [m for m in caplog.messages if SPLIT_REFUSED in m]  # read in byte ranges
    monkeypatch.setattr(opais_parts.sys, "executable", "/bin/false")  # every n-th entity, each part here
    assert parse_export(present, parts=3).stats.entities == 10
    assert "editDate (dim_ce.edit_date)" in str(failure(gone, parts=3))


def test_utf8_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"coveredEntities": [entity()]}).encode())
    assert one(path, "dim_ce")["id340b"] == "CH01234A"


def test_max_edit_date_spans_entities_and_contracts(tmp_path: Path) -> None:
    late = contract(editDate="2024-03-01T00:00:00.1")
    path = write_json(tmp_path, [entity(1, "A"), entity(2, "B", contractPharmacies=[late])])
    assert parse_export(path).stats.max_edit_date == dt.datetime(2024, 3, 1, 0, 0, 0, 100000)


# --- keys, duplicates and conflicts ------------------------------------------------------------------


def test_content_key_is_stable_and_tells_null_from_empty() -> None:
    assert content_key(["0012345A", "MA"]) == hashlib.sha256(b"0012345A\x1fMA").hexdigest()
    assert content_key([None, "MA"]) == hashlib.sha256(b"\x00\x1fMA").hexdigest() != content_key(["", "MA"])
    assert len({content_key(["a", True]), content_key(["a", False]), content_key(["a", None])}) == 3


def test_identical_children_collapse_into_one_row_and_are_counted(tmp_path: Path) -> None:
    npi = {"npiNumber": "1234567893", "state": "MA"}
    same = entity(npiNumbers=[npi, dict(npi), {**npi, "state": "CT"}], contractPharmacies=[contract(), contract()])
    parsed = parse_export(write_json(tmp_path, [same]))
    assert parsed.tables["dim_ce_npi"].num_rows == 2
    assert parsed.tables["dim_ce_contract_pharmacy"].num_rows == 1
    assert parsed.stats.duplicates_collapsed == {
        "dim_ce_medicaid": 0,
        "dim_ce_npi": 1,
        "dim_ce_shipping_address": 0,
        "dim_ce_contract_pharmacy": 1,
    }


def test_repeated_contract_id_with_other_content_keeps_the_latest_edit_and_counts_a_conflict(tmp_path: Path) -> None:
    old = contract(comments="old", editDate="2023-01-01T00:00:00")
    new = contract(comments="new", editDate="2023-02-01T00:00:00")
    for order in ([old, new], [new, old]):
        parsed = parse_export(write_json(tmp_path, [entity(contractPharmacies=order)]))
        assert parsed.tables["dim_ce_contract_pharmacy"].to_pylist()[0]["comments"] == "new"
        assert (parsed.stats.contract_conflicts, parsed.stats.contract_conflict_examples) == (1, [("CH01234A", 1, 100)])


def test_pharmacy_conflict_is_resolved_whatever_the_entity_order(tmp_path: Path) -> None:
    older = entity(1, "A", contractPharmacies=[contract(1, 7, name="WALGREENS #123", editDate="2023-01-01T00:00:00")])
    newer = entity(2, "B", contractPharmacies=[contract(2, 7, name="Walgreens #123", editDate="2023-05-01T00:00:00")])
    results = []
    for order in ([older, newer], [newer, older]):
        parsed = parse_export(write_json(tmp_path, order))
        results.append(parsed.tables["dim_pharmacy"].to_pylist())
        assert (parsed.stats.pharmacy_conflicts, parsed.stats.pharmacy_conflict_examples) == (1, [7])
    assert results[0] == results[1]
    assert results[0][0]["name"] == "Walgreens #123"


def test_pharmacy_tie_on_edit_date_goes_to_the_smallest_attributes(tmp_path: Path) -> None:
    same_day = "2023-05-01T00:00:00"
    a = entity(1, "A", contractPharmacies=[contract(1, 7, phoneNumber="6175550002", editDate=same_day)])
    b = entity(2, "B", contractPharmacies=[contract(2, 7, phoneNumber="6175550001", editDate=same_day)])
    for order in ([a, b], [b, a]):
        assert one(write_json(tmp_path, order), "dim_pharmacy")["phone_number"] == "6175550001"


def test_same_pharmacy_under_many_entities_is_one_row(tmp_path: Path) -> None:
    entities = [entity(i, f"E{i}", contractPharmacies=[contract(i, 7)]) for i in range(5)]
    parsed = parse_export(write_json(tmp_path, entities))
    assert parsed.tables["dim_pharmacy"].num_rows == 1
    assert parsed.stats.pharmacy_conflicts == 0


# --- files --------------------------------------------------------------------------------------------


def test_zip_and_bare_json_give_the_same_tables(tmp_path: Path) -> None:
    bare = write_json(tmp_path, [entity(1, "A"), entity(2, "B")])
    zipped = write_zip(tmp_path, {EXPORT_NAME: bare.read_text()})
    parsed = parse_export(zipped)
    assert parsed.tables == parse_export(bare).tables
    assert parsed.stats.total_bytes == bare.stat().st_size == parsed.stats.bytes_read


def test_zip_member_is_found_whatever_its_name(tmp_path: Path) -> None:
    text = json.dumps({"coveredEntities": [entity()]})
    zipped = write_zip(tmp_path, {"export/opa_ce_daily_public_20240216.Json": text, "README.txt": "hi"}, name="x.zip")
    assert one(zipped, "dim_ce")["ce_id"] == 1
    with open_export(zipped) as stream:
        assert stream.read() == text.encode()


@pytest.mark.parametrize("members", [{"README.txt": "hi"}, {"a.json": "{}", "b.JSON": "{}"}], ids=["none", "two"])
def test_zip_without_exactly_one_json_member_fails_listing_its_content(tmp_path: Path, members: dict) -> None:
    error = failure(write_zip(tmp_path, members))
    assert "expected one .json file in the ZIP" in str(error)
    assert all(member in str(error) for member in members)


def test_damaged_zip_fails(tmp_path: Path) -> None:
    (tmp_path / "e.zip").write_bytes(b"PK\x03\x04 not really a zip")
    assert "not a readable ZIP" in str(failure(tmp_path / "e.zip"))


def test_missing_file_fails(tmp_path: Path) -> None:
    assert "does not exist" in str(failure(tmp_path / "nope.zip"))


def test_rows_are_batched_by_chunk_rows_with_the_same_result(tmp_path: Path) -> None:
    path = write_json(
        tmp_path, [entity(i, f"E{i}", contractPharmacies=[contract(i), contract(i + 100)]) for i in range(7)]
    )
    small = parse_export(path, chunk_rows=3)
    assert len(small.tables["dim_ce_contract_pharmacy"].to_batches()) == 5
    assert small.tables == parse_export(path).tables


def test_empty_covered_entities_gives_empty_tables(tmp_path: Path) -> None:
    parsed = parse_export(write_json(tmp_path, []))
    assert parsed.stats.entities == 0 and all(t.num_rows == 0 for t in parsed.tables.values())


def test_progress_reports_bytes_and_entities_and_logs_a_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    many = [contract(c, c, comments="x" * 500) for c in range(5)]
    path = write_json(tmp_path, [entity(i, f"E{i}", contractPharmacies=many) for i in range(100)])
    seen: list[ParseProgress] = []
    parse_export(path, progress=seen.append, progress_every_mb=0.001)
    assert len(seen) > 2 and seen[-1].done and seen[-1].entities == 100
    assert seen[-1].bytes_read == seen[-1].total_bytes == path.stat().st_size
    assert [p.bytes_read for p in seen] == sorted(p.bytes_read for p in seen)
    with caplog.at_level(logging.INFO, logger="lakehouse.opais"):
        log_progress(ParseProgress(120_300_000, 201_500_000, 54_000, 9.94))
    assert caplog.messages == ["opais: 120.3/201.5 MB (60%), 54,000 entities, 12.1 MB/s"]


# --- bad input ----------------------------------------------------------------------------------------


def test_truncated_json_fails_naming_position_and_entity(tmp_path: Path) -> None:
    path = write_json(tmp_path, [entity(i, f"E{i}") for i in range(3)])
    text = path.read_bytes()
    path.write_bytes(text[: text.index(b'"E2"') + 10])
    error = failure(path)
    assert "truncated" in str(error) and "entity #2" in str(error) and f"byte {error.position}" in str(error)
    assert error.position == path.stat().st_size and "Nothing of this snapshot was applied" in str(error)


def test_invalid_json_fails_naming_position_and_entity(tmp_path: Path) -> None:
    path = write_json(tmp_path, [entity(1, "A"), entity(2, "B")])
    path.write_text(path.read_text().replace('"B"', "B"))
    error = failure(path)
    assert "invalid JSON" in str(error) and "entity #1" in str(error) and error.position and error.position > 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[{"ceId": 1}]', "the root is an array, not an object"),
        ('"coveredEntities"', "the root is a string, not an object"),
        ('{"entities": [{"ceId": 1}]}', "the root object has no coveredEntities"),
        ('{"coveredEntities": {"ceId": 1}}', "coveredEntities is an object, not an array"),
        ('{"coveredEntities": null}', "coveredEntities is null, not an array"),
    ],
)
def test_wrong_root_fails_saying_what_it_found(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "e.json").write_text(text)
    assert problem in str(failure(tmp_path / "e.json"))


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("a string", "the entity is a string, not an object"),
        ({"id340B": "A9"}, "entity 'A9' has no ceId"),
        ({"ceId": 9}, "the entity has no id340B"),
        ({"ceId": "nine", "id340B": "A9"}, "ceId: 'nine' is a string, not a whole number"),
        ({"ceId": 9.5, "id340B": "A9"}, "ceId: Decimal('9.5') is a number, not a whole number"),
        (
            entity(9, "A9", contractPharmacies=[{"pharmacyId": 7}]),
            "contractPharmacies[0]: the contract has no contractId",
        ),
        (entity(9, "A9", npiNumbers=[{"npiNumber": {"n": 1}}]), "npiNumbers[0].npiNumber: an object where a string"),
        (entity(9, "A9", streetAddress=["1 MAIN ST"]), "streetAddress: an array where an object was expected"),
        (entity(9, "A9", npiNumbers="1234567893"), "npiNumbers: a string where an array was expected"),
    ],
    ids=["not-object", "no-ceid", "no-id340b", "text-ceid", "fraction-ceid", "no-contract-id", "npi", "street", "npis"],
)
def test_bad_entity_fails_naming_it(tmp_path: Path, bad: Any, problem: str) -> None:
    error = failure(write_json(tmp_path, [entity(1, "A"), bad]))
    assert problem in str(error)
    assert (error.entity_index, error.file) == (1, str(tmp_path / EXPORT_NAME))
    assert "entity #1" in str(error) and f"byte {error.position}" in str(error)
    assert isinstance(error, InputError)


def test_ceid_as_digits_in_a_string_is_read_as_a_number(tmp_path: Path) -> None:
    assert one(write_json(tmp_path, [entity(ce_id="0042")]), "dim_ce")["ce_id"] == 42  # type: ignore[arg-type]


def test_same_entity_key_twice_fails(tmp_path: Path) -> None:
    error = failure(write_json(tmp_path, [entity(1, "A"), entity(2, "B"), entity(1, "A")]))
    assert "already entity #0" in str(error) and error.entity_index == 2


def test_covered_entities_written_twice_refuses_the_file_in_one_process_as_in_parts(tmp_path: Path) -> None:
    """Found by review: one process read the entities of both arrays (a JSON reader keeps only the second), while
    the byte ranges refused the file; both refuse it now, naming the second array and where it is."""
    path = tmp_path / EXPORT_NAME
    first, second = json.dumps([entity(1, "A")]), json.dumps([entity(2, "B"), entity(3, "C")])
    path.write_text(f'{{"coveredEntities": {first}, "coveredEntities": {second}}}', encoding="utf-8")
    for parts in (1, 2):
        error = failure(path, parts=parts)
        assert "the root object has a second coveredEntities" in str(error), parts
        assert error.position == len(f'{{"coveredEntities": {first}, "coveredEntities"'), parts


# --- the synthetic export -----------------------------------------------------------------------------


def test_generator_is_deterministic(tmp_path: Path) -> None:
    first = write_export(tmp_path / "a.json", entities=60, seed=3)
    second = write_export(tmp_path / "b.json", entities=60, seed=3)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (first.entities, first.json_bytes) == (second.entities, second.json_bytes) == (60, first.file_bytes)
    write_export(tmp_path / "c.json", entities=60, seed=4)
    assert (tmp_path / "c.json").read_bytes() != (tmp_path / "a.json").read_bytes()


def test_generator_writes_the_quirks_of_the_real_export(tmp_path: Path) -> None:
    write_export(tmp_path / "e.json", entities=400, seed=0)
    entities = json.loads((tmp_path / "e.json").read_text())["coveredEntities"]
    assert {len(e["editDate"]) for e in entities} == {19, 23, 27}  # 0, 3 and 7 fractional digits
    assert {e["participating"] for e in entities} == {"TRUE", "FALSE"}
    assert any(e["streetAddress"]["zip"].startswith("0") for e in entities)
    npis = [e.get("npiNumbers", ABSENT) for e in entities]
    assert ABSENT in npis and None in npis and [] in npis
    assert any("subName" not in e for e in entities) and any(e.get("subName") is None for e in entities)
    assert any(e["name"].startswith(" ") for e in entities) and any("  " in e["name"] for e in entities)
    assert any("ceStatus" in e for e in entities)  # a field the parser does not know
    contracts = [c for e in entities for c in e.get("contractPharmacies") or []]
    assert len({c["pharmacyId"] for c in contracts}) < len(contracts) / 2  # pharmacies shared by entities
    assert all(isinstance(c["phoneNumber"], str) and isinstance(c["contractId"], int) for c in contracts)


def test_generator_output_parses_from_a_zip(tmp_path: Path) -> None:
    stats = write_export(tmp_path / "e.zip", entities=300, seed=1, zip=True)
    with zipfile.ZipFile(tmp_path / "e.zip") as archive:
        assert archive.namelist() == [EXPORT_NAME]
    parsed = parse_export(tmp_path / "e.zip")
    assert parsed.stats.entities == stats.entities == 300
    assert (
        parsed.tables["dim_ce_contract_pharmacy"].num_rows
        + parsed.stats.duplicates_collapsed["dim_ce_contract_pharmacy"]
        + parsed.stats.contract_conflicts
        == stats.contracts
    )
    assert parsed.tables["dim_pharmacy"].num_rows < parsed.tables["dim_ce_contract_pharmacy"].num_rows


def test_next_day_export_inserts_changes_and_deletes_entities_and_children(tmp_path: Path) -> None:
    days = []
    for day in (0, 1):
        write_export(tmp_path / f"d{day}.json", entities=2_000, seed=5, day=day)
        days.append(parse_export(tmp_path / f"d{day}.json").tables)
    ce0, ce1 = ({(r["id340b"], r["ce_id"]): r for r in t["dim_ce"].to_pylist()} for t in days)
    assert ce0.keys() - ce1.keys() and ce1.keys() - ce0.keys()  # entities gone, entities new
    changed = [key for key in ce0.keys() & ce1.keys() if ce0[key] != ce1[key]]
    assert 5 <= len(changed) <= 60  # ~1% edited
    for table, key in (("dim_ce_contract_pharmacy", "contract_id"), ("dim_ce_npi", "content_key")):
        before, after = ({(r["id340b"], r[key]) for r in t[table].to_pylist()} for t in days)
        assert before - after and after - before, table  # children removed and added
    assert days[1]["dim_ce"].num_rows < 2_100


# --- several processes --------------------------------------------------------------------------------


def sorted_rows(table: Any) -> list[tuple]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


SPLIT_REFUSED = "every process reads the whole file instead"


def test_parts_in_several_processes_give_the_tables_and_stats_of_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_export(tmp_path / "e.zip", entities=400, seed=3, zip=True)
    one_process = parse_export(tmp_path / "e.zip", parts=1)
    with caplog.at_level(logging.INFO, logger="lakehouse.opais"):
        three = parse_export(tmp_path / "e.zip", parts=3, chunk_rows=50)
    assert not [m for m in caplog.messages if SPLIT_REFUSED in m]  # read in byte ranges, the ZIP's too
    for name, table in one_process.tables.items():
        assert three.tables[name].equals(table), name  # the same rows in the same (file) order
        assert three.tables[name].schema == table.schema
    same = ("entities", "rows", "max_edit_date", "duplicates_collapsed", "contract_conflicts", "pharmacy_conflicts")
    for figure in (*same, "contract_conflict_examples", "pharmacy_conflict_examples"):
        assert getattr(three.stats, figure) == getattr(one_process.stats, figure), figure
    assert one_process.stats.pharmacy_conflicts > 0 and one_process.stats.duplicates_collapsed["dim_ce_npi"] > 0


def test_parts_of_a_pretty_printed_export_with_a_bom_and_crlf_lines_equal_one_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_export(tmp_path / "e.json", entities=200, seed=4)
    document = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    text = json.dumps(document, indent=4, ensure_ascii=False).replace("\n", "\r\n")
    path = tmp_path / "pretty.json"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    one_process = parse_export(path, parts=1)
    with caplog.at_level(logging.INFO, logger="lakehouse.opais"):
        four = parse_export(path, parts=4)
    assert not [m for m in caplog.messages if SPLIT_REFUSED in m]
    for name, table in one_process.tables.items():
        assert four.tables[name].equals(table), name
    assert four.stats.entities == 200


def test_progress_in_parts_goes_forward_and_ends_at_the_whole_file(tmp_path: Path) -> None:
    many = [contract(c, c, comments="x" * 500) for c in range(5)]
    path = write_json(tmp_path, [entity(i, f"E{i}", contractPharmacies=many) for i in range(100)])
    seen: list[ParseProgress] = []
    parse_export(path, progress=seen.append, progress_every_mb=0.001, parts=2)
    assert len(seen) > 2 and seen[-1].done and seen[-1].entities == 100
    assert seen[-1].bytes_read == seen[-1].total_bytes == path.stat().st_size
    assert [p.bytes_read for p in seen] == sorted(p.bytes_read for p in seen)
    assert all(p.bytes_read <= p.total_bytes for p in seen)


def test_an_entity_that_only_looks_like_one_is_never_taken_for_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A range may start on an object inside an entity that has id340B and ceId (a field the parser does
    not know): the ranges are then refused, and the whole-file way gives the tables of one process."""
    decoys = [{"id340B": "DECOY", "ceId": 99}, {"id340B": "DECOY2", "ceId": 98}]
    holder = entity(2, "B", notes="x" * 3000, related=decoys)  # the file's middle falls in its padding
    path = write_json(tmp_path, [entity(1, "A"), holder, entity(3, "C", notes="y" * 3000)])
    data = path.read_bytes()
    assert data.index(b"x" * 3000) < range_starts(len(data), 2)[1] < data.index(b"DECOY")  # the cut
    with caplog.at_level(logging.INFO, logger="lakehouse.opais"):
        split = parse_export(path, parts=2)
    assert [m for m in caplog.messages if SPLIT_REFUSED in m]
    one_process = parse_export(path, parts=1)
    for name, table in one_process.tables.items():
        assert sorted_rows(split.tables[name]) == sorted_rows(table), name
    assert sorted(r["id340b"] for r in split.tables["dim_ce"].to_pylist()) == ["A", "B", "C"]


def test_a_key_repeated_in_another_range_is_named_as_one_process_names_it(tmp_path: Path) -> None:
    entities = [entity(i, f"E{i}", notes="z" * 200) for i in range(10)] + [entity(2, "E2")]
    path = write_json(tmp_path, entities)
    with pytest.raises(SnapshotError) as one_process:
        parse_export(path, parts=1)
    with pytest.raises(SnapshotError) as split:
        parse_export(path, parts=3)
    assert str(split.value) == str(one_process.value)
    assert split.value.entity_index == 10 and "already entity #2" in str(split.value)
    assert split.value.position == one_process.value.position


def test_a_worker_that_fails_costs_time_not_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakehouse.sources import opais_parts

    path = tmp_path / "e.json"
    write_export(path, entities=60, seed=5)
    one_process = parse_export(path, parts=1)
    monkeypatch.setattr(opais_parts.sys, "executable", "/bin/false")  # every worker exits 1 at once
    with caplog.at_level(logging.INFO, logger="lakehouse.opais"):
        split = parse_export(path, parts=2)
    assert any("worker for part 1 of 2 failed (exit code 1)" in m for m in caplog.messages)
    assert any("flattening part 1 of 2 here" in m for m in caplog.messages)
    for name, table in one_process.tables.items():
        assert sorted_rows(split.tables[name]) == sorted_rows(table), name


def test_pharmacy_conflicts_across_parts_are_found(tmp_path: Path) -> None:
    older = entity(1, "A", contractPharmacies=[contract(1, 7, name="WALGREENS #123", editDate="2023-01-01T00:00:00")])
    newer = entity(2, "B", contractPharmacies=[contract(2, 7, name="Walgreens #123", editDate="2023-05-01T00:00:00")])
    parsed = parse_export(write_json(tmp_path, [older, newer]), parts=2)
    assert (parsed.stats.pharmacy_conflicts, parsed.tables["dim_pharmacy"].to_pylist()[0]["name"]) == (
        1,
        "Walgreens #123",
    )


def test_in_parts_the_first_problem_in_the_file_is_the_one_named(tmp_path: Path) -> None:
    entities = [entity(i, f"E{i}") for i in range(6)]
    entities[3]["participating"] = "MAYBE"  # flattened by part 1 of 2
    entities[4]["editDate"] = "yesterday"  # part 0
    with pytest.raises(SnapshotError) as caught:
        parse_export(write_json(tmp_path, entities), parts=2)
    assert caught.value.entity_index == 3 and "MAYBE" in str(caught.value)
    duplicate = [entity(1, "A"), entity(2, "B"), entity(1, "A")]
    with pytest.raises(SnapshotError, match="already entity #0"):
        parse_export(write_json(tmp_path, duplicate), parts=2)
