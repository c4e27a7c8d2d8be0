"""Reading lists: count, page, validate, export (changes are in subscribers.changes)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from newsletter.errors import SubscriberError
from newsletter.subscribers.csvfile import (
    Columns,
    checked_rows,
    open_list,
    status_of,
    to_subscriber,
)
from newsletter.subscribers.model import (
    HASH_PREFIX,
    NAME_MAX,
    STATUSES,
    SUPPRESSION_COLUMNS,
    InvalidEmail,
    Problem,
    Subscriber,
    display,
    existing_list,
    known_status,
    list_names,
    list_path,
    normalize_email,
    suppressions_path,
)
from newsletter.subscribers.store import (
    Writer,
    atomic_write,
)
from newsletter.subscribers.withdrawn import Withdrawn

if TYPE_CHECKING:
    from newsletter.segments import Segment


@dataclass(frozen=True)
class Page:
    subscribers: list[Subscriber]
    total: int  # rows matching the filter, over all pages
    page: int
    per_page: int


def count(
    subscribers_dir: Path,
    list_name: str,
    withdrawn: Withdrawn | None = None,
    *,
    segment: Segment | None = None,
) -> dict[str, int]:
    """Rows by status, without checking them ('invalid' counts unknown statuses); rows that
    `withdrawn` names count under the status they move to."""
    counts = dict.fromkeys(STATUSES, 0)
    with open_list(existing_list(subscribers_dir, list_name)) as src:
        index = src.columns.index("status")
        for line, values in _seen_through(src.columns, src.rows, withdrawn):
            if segment is not None and not segment.matches(
                to_subscriber(src.columns, line, values)
            ):
                continue
            status = status_of(values[index])
            if status in counts:
                counts[status] += 1
            else:
                counts["invalid"] = counts.get("invalid", 0) + 1
    return counts


def page(
    subscribers_dir: Path,
    list_name: str,
    *,
    status: str | None = None,
    number: int = 1,
    per_page: int = 50,
    withdrawn: Withdrawn | None = None,
    segment: Segment | None = None,
) -> Page:
    """One page of a list's rows (as `withdrawn` leaves them), optionally only those with a
    status or in a segment."""
    first = (max(number, 1) - 1) * per_page
    found: list[Subscriber] = []
    total = 0
    with open_list(existing_list(subscribers_dir, list_name)) as src:
        for line, values in _seen_through(src.columns, src.rows, withdrawn):
            if status and status_of(values[src.columns.index("status")]) != status:
                continue
            if segment is not None:
                sub = to_subscriber(src.columns, line, values)
                if not segment.matches(sub):
                    continue
            if first <= total < first + per_page:
                found.append(to_subscriber(src.columns, line, values))
            total += 1
    return Page(found, total, max(number, 1), per_page)


def _seen_through(
    cols: Columns, rows: Iterable[tuple[int, list[str]]], withdrawn: Withdrawn | None
) -> Iterator[tuple[int, list[str]]]:
    """The rows with the opt-outs `withdrawn` names shown (status and source changed)."""
    if not withdrawn:
        yield from rows
        return
    e, s, src = cols.index("email"), cols.index("status"), cols.index("source")
    for line, values in rows:
        moved = withdrawn.change(values[e], status_of(values[s]))
        if moved is not None:
            values = list(values)
            values[s] = moved[0]
            if moved[1]:
                values[src] = moved[1]
        yield line, values


def validate(
    subscribers_dir: Path, list_name: str | None = None, *, check_deliverability: bool = False
) -> list[Problem]:
    """Every problem in one list, or in all lists and the suppression file."""
    if list_name is not None:
        paths = [existing_list(subscribers_dir, list_name)]
    else:
        paths = [list_path(subscribers_dir, name) for name in list_names(subscribers_dir)]
    problems = [p for path in paths for p in validate_file(path, check_deliverability)]
    if list_name is None and suppressions_path(subscribers_dir).is_file():
        problems += _validate_suppressions(suppressions_path(subscribers_dir))
    return problems


def validate_file(path: Path, check_deliverability: bool = False) -> list[Problem]:
    """Every problem in one list file, each with its line number."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    where = display(path)
    try:
        for cols, line, values, key, _ in checked_rows(path, problems, check_deliverability):
            name = values[cols.standard[1]]
            if len(name) > NAME_MAX and len(" ".join(name.split())) > NAME_MAX:
                problems.append(_long_name(where, line, name))
            if key:
                first = seen.setdefault(key, line)
                if first != line:
                    email = values[cols.pos["email"]].strip()
                    problems.append(Problem(where, line, f"duplicate of line {first}: {email}"))
    except SubscriberError as exc:
        problems.append(_problem(exc))
    return sorted(problems, key=lambda p: p.line)


def _long_name(where: str, line: int, name: str) -> Problem:
    length = len(" ".join(name.split()))
    message = (
        f"warning: the name is {length:,} characters long; "
        f"messages show only its first {NAME_MAX} in the To header"
    )
    return Problem(where, line, message, warning=True)


def _validate_suppressions(path: Path) -> list[Problem]:
    problems: list[Problem] = []
    try:
        with open_list(path, SUPPRESSION_COLUMNS, problems=problems) as src:
            index = src.columns.index("email")
            for line, values in src.rows:
                email = values[index].strip()
                if email.lower().startswith(HASH_PREFIX):
                    if not re.fullmatch(r"[0-9a-f]{64}", email[len(HASH_PREFIX) :].lower()):
                        problems.append(Problem(src.where, line, f"malformed hash {email!r}"))
                    continue
                try:
                    normalize_email(email)
                except InvalidEmail as exc:
                    message = f"invalid email address {email!r}: {exc}"
                    problems.append(Problem(src.where, line, message))
    except SubscriberError as exc:
        problems.append(_problem(exc))
    return sorted(problems, key=lambda p: p.line)


def _problem(exc: SubscriberError) -> Problem:
    where, _, line = (exc.where or "").rpartition(":")
    if line.isdigit():
        return Problem(where, int(line), exc.message)
    return Problem(exc.where or "", 0, exc.message)


# --- export ----------------------------------------------------------------------------------


def export(
    subscribers_dir: Path,
    list_name: str,
    *,
    statuses: Sequence[str] = (),
    to: Path | None = None,
    stream: TextIO | None = None,
    withdrawn: Withdrawn | None = None,
) -> int:
    """Write a list (all rows, or those with the given statuses) as CSV, with the opt-outs
    `withdrawn` names shown; returns the row count."""
    for status in statuses:
        known_status(status)
    path = existing_list(subscribers_dir, list_name)
    refuse_export_target(subscribers_dir, to)
    with open_list(path) as src:
        target = atomic_write(to, bom=src.bom) if to is not None else None
        with target or _Stream(stream) as out:
            writer = Writer(out.file, src.newline)
            writer.writerow(src.columns.names)
            width, index, written = len(src.columns.names), src.columns.index("status"), 0
            for _, values in _seen_through(src.columns, src.rows, withdrawn):
                if not statuses or status_of(values[index]) in statuses:
                    writer.writerow(values[:width])
                    written += 1
    return written


def refuse_export_target(subscribers_dir: Path, to: Path | None) -> None:
    """An export never replaces a list or the suppression file."""
    if to is not None and to.resolve().parent == subscribers_dir.resolve() and to.suffix == ".csv":
        raise SubscriberError(
            f"refusing to write {display(to)}: it would replace a list or the suppression file; "
            f"export to a file outside {display(subscribers_dir)}/"
        )


class _Stream:
    def __init__(self, stream: TextIO | None) -> None:
        self.file = stream or sys.stdout

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.file.flush()
