"""Import formats: how each service's export columns and statuses map onto a list's."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from newsletter.errors import SubscriberError
from newsletter.subscribers.model import FIELD_NAME

FORMATS = ("auto", "mailchimp", "substack", "buttondown", "listmonk", "csv")


# status value (lower case) -> (our status, reason to add it to the suppression file or "")
_GENERIC_STATUSES = {
    "": ("subscribed", ""),
    "subscribed": ("subscribed", ""),
    "active": ("subscribed", ""),
    "confirmed": ("subscribed", ""),
    "pending": ("pending", ""),
    "unconfirmed": ("pending", ""),
    "unsubscribed": ("unsubscribed", ""),
    "bounced": ("bounced", "bounced"),
    "cleaned": ("bounced", "bounced"),
    "complained": ("complained", "complained"),
}
_JSON = "*json"  # target of a column holding a JSON object of custom fields
# Column names (as slugs) every format understands; "" means "ignore this column".
_COMMON = {
    "email": "email",
    "email_address": "email",
    "e_mail": "email",
    "mail": "email",
    "name": "name",
    "full_name": "name",
    "display_name": "name",
    "first_name": "first_name",
    "firstname": "first_name",
    "fname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "lname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "status": "status",
    "subscribed_at": "subscribed_at",
    "source": "source",
    "updated_at": "",
    "rejected_line": "",
    "rejected_reason": "",
}
STANDARD_TARGETS = ("email", "name", "status", "subscribed_at", "source")


@dataclass(frozen=True)
class _Format:
    name: str
    columns: Mapping[str, str] = field(default_factory=dict)  # in priority order per target
    status_columns: tuple[str, ...] = ()  # the service's own status column(s)
    statuses: Mapping[str, tuple[str, str]] = field(default_factory=lambda: _GENERIC_STATUSES)
    # Mailchimp has no status column: the export file (subscribed/unsubscribed/cleaned) is it.
    header_status: Callable[[set[str]], tuple[str, str]] | None = None


def _mailchimp_status(slugs: set[str]) -> tuple[str, str]:
    if "clean_time" in slugs:
        return "bounced", "bounced"
    if "unsub_time" in slugs:
        return "unsubscribed", ""
    return "subscribed", ""


_MAILCHIMP_SYSTEM = (
    *("member_rating", "optin_ip", "confirm_ip", "latitude", "longitude", "gmtoff", "dstoff"),
    *("timezone", "cc", "region", "last_changed", "leid", "euid", "unsub_time", "unsub_reason"),
    *("unsub_campaign_title", "unsub_campaign_id", "unsub_reason_other", "clean_time"),
    *("clean_campaign_title", "clean_campaign_id"),
)
_BUTTONDOWN_SUBSCRIBED = (
    *("regular", "premium", "trialed", "unpaid", "gifted", "churning", "paused", "past_due"),
)
_BUTTONDOWN_IGNORED = (
    *("id", "secondary_id", "referrer_url", "source", "utm_source", "utm_medium", "utm_campaign"),
)
FORMAT_RULES = {
    "csv": _Format("csv"),
    "mailchimp": _Format(
        "mailchimp",
        {
            "email_address": "email",
            "confirm_time": "subscribed_at",
            "optin_time": "subscribed_at",
            **dict.fromkeys(_MAILCHIMP_SYSTEM, ""),
        },
        header_status=_mailchimp_status,
    ),
    "substack": _Format(
        "substack",
        {
            "created_at": "subscribed_at",
            "email_disabled": "status",
            **dict.fromkeys(("expiry", "first_payment_at", "prefer_digests"), ""),
        },
        ("email_disabled",),
        {
            "": ("subscribed", ""),
            "false": ("subscribed", ""),
            "true": ("unsubscribed", ""),
        },
    ),
    "buttondown": _Format(
        "buttondown",
        {
            "creation_date": "subscribed_at",
            "subscriber_type": "status",
            "type": "status",
            "metadata": _JSON,
            **dict.fromkeys(_BUTTONDOWN_IGNORED, ""),
        },
        ("subscriber_type", "type"),
        {
            **dict.fromkeys(_BUTTONDOWN_SUBSCRIBED, ("subscribed", "")),
            "unactivated": ("pending", ""),
            "unsubscribed": ("unsubscribed", ""),
            "removed": ("unsubscribed", ""),
            "spammy": ("unsubscribed", "spammy"),
            "blocked": ("unsubscribed", "blocked"),
            "undeliverable": ("bounced", "bounced"),
            "complained": ("complained", "complained"),
        },
    ),
    "listmonk": _Format(
        "listmonk",
        {"uuid": "", "attributes": _JSON, "created_at": "subscribed_at", "updated_at": ""},
        ("status",),
        {
            "enabled": ("subscribed", ""),
            "disabled": ("unsubscribed", ""),
            "blocklisted": ("unsubscribed", "blocklisted"),
        },
    ),
}


def detect_format(header: Sequence[str]) -> str:
    """Which service exported a CSV file, recognised by its header."""
    slugs = {column_slug(name) for name in header}
    if "subscriber_type" in slugs or {"creation_date", "email"} <= slugs:
        return "buttondown"
    mailchimp = {"member_rating", "optin_time", "confirm_time", "leid", "euid", "last_changed"}
    if "email_address" in slugs and slugs & mailchimp:
        return "mailchimp"
    if slugs & {"active_subscription", "email_disabled"}:
        return "substack"
    if "attributes" in slugs and slugs & {"uuid", "status"}:
        return "listmonk"
    return "csv"


def column_slug(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip().casefold()).strip("_")


@dataclass(frozen=True)
class ImportPlan:
    format: str
    targets: Mapping[str, tuple[int, ...]]  # field -> columns, best first
    status: tuple[int, Mapping[str, tuple[str, str]]] | None  # column and its value map
    default: tuple[str, str]  # (status, suppression reason) when there is no status column
    json: tuple[int, ...]
    ignored: tuple[str, ...]


def plan_columns(
    fmt: _Format, header: Sequence[str], mapping: Mapping[str, str], existing: Mapping[str, str]
) -> ImportPlan:
    """Decide which column feeds which field; `existing` maps slugs to the list's custom columns."""
    slugs = [column_slug(name) for name in header]
    chosen: dict[int, str] = {}
    for column, target in mapping.items():
        chosen[_find_column(header, slugs, column, target)] = _map_target(column, target.strip())
    by_user = set(chosen)
    table = {**_COMMON, **fmt.columns}
    order = {slug: n for n, slug in enumerate(table)}
    for i, slug in enumerate(slugs):
        if i in chosen:
            continue
        if not header[i].strip():
            chosen[i] = ""
        elif slug in table:
            chosen[i] = table[slug]
        else:
            chosen[i] = existing.get(slug) or slug or header[i].strip()
    targets: dict[str, list[int]] = {}
    for i in sorted(chosen, key=lambda i: (i not in by_user, order.get(slugs[i], len(order)), i)):
        if chosen[i]:
            targets.setdefault(chosen[i], []).append(i)
    status = None
    if "status" in targets:
        i = targets["status"][0]
        native = slugs[i] in fmt.status_columns
        status = (i, fmt.statuses if native else _GENERIC_STATUSES)
    ignored = tuple(header[i].strip() or f"(column {i + 1})" for i, t in chosen.items() if not t)
    default = fmt.header_status(set(slugs)) if fmt.header_status else ("subscribed", "")
    return ImportPlan(
        format=fmt.name,
        targets={t: tuple(ix) for t, ix in targets.items() if t not in ("status", _JSON)},
        status=status,
        default=default,
        json=tuple(targets.get(_JSON, ())),
        ignored=ignored,
    )


def _find_column(header: Sequence[str], slugs: list[str], column: str, target: str) -> int:
    """A --map column: by exact name, then ignoring case, then by slug."""
    names = [name.strip() for name in header]
    for candidates, wanted in (
        (names, column.strip()),
        ([name.casefold() for name in names], column.strip().casefold()),
        (slugs, column_slug(column)),
    ):
        if wanted in candidates:
            return candidates.index(wanted)
    raise SubscriberError(
        f"--map {column}={target}: the file has no column {column!r} (columns: {', '.join(header)})"
    )


def _map_target(column: str, target: str) -> str:
    if target == "updated_at":
        raise SubscriberError(f"--map {column}={target}: updated_at is set when a row changes")
    if target and target not in STANDARD_TARGETS and not FIELD_NAME.fullmatch(target):
        raise SubscriberError(
            f"--map {column}={target}: a field name is letters, digits, '_' and '-' "
            "(or leave it empty to skip the column)"
        )
    return target
