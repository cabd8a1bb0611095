"""Views of the exported 340B schema for BI users: the live current rows, and the usual three-way join.

A deletion is exported as the current version of its key with `change_type = 'DELETE'` (the history
keeps it), so "current_version_flg = 'Y'" alone returns deleted entities. Each `<dimension>_live`
view keeps only the live current rows; `ce_contract_pharmacy_live` joins the current covered entities
with their current contracts and pharmacies through those views.
"""

from __future__ import annotations

import textwrap

from lakehouse.sources.opais_entities import ENTITIES

LIVE = "current_version_flg = 'Y' AND change_type <> 'DELETE'"
JOIN_VIEW = "ce_contract_pharmacy_live"
# (alias of the joined view, its column, the column's name in the join view), in view order
JOIN_COLUMNS = (
    ("ce", "id340b", "id340b"),
    ("ce", "ce_id", "ce_id"),
    ("ce", "entity_type", "entity_type"),
    ("ce", "name", "ce_name"),
    ("ce", "sub_name", "ce_sub_name"),
    ("cp", "contract_id", "contract_id"),
    ("cp", "begin_date", "contract_begin_date"),
    ("cp", "termination_date", "contract_termination_date"),
    ("p", "pharmacy_id", "pharmacy_id"),
    ("p", "name", "pharmacy_name"),
    ("p", "address_line1", "pharmacy_address_line1"),
    ("p", "city", "pharmacy_city"),
    ("p", "state", "pharmacy_state"),
    ("p", "zip", "pharmacy_zip"),
    ("p", "phone_number", "pharmacy_phone_number"),
)
JOINED = {"ce": "dim_ce", "cp": "dim_ce_contract_pharmacy", "p": "dim_pharmacy"}


def live_view(table: str) -> str:
    """The name of the view of `table`'s live current rows."""
    return f"{table}_live"


def view_columns(view: str) -> dict[str, tuple[str, str]]:
    """Column of a view -> (dimension, column) it comes from."""
    if view == JOIN_VIEW:
        return {name: (JOINED[alias], column) for alias, column, name in JOIN_COLUMNS}
    table = next(t for t in ENTITIES if live_view(t) == view)
    return {c: (table, c) for c in [*ENTITIES[table].columns, "effective_stp"]}


def view_statements() -> list[tuple[str, str]]:
    """(object, statement) pairs creating the views; `{schema}` is a placeholder. Idempotent (OR REPLACE)."""
    out = []
    for table in ENTITIES:
        view = live_view(table)
        columns = textwrap.fill(", ".join(view_columns(view)), 100, initial_indent=" " * 8, subsequent_indent=" " * 8)
        out.append(
            (
                f"view {view}",
                f"CREATE OR REPLACE VIEW {{schema}}.{view} AS\n    SELECT\n{columns}\n"
                f"    FROM {{schema}}.{table}\n    WHERE {LIVE}",
            )
        )
    width = max(len(f"{alias}.{column}") for alias, column, _ in JOIN_COLUMNS)
    select = ",\n".join(f"        {f'{alias}.{column}':<{width}} AS {name}" for alias, column, name in JOIN_COLUMNS)
    out.append(
        (
            f"view {JOIN_VIEW}",
            f"CREATE OR REPLACE VIEW {{schema}}.{JOIN_VIEW} AS\n    SELECT\n{select}\n"
            f"    FROM {{schema}}.{live_view('dim_ce')} ce\n"
            f"    JOIN {{schema}}.{live_view('dim_ce_contract_pharmacy')} cp"
            " ON cp.id340b = ce.id340b AND cp.ce_id = ce.ce_id\n"
            f"    JOIN {{schema}}.{live_view('dim_pharmacy')} p ON p.pharmacy_id = cp.pharmacy_id",
        )
    )
    return out
