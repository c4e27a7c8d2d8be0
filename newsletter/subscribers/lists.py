"""Operations on one list or all of them: read, count, page, validate, change, forget, export."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from newsletter.errors import SubscriberError
from newsletter.subscribers.csvfile import (
    Columns,
    checked_rows,
    open_list,
    status_of,
    to_subscriber,
)
from newsletter.subscribers.model import (
    COLUMNS,
    FIELD_NAME,
    HASH_PREFIX,
    NAME_MAX,
    STATUS_RANK,
    STATUSES,
    SUPPRESSION_COLUMNS,
    InvalidEmail,
    Problem,
    Subscriber,
    address_matcher,
    display,
    existing_list,
    key_of,
    list_names,
    list_path,
    normalize_email,
    suppression_hash,
    suppressions_path,
    utc_now,
)
from newsletter.subscribers.store import (
    Writer,
    atomic_write,
    check_value,
    checked_new,
    rewrite,
    row_values,
)
from newsletter.subscribers.suppressions import refuse_suppressed, suppression_key


@dataclass(frozen=True)
class Page:
    subscribers: list[Subscriber]
    total: int  # rows matching the filter, over all pages
    page: int
    per_page: int


def count(subscribers_dir: Path, list_name: str) -> dict[str, int]:
    """Rows by status, without checking them ('invalid' counts unknown statuses)."""
    counts = dict.fromkeys(STATUSES, 0)
    with open_list(existing_list(subscribers_dir, list_name)) as src:
        index = src.columns.index("status")
        for _, values in src.rows:
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
) -> Page:
    """One page of a list's rows, optionally only those with a status."""
    first = (max(number, 1) - 1) * per_page
    found: list[Subscriber] = []
    total = 0
    with open_list(existing_list(subscribers_dir, list_name)) as src:
        index = src.columns.index("status")
        for line, values in src.rows:
            if status and status_of(values[index]) != status:
                continue
            if first <= total < first + per_page:
                found.append(to_subscriber(src.columns, line, values))
            total += 1
    return Page(found, total, max(number, 1), per_page)


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


def _known_status(status: str) -> None:
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")


# --- changing lists --------------------------------------------------------------------------


