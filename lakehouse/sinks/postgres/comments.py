"""What every table, view and column of the exported 340B schema holds: the `COMMENT ON` statements.

BI tools and `psql \\d+` show these. The texts name what a column holds and how versions work; a test
checks that every column of every table and view has one, so a new entity column needs its text here.
"""

from __future__ import annotations

from lakehouse.sinks.postgres.base import EXPORT_TABLE, OPEN_END
from lakehouse.sinks.postgres.views import JOIN_VIEW, LIVE, live_view, view_columns
from lakehouse.sources.opais_entities import ENTITIES

ABOUT = {
    "dim_ce": "covered entities",
    "dim_ce_medicaid": "Medicaid numbers of a covered entity",
    "dim_ce_npi": "NPIs of a covered entity",
    "dim_ce_street_address": "street address of a covered entity",
    "dim_ce_billing_address": "billing address of a covered entity",
    "dim_ce_shipping_address": "shipping addresses of a covered entity",
    "dim_ce_contract_pharmacy": "contracts between a covered entity and a pharmacy",
    "dim_pharmacy": "contract pharmacies",
}
VERSIONS = (
    "One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version "
    "(expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a "
    "current version with change_type DELETE that keeps its last values. Current live rows: "
    "current_version_flg = 'Y' AND change_type <> 'DELETE' (the view %s)."
)
COLUMNS = {
    "id340b": "340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)",
    "ce_id": "HRSA's numeric id of the covered entity (ceId); with id340b, the entity's key",
    "entity_type": "covered entity type (e.g. DSH, CAH, FQHC)",
    "name": "name of the covered entity",
    "sub_name": "sub-name of the covered entity (site, department)",
    "participating": "whether the entity takes part in the 340B program",
    "participating_start_date": "when the entity's participation started",
    "termination_date": "when the entity's participation ended (NULL while it participates)",
    "termination_reason": "why the participation ended",
    "grant_number": "grant or contract number that makes the entity eligible",
    "certified_decertified_date": "when the entity was last certified or decertified",
    "edit_date": "when HRSA last edited the entity's record (editDate)",
    "authorizing_official_name": "name of the entity's authorizing official",
    "authorizing_official_title": "title of the entity's authorizing official",
    "authorizing_official_phone_number": "phone number of the entity's authorizing official",
    "primary_contact_name": "name of the entity's primary contact",
    "primary_contact_title": "title of the entity's primary contact",
    "primary_contact_phone_number": "phone number of the entity's primary contact",
    "primary_contact_phone_number_extension": "phone extension of the entity's primary contact",
    "content_key": "SHA-256 (hex) of the record's content: the key of a record without an id of its own, "
    "so a changed record is a deletion plus an insertion",
    "medicaid_number": "Medicaid billing number of the entity",
    "npi_number": "National Provider Identifier of the entity (10 digits, leading zeros kept)",
    "state": "US state or territory code",
    "address_line1": "first address line",
    "address_line2": "second address line",
    "city": "city",
    "zip": "ZIP code (leading zeros kept)",
    "zip4": "ZIP+4 extension",
    "organization": "organization named on the billing address",
    "is_340b_street_address": "whether this shipping address is the entity's 340B street address",
    "contract_id": "HRSA's id of the contract between the entity and the pharmacy",
    "pharmacy_id": "HRSA's id of the contract pharmacy",
    "begin_date": "when the contract started",
    "comments": "HRSA's free-text comments on the contract",
    "phone_number": "phone number of the pharmacy",
}
OVERRIDES = {
    ("dim_pharmacy", "name"): "name of the pharmacy",
    ("dim_ce_contract_pharmacy", "termination_date"): "when the contract ended (NULL while it is in force)",
    ("dim_ce_contract_pharmacy", "certified_decertified_date"): "when the contract was certified or decertified",
    ("dim_ce_contract_pharmacy", "edit_date"): "when HRSA last edited the contract (editDate)",
    ("dim_ce_medicaid", "state"): "state that issued the Medicaid number",
    ("dim_ce_npi", "state"): "state of the NPI's practice location",
}
SCD2 = {
    "effective_stp": "start of this version's validity (UTC, inclusive): the date of the export that brought it",
    "expiration_stp": f"end of this version's validity (UTC, exclusive); {OPEN_END} while it is the current version",
    "current_version_flg": "Y for the newest version of its key (also when that version is a deletion), N otherwise",
    "change_type": "what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left "
    "the export; the row keeps its last values)",
    "_sequence": "the engine's order of this key's changes (lineage)",
    "_batch_id": "micro-batch of the Delta history that wrote this version (lineage)",
    "exported_version": "Delta version of the history table that last changed this row",
}
EXPORT_COLUMNS = {
    "table_name": "the exported dimension",
    "delta_path": "location of the dimension's Delta history table",
    "exported_version": "the last Delta version exported: the next export reads the change feed after it",
    "rows_received": "rows the last export read from the change feed",
    "rows_written": "rows the last export inserted, updated or (a full export) deleted",
    "exported_at": "when the last export committed",
    "run_id": "the run that made the last export",
    "delta_table_id": "id of the Delta table exported (its metadata id): a table made again at the same path has "
    "another, and is exported in full; NULL in a row written before this column, whose table is exported in full once",
    "delta_commit": "digest of the exported version's commit file (_delta_log/<version>.json): a table put back from "
    "an older copy that reached this version again has another commit there, and is exported in full; NULL in a row "
    "written before this column (taken as matching)",
}


