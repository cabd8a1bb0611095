"""The eight business entities of the HRSA 340B OPAIS covered-entity export (the ID304B design).

One place names them, their keys and their columns; the parser, the Delta tables, the PostgreSQL DDL
and the export all follow it. Children without an id of their own are keyed by their parent plus
`content_key`, a SHA-256 of their content, so a changed child is a delete plus an insert.
"""

from __future__ import annotations

from dataclasses import dataclass

_ADDRESS = {
    "address_line1": "string",
    "address_line2": "string",
    "city": "string",
    "state": "string",
    "zip": "string",
    "zip4": "string",
}
_PARENT = {"id340b": "string", "ce_id": "bigint"}


@dataclass(frozen=True)
class Entity:
    """One business entity: its table name, primary key and columns (name -> Spark SQL type)."""

    name: str
    primary_key: tuple[str, ...]
    columns: dict[str, str]
    partition_by: tuple[str, ...] = ()


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "dim_ce",
            ("id340b", "ce_id"),
            {
                **_PARENT,
                "entity_type": "string",
                "name": "string",
                "sub_name": "string",
                "participating": "boolean",  # the export's STRING "TRUE"/"FALSE"
                "participating_start_date": "timestamp",
                "termination_date": "timestamp",
                "termination_reason": "string",
                "grant_number": "string",
                "certified_decertified_date": "timestamp",
                "edit_date": "timestamp",
                "authorizing_official_name": "string",
                "authorizing_official_title": "string",
                "authorizing_official_phone_number": "string",
                "primary_contact_name": "string",
                "primary_contact_title": "string",
                "primary_contact_phone_number": "string",
                "primary_contact_phone_number_extension": "string",
            },
        ),
        Entity(
            "dim_ce_medicaid",
            ("id340b", "ce_id", "content_key"),
            {**_PARENT, "content_key": "string", "medicaid_number": "string", "state": "string"},
        ),
        Entity(
            "dim_ce_npi",
            ("id340b", "ce_id", "content_key"),
            {**_PARENT, "content_key": "string", "npi_number": "string", "state": "string"},
        ),
        Entity("dim_ce_street_address", ("id340b", "ce_id"), {**_PARENT, **_ADDRESS}),
        Entity("dim_ce_billing_address", ("id340b", "ce_id"), {**_PARENT, "organization": "string", **_ADDRESS}),
        Entity(
            "dim_ce_shipping_address",
            ("id340b", "ce_id", "content_key"),
            {**_PARENT, "content_key": "string", **_ADDRESS, "is_340b_street_address": "boolean"},
        ),
        Entity(
            "dim_ce_contract_pharmacy",
            ("id340b", "ce_id", "contract_id"),
            {
                **_PARENT,
                "contract_id": "bigint",
                "pharmacy_id": "bigint",
                "begin_date": "timestamp",
                "termination_date": "timestamp",
                "certified_decertified_date": "timestamp",
                "edit_date": "timestamp",
                "comments": "string",
            },
        ),
        Entity(
            "dim_pharmacy",
            ("pharmacy_id",),
            {"pharmacy_id": "bigint", "name": "string", **_ADDRESS, "phone_number": "string"},
        ),
    )
}
