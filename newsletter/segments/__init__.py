"""Segments: `--segment EXPR` and front matter `segment:` pick part of a list.

`tag:python and country = "UA" and not tag:paused`, `subscribed_at >= 2026-01-01`: parsed by
syntax.py into a tree (never eval'ed), run over each Subscriber by evaluate.py (the files
store) or turned into one SQL condition by sql.py (PostgreSQL; pg.py runs it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from newsletter.segments.syntax import Node, SegmentError, columns_of, parse
from newsletter.subscribers.model import COLUMNS, TAGS, Subscriber

__all__ = [
    "Segment",
    "SegmentError",
    "check_columns",
    "compile_segment",
    "for_list",
    "list_columns",
]


@dataclass(frozen=True)
class Segment:
    text: str
    node: Node

    def matches(self, sub: Subscriber) -> bool:
        from newsletter.segments.evaluate import matches

        return matches(self.node, sub)

    def sql(self) -> tuple[str, list[str]]:
        """(condition, parameters) for a `WHERE` over the PostgreSQL subscribers table."""
        from newsletter.segments.sql import where

        return where(self.node)


def compile_segment(
    text: str, columns: Iterable[str] | None = None, *, where: str = "--segment"
) -> Segment:
    """Parse a segment and, given a list's columns, check it names only those.

    Errors read "--segment: col 14: expected a value after '='" (`where` first).
    """
    try:
        node = parse(text)
        if columns is not None:
            check_columns(node, columns)
    except SegmentError as exc:
        raise SegmentError(exc.message, where=where) from None
    return Segment(text.strip(), node)


def check_columns(node: Node, columns: Iterable[str]) -> None:
    names = list(dict.fromkeys((*COLUMNS, *columns)))
    custom = set(names) - set(COLUMNS)
    for compare in columns_of(node):
        if compare.column.lower() in COLUMNS or compare.column in custom:
            continue
        hint = "; tags are matched with tag:NAME" if compare.column.lower() == TAGS else ""
        raise SegmentError(
            f"col {compare.col}: unknown column {compare.column!r} "
            f"(the list's columns: {', '.join(names)}){hint}"
        )


def for_list(
    subscribers_dir: Path, list_name: str, text: str, *, where: str = "--segment"
) -> Segment:
    """A segment checked against the columns of a CSV list."""
    return compile_segment(text, list_columns(subscribers_dir, list_name), where=where)


def list_columns(subscribers_dir: Path, list_name: str) -> list[str]:
    """The columns a segment may name in a CSV list: its header, without `tags`."""
    from newsletter.subscribers.csvfile import open_list
    from newsletter.subscribers.model import existing_list

    with open_list(existing_list(subscribers_dir, list_name)) as src:
        return [*COLUMNS, *(name for name, _ in src.columns.fields)]