def describe(table: str, column: str) -> str:
    """What `column` of dimension `table` holds."""
    text = OVERRIDES.get((table, column)) or COLUMNS.get(column) or SCD2.get(column)
    if text is None:
        raise KeyError(f"no description of {table}.{column}: add one to lakehouse/sinks/postgres/comments.py")
    return text


def _literal(text: str) -> str:
    if "{" in text or "}" in text:  # the statements are formatted with {schema}
        raise ValueError(f"a comment cannot contain braces: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def _on(kind: str, target: str, text: str) -> str:
    return f"COMMENT ON {kind} {target} IS {_literal(text)};"


def comment_statements(pg_columns: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """(object, statements) pairs: one group of COMMENT ON per table and view; `{schema}` is a placeholder.

    `pg_columns` maps each dimension to its PostgreSQL columns (name -> type) in table order.
    """
    lines = [_on("TABLE", f"{{schema}}.{EXPORT_TABLE}", "last exported Delta version of each dimension")]
    lines += [_on("COLUMN", f"{{schema}}.{EXPORT_TABLE}.{c}", t) for c, t in EXPORT_COLUMNS.items()]
    out = [(f"comments {EXPORT_TABLE}", "\n".join(lines))]
    for table in ENTITIES:
        view = live_view(table)
        lines = [_on("TABLE", f"{{schema}}.{table}", f"{ABOUT[table]}: history. " + VERSIONS % view)]
        lines += [_on("COLUMN", f"{{schema}}.{table}.{c}", describe(table, c)) for c in pg_columns[table]]
        out.append((f"comments {table}", "\n".join(lines)))
        lines = [_on("VIEW", f"{{schema}}.{view}", f"{ABOUT[table]}: the live current rows of {table} ({LIVE}).")]
        for column, source in view_columns(view).items():
            text = "since when this version is current (UTC)" if column == "effective_stp" else describe(*source)
            lines.append(_on("COLUMN", f"{{schema}}.{view}.{column}", text))
        out.append((f"comments {view}", "\n".join(lines)))
    about = (
        "current covered entities with their current contract pharmacies: dim_ce_live joined with "
        "dim_ce_contract_pharmacy_live on (id340b, ce_id) and dim_pharmacy_live on pharmacy_id; "
        "deleted entities, contracts and pharmacies are left out."
    )
    lines = [_on("VIEW", f"{{schema}}.{JOIN_VIEW}", about)]
    for column, (table, source) in view_columns(JOIN_VIEW).items():
        lines.append(_on("COLUMN", f"{{schema}}.{JOIN_VIEW}.{column}", f"{describe(table, source)} ({table}.{source})"))
    out.append((f"comments {JOIN_VIEW}", "\n".join(lines)))
    return out
