"""Changing lists: add, set or downgrade a status, remove, forget (locked, atomic rewrites)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from newsletter.errors import SubscriberError
from newsletter.subscribers.csvfile import (
    Columns,
    status_of,
)
from newsletter.subscribers.model import (
    COLUMNS,
    FIELD_NAME,
    STATUS_RANK,
    STATUSES,
    SUPPRESSION_COLUMNS,
    TAGS,
    Subscriber,
    address_matcher,
    checked_tags,
    existing_list,
    format_tags,
    key_of,
    known_status,
    list_names,
    list_path,
    parse_tags,
    suppression_hash,
    suppressions_path,
    utc_now,
)
from newsletter.subscribers.store import (
    check_value,
    checked_new,
    rewrite,
    row_values,
)
from newsletter.subscribers.suppressions import refuse_suppressed, suppression_key


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
    known_status(status)
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
    path = list_path(subscribers_dir, list_name)
    new, key = new_subscriber(email, name, fields, status, source, check_deliverability)
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
                        refuse_unconfirmed(new.email, current, list_name, line)
                if _update_row(cols, values, new, current, resubscribe):
                    result = "updated"
            yield values
        if result == "added":
            yield row_values(cols, new)
        return result != "unchanged"

    rewrite(path, (*COLUMNS, *new.fields), edit)
    return result


def tag_subscriber(
    subscribers_dir: Path,
    list_name: str,
    email: str,
    tags: Sequence[str],
    *,
    remove: bool = False,
) -> tuple[str, ...] | None:
    """Add (or with `remove`, take away) tags on an address's rows; its tags after, None if
    nothing changed. Tags go in the `tags` column, which is added to the file when missing."""
    wanted = checked_tags(tags)
    if not wanted:
        raise SubscriberError("no tags given")
    path = existing_list(subscribers_dir, list_name)
    same = address_matcher(key_of(email))
    stamp = utc_now()
    found = False
    after: tuple[str, ...] = ()
    changed = False

    def edit(cols, rows):
        nonlocal found, after, changed
        e, t, u = cols.index("email"), cols.index(TAGS), cols.index("updated_at")
        for _, values in rows:
            if same(values[e]):
                found = True
                before = parse_tags(values[t])
                if remove:
                    after = tuple(tag for tag in before if tag not in wanted)
                else:
                    after = tuple(dict.fromkeys((*before, *wanted)))
                if after != before:
                    values[t], values[u] = format_tags(after), stamp
                    changed = True
            yield values
        return changed

    rewrite(path, (TAGS, "updated_at"), edit, create=False)
    if not found:
        raise SubscriberError(f"{email.strip()} is not in list {list_name!r}")
    return after if changed else None


def new_subscriber(
    email: str,
    name: str,
    fields: Mapping[str, str] | None,
    status: str,
    source: str,
    check_deliverability: bool,
) -> tuple[Subscriber, str]:
    """The row `add` would write, checked, and its key (either store)."""
    known_status(status)
    for key in fields or {}:
        if not FIELD_NAME.fullmatch(key) or key.lower() in (*COLUMNS, TAGS):
            raise SubscriberError(
                f"invalid field name {key!r}: use letters, digits, '_' and '-', "
                f"and none of {', '.join((*COLUMNS, TAGS))} (tags: `subscribers tag`)"
            )
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
    return new, checked_new(new, deliverability=check_deliverability)


def refuse_unconfirmed(email: str, current: str, list_name: str, line: int) -> None:
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


# --- for newsletter serve (web unsubscribe, webhooks) ----------------------------------------


def downgrade_status(
    subscribers_dir: Path, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    """Move this address's rows to a less mailable status, never back up (locked, atomic).

    A bounce after a complaint leaves `complained`; an unsubscribe leaves `bounced`.
    Whether a row changed.
    """
    known_status(status)
    only = tuple(s for s in STATUSES if STATUS_RANK[s] < STATUS_RANK[status])
    _, changed, _ = _update_status(
        subscribers_dir, list_name, email, status, source=source, only=only
    )
    return changed > 0
