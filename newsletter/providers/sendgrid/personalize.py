"""One recipient's part of a SendGrid request: their personalization, as JSON text.

Worked out from the message alone (no settings, no connection), so that the read-ahead
process can do it for every recipient while the sending threads talk to SendGrid
(Provider.encode_ahead); mail.py joins what it gets into requests.
"""

from __future__ import annotations

import email.utils

from newsletter.errors import SubscriberError
from newsletter.message import (
    NAME_MAX,
    NEEDS_SMTPUTF8,
    OutgoingMessage,
    header_safe,
    wire_address,
)
from newsletter.providers.common import json_text

HTML_TAG = "-nlh{}-"  # substitution tags; the trailing dash keeps -nlh1- out of -nlh12-
TEXT_TAG = "-nlt{}-"
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)


def encoded(message: OutgoingMessage) -> tuple[str, list[dict] | None]:
    """(The recipient's personalization as JSON text, their own content when theirs cannot be
    substituted into the request's; None when it can)."""
    personalization, content = _personalization(message)
    return json_text(personalization), content


def _personalization(message: OutgoingMessage) -> tuple[dict, list[dict] | None]:
    """(The recipient's personalization, their own content when it cannot be substituted)."""
    campaign = message.campaign
    rendered = campaign.rendered
    tags = rendered.tags(HTML_TAG, TEXT_TAG)
    html_values, text_values, subject = rendered.part_values(message.values)
    if message.needs_smtputf8:
        # SendGrid documents no SMTPUTF8 support: refuse it here rather than have it
        # dropped, or mangled, after SendGrid accepted it.
        raise SubscriberError(
            f"{NEEDS_SMTPUTF8}: the sendgrid provider does not send to such addresses (SMTPUTF8)"
        )
    to = {"email": wire_address(message.to_email)}
    name = _display_name(message.to_name)
    if name:
        to["name"] = name
    personalization: dict = {
        "to": [to],
        "subject": header_safe(campaign.subject_prefix + subject),
        "headers": checked_headers(message.personal_headers()),
        "custom_args": {
            "issue": campaign.issue_slug,
            "list": campaign.list_name,
            "recipient": message.recipient(),
        },
    }
    subs = {tag: html_values[i] for tag, i in tags.html}
    subs.update({tag: text_values[i] for tag, i in tags.text})
    # A character is at most 4 bytes: count them exactly only when that could matter.
    if (
        tags.size + 4 * sum(map(len, subs.values())) > MAX_SUBSTITUTION_BYTES
        and sum(len(k.encode()) + len(v.encode()) for k, v in subs.items()) > MAX_SUBSTITUTION_BYTES
    ):
        # Too much to substitute: this recipient gets a request with their own content.
        filled = rendered.fill_values(message.values)
        content = [
            {"type": "text/plain", "value": filled.text},
            {"type": "text/html", "value": filled.html},
        ]
        return personalization, content
    if subs:
        personalization["substitutions"] = subs
    return personalization, None


def checked_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers`, when SendGrid takes them all in `headers`; AssertionError otherwise."""
    if not RESERVED_HEADERS.isdisjoint(name.lower() for name in headers):
        raise AssertionError(f"SendGrid refuses these headers in `headers`: {sorted(headers)}")
    return headers


def _display_name(name: str) -> str:
    name = header_safe(name or "")[:NAME_MAX].rstrip()
    if "," in name or ";" in name:
        # SendGrid does not quote personalization names with commas or semicolons itself.
        return f'"{email.utils.quote(name)}"'
    return name
