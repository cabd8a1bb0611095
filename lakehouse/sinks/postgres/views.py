"""Views of the exported 340B schema for BI users: the live current rows, and the usual three-way join.

A deletion is exported as the current version of its key with `change_type = 'DELETE'` (the history
keeps it), so "current_version_flg = 'Y'" alone returns deleted entities. Each `<dimension>_live`
view keeps only the live current rows; `ce_contract_pharmacy_live` joins the current covered entities
with their current contracts and pharmacies through those views.

CREATE OR REPLACE VIEW may only add columns at the end of a view: a column added to a dimension comes before
`effective_stp` in its view, so `init_db` drops the views whose columns changed (`drop_changed_views`) and makes
them again, with their grants, in its transaction.
"""

from __future__ import annotations

import textwrap

import psycopg
from psycopg import sql

from lakehouse.errors import LakehouseError
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


def drop_changed_views(cur: psycopg.Cursor, schema: str) -> list[sql.Composed]:
    """Drop the views whose columns differ from the code's (CREATE OR REPLACE VIEW may only add columns at the end),
    with the join view when it reads one of them; return the GRANTs that give their privileges back once made again.
    """
    wanted = {view: list(view_columns(view)) for view in [*map(live_view, ENTITIES), JOIN_VIEW]}
    cur.execute(
        """SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum) FROM pg_class c
           JOIN pg_namespace s ON s.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE s.nspname = %s AND c.relkind = 'v' AND c.relname = ANY(%s) GROUP BY c.relname""",
        (schema, list(wanted)),
    )
    existing = dict(cur.fetchall())
    changed = {view for view, columns in existing.items() if columns != wanted[view]}
    if JOIN_VIEW in existing and changed & {live_view(t) for t in JOINED.values()}:
        changed.add(JOIN_VIEW)
    if not changed:
        return []
    cur.execute(
        """SELECT c.relname, a.privilege_type, a.is_grantable,
                  CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END
           FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace, aclexplode(c.relacl) a
           WHERE s.nspname = %s AND c.relname = ANY(%s) AND a.grantee <> c.relowner""",
        (schema, sorted(changed)),
    )
    grants = [
        sql.SQL("GRANT {} ON {} TO {}{}").format(
            sql.SQL(privilege),
            sql.Identifier(schema, view),
            sql.SQL("PUBLIC") if role is None else sql.Identifier(role),
            sql.SQL(" WITH GRANT OPTION" if grantable else ""),
        )
        for view, privilege, grantable, role in cur.fetchall()
    ]
    names = sql.SQL(", ").join(sql.Identifier(schema, v) for v in sorted(changed, key=lambda v: v != JOIN_VIEW))
    try:
        cur.execute(sql.SQL("DROP VIEW {}").format(names))
    except psycopg.errors.DependentObjectsStillExist as exc:
        raise LakehouseError(
            f"the views {sorted(changed)} of schema {schema} have other columns in this version of the code, so "
            f"they are made again, but other objects depend on them ({exc.diag.message_detail}). Nothing was "
            "changed. Drop those objects, rerun, then make them again"
        ) from None
    return grants
