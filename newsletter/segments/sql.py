"""A segment tree as one SQL condition over the PostgreSQL `subscribers` table.

Known columns are columns, custom ones `fields->>'name'`, `tag:x` is `x = ANY(tags)`. Every
value goes in as a parameter; only whitelisted column names are written into the text. Each
part is made never NULL (COALESCE), so `not` means the same here as in Python, and text
compares in the "C" collation (code point order), as Python's strings do.
"""

from __future__ import annotations

from newsletter.segments.syntax import And, Compare, Node, Not, Or, Tag
from newsletter.subscribers.model import COLUMNS

_NUMBER = r"^-?[0-9]+(\.[0-9]+)?$"  # syntax._NUMBER, as a PostgreSQL regular expression


def where(node: Node) -> tuple[str, list[str]]:
    """(SQL condition, its parameters) for psycopg's %s placeholders."""
    params: list[str] = []
    return _sql(node, params), params


def _sql(node: Node, params: list[str]) -> str:
    if isinstance(node, Tag):
        params.append(node.name)
        return "COALESCE(%s = ANY(tags), false)"
    if isinstance(node, And):
        return "(" + " AND ".join(_sql(item, params) for item in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_sql(item, params) for item in node.items) + ")"
    if isinstance(node, Not):
        return f"(NOT {_sql(node.item, params)})"
    return _compare(node, params)


def _column(node: Compare) -> tuple[str, list[str]]:
    known = node.column.lower()
    if known in COLUMNS:
        return f"COALESCE({known}, '')", []  # a name from the whitelist, never the user's text
    return "COALESCE(fields->>%s, '')", [node.column]


def _compare(node: Compare, params: list[str]) -> str:
    column, own = _column(node)
    if node.op == "~":
        params += [*own, node.value]
        return f"(strpos({column}, %s) > 0)"
    if node.number:
        # CASE, because only it promises the cast is not tried on text that is not a number.
        params += [*own, *own, node.value]
        guard = "true" if node.op == "!=" else "false"
        return (
            f"(CASE WHEN {column} ~ '{_NUMBER}' THEN ({column})::numeric {node.op} %s::numeric "
            f"ELSE {guard} END)"
        )
    params += [*own, node.value]
    return f'({column} COLLATE "C" {node.op} %s COLLATE "C")'
