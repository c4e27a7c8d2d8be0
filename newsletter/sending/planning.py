"""The plan of a send: who it goes to now, and who is left out and why, counted in one pass."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from newsletter.sending import readahead
from newsletter.sending.ledger import FAILED, SENT, Ledger
from newsletter.sending.options import Settings
from newsletter.sending.prepared import Prepared
from newsletter.sending.summary import LISTED
from newsletter.subscribers.sending import Skipped


@dataclass
class Plan:
    """Who this send will go to, counted before anything is sent."""

    to_send: int = 0
    already_sent: int = 0
    unknown: int = 0  # outcome unknown from an earlier send: held back (see --resend-unknown)
    failed: int = 0  # failed permanently in an earlier send: not retried
    over_limit: int = 0  # left for a later run by --limit
    invalid: int = 0  # rows of the list skipped as malformed (see subscribers validate)
    left_out: dict[str, int] = field(default_factory=dict)  # unsubscribed, suppressed, …
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason), LISTED


def _classified(prepared: Prepared, ledger: Ledger, resend_unknown: bool, dropped) -> Iterator:
    """(recipient, key, state it is held back in or None when it is to be sent), streamed."""
    recipients = prepared.recipients(dropped)
    while chunk := list(itertools.islice(recipients, readahead.CHUNK)):
        keys = [r.key for r in chunk]  # normalised once: the property computes it each time
        blocked = ledger.blocked(prepared.slug, keys, resend_unknown)
        for recipient, key in zip(chunk, keys, strict=True):
            yield recipient, key, blocked.get(key)


def admit(plan: Plan, state: str | None, limit: int | None) -> bool:
    """Count one recipient into the plan; True when it is to be sent now.

    Held back by the ledger (`state`: sent, failed, unknown) or past --limit, it is not.
    """
    if state == SENT:
        plan.already_sent += 1
    elif state == FAILED:
        plan.failed += 1
    elif state:
        plan.unknown += 1
    elif limit is not None and plan.to_send >= limit:
        plan.over_limit += 1
    else:
        plan.to_send += 1
        return True
    return False


def plan(prepared: Prepared, ledger: Ledger, settings: Settings) -> Plan:
    """Count recipients to send now, and those left out and why (one pass over the list)."""
    from newsletter.subscribers import SendableStats

    out, dropped = Plan(), SendableStats()
    for recipient, _, state in _classified(prepared, ledger, settings.resend_unknown, dropped):
        if state is None and type(recipient) is Skipped:
            out.invalid += 1
            if len(out.skipped) < LISTED:
                out.skipped.append((recipient.where, recipient.reason))
        else:
            admit(out, state, settings.limit)
    count_left_out(prepared, out, dropped)
    return out


def count_left_out(prepared: Prepared, plan: Plan, dropped) -> None:
    """Rows of the list not sent to and why: their status, suppressed, or repeated."""
    if prepared.is_test:
        return
    reasons = {**dropped.not_subscribed, "suppressed": dropped.suppressed}
    reasons["repeated"] = dropped.repeated
    reasons["outside the segment"] = dropped.outside_segment
    reasons["invalid"] = plan.invalid
    plan.left_out = {why: n for why, n in reasons.items() if n}
