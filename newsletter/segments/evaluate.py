"""A segment tree over one Subscriber, in Python: the files store's filter."""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal

from newsletter.segments.syntax import And, Compare, Node, Not, Or, Tag, is_number
from newsletter.subscribers.model import COLUMNS, Subscriber

# Text compares by code point, as PostgreSQL's "C" collation does, so both stores agree.
_ORDER: dict[str, Callable[[object, object], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def cell(sub: Subscriber, column: str) -> str:
    """A column's value for a subscriber; a missing or empty one is ""."""
    known = column.lower()
    if known in COLUMNS:
        return getattr(sub, known) or ""
    return sub.fields.get(column, "")


def matches(node: Node, sub: Subscriber) -> bool:
    if isinstance(node, Tag):
        return node.name in sub.tags
    if isinstance(node, And):
        return all(matches(item, sub) for item in node.items)
    if isinstance(node, Or):
        return any(matches(item, sub) for item in node.items)
    if isinstance(node, Not):
        return not matches(node.item, sub)
    return compare(node, cell(sub, node.column))


def compare(node: Compare, value: str) -> bool:
    if node.op == "~":
        return node.value in value
    if node.number:
        # A number compares with numbers only: a cell that is not one is unequal, never < or >.
        if not is_number(value):
            return node.op == "!="
        return _ORDER[node.op](Decimal(value), Decimal(node.value))
    return _ORDER[node.op](value, node.value)
