"""The workspace suppression file: addresses (or hashes of erased ones) never to be mailed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from newsletter.errors import SubscriberError
from newsletter.subscribers.csvfile import open_list
from newsletter.subscribers.model import (
    HASH_PREFIX,
    SUPPRESSION_COLUMNS,
    SUPPRESSIONS,
    email_key,
    is_suppressed,
    key_of,
    suppression_hash,
    suppressions_path,
    utc_now,
)
from newsletter.subscribers.store import check_value, rewrite


def suppression_key(value: str) -> str:
    value = value.strip()
    return value.lower() if value.lower().startswith(HASH_PREFIX) else email_key(value)


def suppression_reasons(subscribers_dir: Path) -> dict[str, str]:
    """Suppressed keys and erased hashes with their reasons; an unreadable file raises."""
    path = suppressions_path(subscribers_dir)
    if not path.is_file():
        return {}
    reasons: dict[str, str] = {}
    with open_list(path, SUPPRESSION_COLUMNS) as src:
        e, r = src.columns.index("email"), src.columns.index("reason")
        for _, values in src.rows:
            if values[e].strip():
                reasons.setdefault(suppression_key(values[e]), values[r].strip() or "suppressed")
    return reasons


def load_suppressed(subscribers_dir: Path) -> set[str]:
    """Keys (and the hashes `forget` leaves) that must never be mailed from any list."""
    return set(suppression_reasons(subscribers_dir))


def suppression_reason(key: str, reasons: Mapping[str, str]) -> str | None:
    """Why a key is suppressed, or None."""
    return reasons.get(key) or reasons.get(suppression_hash(key))


def add_suppression(subscribers_dir: Path, email: str, reason: str) -> None:
    """Never mail this address again from any list (hard bounce, complaint, global unsubscribe)."""
    add_suppressions(subscribers_dir, [(email, reason)])


def add_suppressions(subscribers_dir: Path, entries: Iterable[tuple[str, str]]) -> int:
    """Suppress several addresses in one locked write; returns how many were new."""
    wanted = checked_entries(entries)
    added = 0

    def edit(cols, rows):
        nonlocal added
        e, r, at = (cols.index(c) for c in SUPPRESSION_COLUMNS)
        present: set[str] = set()
        for _, values in rows:
            present.add(suppression_key(values[e]))
            yield values
        stamp = utc_now()
        for key, (email, reason) in wanted.items():
            if not is_suppressed(key, present):
                row = [""] * (len(cols.names) + 1)
                row[e], row[r], row[at] = email, reason, stamp
                added += 1
                yield row
        return added > 0

    if wanted:
        rewrite(
            suppressions_path(subscribers_dir), SUPPRESSION_COLUMNS, edit, known=SUPPRESSION_COLUMNS
        )
    return added


def checked_entries(entries: Iterable[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """key -> (address, reason) of each entry to suppress (the first one per key), checked."""
    wanted: dict[str, tuple[str, str]] = {}
    for email, reason in entries:
        email = email.strip()
        check_value("email", email)
        check_value("reason", reason)
        wanted.setdefault(key_of(email), (email, reason))
    return wanted


def refuse_suppressed(subscribers_dir: Path, key: str, email: str) -> None:
    # Called with the list's lock held: `forget` writes its hash before it takes list locks,
    # so an edit either sees the hash or runs before `forget` edits the list.
    reason = suppression_reason(key, suppression_reasons(subscribers_dir))
    if reason:
        raise SubscriberError(_suppressed_message(email, reason))


def _suppressed_message(email: str, reason: str) -> str:
    if reason == "erased":
        return f"{email} was erased with `forget`; it cannot be added again"
    return (
        f"{email} is suppressed ({reason}) in subscribers/{SUPPRESSIONS}.csv; "
        "remove that line first if they really asked to be mailed again"
    )