def set_status(
    subscribers_dir: Path, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    """Set the status of every row with this address (locked, atomic); whether a row changed."""
    _, changed, _ = _update_status(subscribers_dir, list_name, email, status, source=source)
    return changed > 0


def remove_subscriber(
    subscribers_dir: Path, list_name: str, email: str, *, source: str = ""
) -> tuple[bool, str]:
    """Mark an address unsubscribed, keeping the row; (changed, status it had)."""
    found, changed, previous = _update_status(
        subscribers_dir,
        list_name,
        email,
        "unsubscribed",
        source=source,
        only=("subscribed", "pending"),
    )
    if not found:
        raise SubscriberError(f"{email.strip()} is not in list {list_name!r}")
    return changed > 0, previous


def _update_status(
    subscribers_dir: Path,
    list_name: str,
    email: str,
    status: str,
    *,
    source: str,
    only: Sequence[str] | None = None,
) -> tuple[int, int, str]:
    _known_status(status)
    check_value("source", source)
    path = existing_list(subscribers_dir, list_name)
    key = key_of(email)
    same = address_matcher(key)
    stamp = utc_now()
    found = changed = 0
    previous = ""

    def edit(cols, rows):
        nonlocal found, changed, previous
        if status in ("subscribed", "pending"):
            refuse_suppressed(subscribers_dir, key, email.strip())
        e, s, u = cols.index("email"), cols.index("status"), cols.index("updated_at")
        sa, src = cols.index("subscribed_at"), cols.index("source")
        for _, values in rows:
            if same(values[e]):
                found += 1
                current = status_of(values[s])
                previous = previous or current
                if current != status and (only is None or current in only):
                    values[s], values[u] = status, stamp
                    if source:
                        values[src] = source
                    if status == "subscribed" and not values[sa].strip():
                        values[sa] = stamp
                    changed += 1
            yield values
        return changed > 0

    needed = ["status", "updated_at"] + (["source"] if source else [])
    needed += ["subscribed_at"] if status == "subscribed" else []
    rewrite(path, needed, edit, create=False)
    return found, changed, previous


def add_subscriber(
    subscribers_dir: Path,
    list_name: str,
    email: str,
    *,
    name: str = "",
    fields: Mapping[str, str] | None = None,
    status: str = "subscribed",
    source: str = "",
    resubscribe: bool = False,
    check_deliverability: bool = False,
) -> str:
    """Add an address (or update its name and fields); returns 'added', 'updated' or 'unchanged'.

    An unsubscribed, bounced or complained row is only subscribed again with `resubscribe`,
    and a suppressed address never is.
    """
    _known_status(status)
    for key in fields or {}:
        if not FIELD_NAME.fullmatch(key) or key.lower() in COLUMNS:
            raise SubscriberError(
                f"invalid field name {key!r}: use letters, digits, '_' and '-', "
                f"and none of {', '.join(COLUMNS)}"
            )
    path = list_path(subscribers_dir, list_name)
    stamp = utc_now()
    new = Subscriber(
        email=email.strip(),
        name=name.strip(),
        status=status,
        subscribed_at=stamp if status == "subscribed" else "",
        updated_at=stamp,
        source=source,
        fields=dict(fields or {}),
    )
    key = checked_new(new, deliverability=check_deliverability)
    same = address_matcher(key)
    result = "added"

    def edit(cols, rows):
        nonlocal result
        if status in ("subscribed", "pending"):
            refuse_suppressed(subscribers_dir, key, new.email)
        e, s = cols.index("email"), cols.index("status")
        for line, values in rows:
            if same(values[e]):
                current = status_of(values[s])
                if result == "added":
                    result = "unchanged"
                    if status == "subscribed" and not resubscribe:
                        _refuse_unconfirmed(new.email, current, list_name, line)
                if _update_row(cols, values, new, current, resubscribe):
                    result = "updated"
            yield values
        if result == "added":
            yield row_values(cols, new)
        return result != "unchanged"

    rewrite(path, (*COLUMNS, *new.fields), edit)
    return result


def _refuse_unconfirmed(email: str, current: str, list_name: str, line: int) -> None:
    """Only the person subscribes an address that left or never confirmed (or --resubscribe)."""
    if current == "pending":
        raise SubscriberError(
            f"{email} is pending in list {list_name!r} (line {line}): they have not confirmed; "
            "add --resubscribe if they asked you to subscribe them"
        )
    if STATUS_RANK.get(current, 0) > 0:
        raise SubscriberError(
            f"{email} is {current} in list {list_name!r} (line {line}); "
            "add --resubscribe if they asked to be subscribed again"
        )


def _update_row(
    cols: Columns, values: list[str], new: Subscriber, current: str, resubscribe: bool
) -> bool:
    changed = False
    target = current
    if new.status == "subscribed" and resubscribe:
        target = "subscribed"
    if target != current:
        values[cols.index("status")] = target
        if not values[cols.index("subscribed_at")].strip():
            values[cols.index("subscribed_at")] = new.updated_at
        if new.source:
            values[cols.index("source")] = new.source
        changed = True
    updates = ({"name": new.name} if new.name else {}) | dict(new.fields)
    for column, value in updates.items():
        i = cols.index(column)
        if values[i].strip() != value:
            values[i] = value
            changed = True
    if changed:
        values[cols.index("updated_at")] = new.updated_at
    return changed


def forget(subscribers_dir: Path, email: str) -> dict[str, int]:
    """GDPR erasure: drop the address from every list, keep only its hash; rows removed per list."""
    key = key_of(email)
    same = address_matcher(key)
    digest = suppression_hash(key)

    def edit_suppressions(cols, rows):
        e, r, at = (cols.index(c) for c in SUPPRESSION_COLUMNS)
        changed, hashed = False, False
        for _, values in rows:
            found = suppression_key(values[e])
            if found == key:
                changed = True  # the plain address goes; the hash below replaces it
                continue
            hashed = hashed or found == digest
            yield values
        if not hashed:
            row = [""] * (len(cols.names) + 1)
            row[e], row[r], row[at] = digest, "erased", utc_now()
            changed = True
            yield row
        return changed

    # The hash goes in first, so an erasure interrupted half-way still blocks a re-import.
    rewrite(
        suppressions_path(subscribers_dir),
        SUPPRESSION_COLUMNS,
        edit_suppressions,
        known=SUPPRESSION_COLUMNS,
    )
    removed: dict[str, int] = {}
    for list_name in list_names(subscribers_dir):
        dropped = 0

        def edit(cols, rows):
            nonlocal dropped
            e = cols.index("email")
            for _, values in rows:
                if same(values[e]):
                    dropped += 1
                else:
                    yield values
            return dropped > 0

        rewrite(list_path(subscribers_dir, list_name), ("email",), edit, create=False)
        if dropped:
            removed[list_name] = dropped
    return removed


# --- export ----------------------------------------------------------------------------------


def export(
    subscribers_dir: Path,
    list_name: str,
    *,
    statuses: Sequence[str] = (),
    to: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Write a list (all rows, or those with the given statuses) as CSV; returns the row count."""
    for status in statuses:
        _known_status(status)
    path = existing_list(subscribers_dir, list_name)
    if to is not None and to.resolve().parent == subscribers_dir.resolve() and to.suffix == ".csv":
        raise SubscriberError(
            f"refusing to write {display(to)}: it would replace a list or the suppression file; "
            f"export to a file outside {display(subscribers_dir)}/"
        )
    with open_list(path) as src:
        target = atomic_write(to, bom=src.bom) if to is not None else None
        with target or _Stream(stream) as out:
            writer = Writer(out.file, src.newline)
            writer.writerow(src.columns.names)
            width, index, written = len(src.columns.names), src.columns.index("status"), 0
            for _, values in src.rows:
                if not statuses or status_of(values[index]) in statuses:
                    writer.writerow(values[:width])
                    written += 1
    return written


class _Stream:
    def __init__(self, stream: TextIO | None) -> None:
        self.file = stream or sys.stdout

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.file.flush()


# --- for newsletter serve (web unsubscribe, webhooks) ----------------------------------------


def downgrade_status(
    subscribers_dir: Path, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    """Move this address's rows to a less mailable status, never back up (locked, atomic).

    A bounce after a complaint leaves `complained`; an unsubscribe leaves `bounced`.
    Whether a row changed.
    """
    _known_status(status)
    only = tuple(s for s in STATUSES if STATUS_RANK[s] < STATUS_RANK[status])
    _, changed, _ = _update_status(
        subscribers_dir, list_name, email, status, source=source, only=only
    )
    return changed > 0
