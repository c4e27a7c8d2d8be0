"""SendGrid's suppression lists and unsubscribe groups -> subscribers/suppressions.csv."""

# Bounces, blocks, spam reports, invalid emails and global unsubscribes are paginated with
# limit/offset (`start_time` from --since); each kind is added in one locked write.

from __future__ import annotations

import datetime as dt
import json
import os
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import python_http_client.exceptions as http_errors

from newsletter import subscribers as subs
from newsletter.config import Config
from newsletter.errors import ProviderError
from newsletter.providers.sendgrid import api
from newsletter.store import lists as store_lists

PAGE_SIZE = 500  # the most the suppression endpoints return per request
MAX_RETRIES = 5
MAX_WAIT = 60.0  # seconds to wait for a rate limit to reset before giving up
KINDS: dict[str, tuple[str, str]] = {
    # kind: (API path under /v3, suppression reason)
    "bounces": ("suppression/bounces", "sendgrid: bounce"),
    "blocks": ("suppression/blocks", "sendgrid: block"),
    "spam_reports": ("suppression/spam_reports", "sendgrid: spam report"),
    "invalid_emails": ("suppression/invalid_emails", "sendgrid: invalid email"),
    "unsubscribes": ("suppression/unsubscribes", "sendgrid: unsubscribe"),
}
GROUPS = "group_unsubscribes"
GROUPS_PATH = "asm/suppressions"


@dataclass
class SyncReport:
    found: dict[str, int] = field(default_factory=dict)  # entries SendGrid returned, by kind
    added: dict[str, int] = field(default_factory=dict)  # new suppressions, by kind
    skipped: int = 0  # entries that are not email addresses


def parse_since(text: str) -> int:
    """YYYY-MM-DD, an ISO 8601 time (UTC unless it says otherwise) or unix seconds -> unix seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


class SuppressionClient:
    """GET requests to SendGrid's v3 API through the official client, with 429 handling."""

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = api.client(config, os.environ if env is None else env, api.SUPPRESSIONS_READ)
        self.host = api.api_host(config)
        self.sleep = sleep

    def get(self, path: str, params: Mapping[str, object] | None = None):
        """The decoded JSON answer; ProviderError names the endpoint and SendGrid's message."""
        endpoint = self.client
        for part in path.split("/"):
            endpoint = endpoint._(part)
        for attempt in range(MAX_RETRIES + 1):
            try:
                response = endpoint.get(query_params=dict(params or {}))
            except http_errors.HTTPError as exc:
                if exc.status_code == 429 and attempt < MAX_RETRIES:
                    self.sleep(_wait(exc.headers))
                    continue
                raise ProviderError(_error_text(path, exc)) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise ProviderError(
                    f"SendGrid /v3/{path}: cannot reach {self.host}: {reason}"
                ) from None
            try:
                return json.loads(response.body or b"null")
            except ValueError:
                raise ProviderError(f"SendGrid /v3/{path}: the answer is not JSON") from None
        raise AssertionError("unreachable")

    def pages(self, path: str, since: int | None) -> Iterator[dict]:
        """Every entry of a paginated suppression list."""
        offset = 0
        while True:
            params: dict[str, object] = {"limit": PAGE_SIZE, "offset": offset}
            if since is not None:
                params["start_time"] = since
            page = self.get(path, params)
            if not isinstance(page, list):
                raise ProviderError(
                    f"SendGrid /v3/{path}: expected a list, got {type(page).__name__}"
                )
            yield from (entry for entry in page if isinstance(entry, dict))
            if len(page) < PAGE_SIZE:
                return
            offset += len(page)


def _wait(headers) -> float:
    """Seconds until SendGrid's rate limit resets, within reason."""
    wait = api.retry_after(headers)
    return 1.0 if wait is None else min(max(wait, 0.5), MAX_WAIT)


def _error_text(path: str, exc: http_errors.HTTPError) -> str:
    hint = ""
    if exc.status_code in (401, 403):
        hint = f"; check that {api.API_KEY_ENV} is right and has the {api.SUPPRESSIONS_READ} permission"
    return f"SendGrid /v3/{path} answered {exc.status_code}: {api.details(exc)}{hint}"


def _group_entries(client: SuppressionClient, config: Config, since: int | None) -> Iterator[str]:
    """Addresses in unsubscribe groups (only [sendgrid] asm_group_id's, when it is set)."""
    entries = client.get(GROUPS_PATH)
    if not isinstance(entries, list):
        raise ProviderError(f"SendGrid /v3/{GROUPS_PATH}: expected a list")
    group = config.sendgrid.asm_group_id
    for entry in entries:
        if isinstance(entry, str):
            yield entry
            continue
        if not isinstance(entry, dict):
            continue
        if group is not None and str(entry.get("group_id")) != str(group):
            continue
        created = entry.get("created_at")
        if since is not None and isinstance(created, int) and created < since:
            continue
        if isinstance(entry.get("email"), str):
            yield entry["email"]


def sync_suppressions(
    config: Config,
    *,
    since: int | None = None,
    env: Mapping[str, str] | None = None,
    client: SuppressionClient | None = None,
) -> SyncReport:
    """Fetch every kind, then record each kind's addresses as suppressions; counts per kind."""
    client = client or SuppressionClient(config, env)
    fetched: dict[str, list[str]] = {}
    for kind, (path, _) in KINDS.items():
        fetched[kind] = [
            e["email"] for e in client.pages(path, since) if isinstance(e.get("email"), str)
        ]
    fetched[GROUPS] = list(_group_entries(client, config, since))
    report = SyncReport()
    reasons = {
        **{kind: reason for kind, (_, reason) in KINDS.items()},
        GROUPS: "sendgrid: group unsubscribe",
    }
    for kind, emails in fetched.items():
        report.found[kind] = len(emails)
        usable = []
        for email in emails:
            try:
                subs.normalize_email(email.strip())
            except subs.InvalidEmail:
                report.skipped += 1
                continue
            usable.append((email.strip(), reasons[kind]))
        report.added[kind] = store_lists.add_suppressions(config, usable)
    return report
