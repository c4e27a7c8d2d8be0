"""Provider events in one vocabulary, and the rules that tell machines from readers.

Each provider names its events its own way (SendGrid `bounce`, Postmark `Bounce:HardBounce`,
SES `Bounce:Permanent`, Mailgun `failed:permanent`, Resend `email.bounced`); the report counts
`Activity` values instead. Pure functions: no storage, no clock.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from newsletter.report.read import Stored

DELIVERED = "delivered"
DEFERRED = "deferred"
BOUNCE_HARD = "bounce_hard"
BOUNCE_SOFT = "bounce_soft"
DROPPED = "dropped"
SPAM = "spam"
UNSUBSCRIBE = "unsubscribe"
OPEN = "open"
CLICK = "click"

AFTER_DELIVERY_SECONDS = 10
SAME_SECOND_LINKS = 2
MACHINE_OPEN_RULE = (
    "An open is a machine open when the provider flags it (SendGrid's sg_machine_open) or "
    "when it looks like Apple Mail Privacy Protection's proxy fetching every image: a user "
    "agent of exactly 'Mozilla/5.0', or an address in Apple's 17.0.0.0/8. Human opens are "
    "all the others; the two are never added up."
)
AUTOMATED_CLICK_RULE = (
    f"A click is automated when it comes within {AFTER_DELIVERY_SECONDS} seconds of the "
    f"message's delivery, when {SAME_SECOND_LINKS} or more different links of one message are "
    "clicked in the same second (all of them then), or when the provider flags it as a bot "
    "(Mailgun's client-info bot). Automated clicks are counted apart, never as readers'."
)
_APPLE = ipaddress.ip_network("17.0.0.0/8")

_SIMPLE = {
    # SendGrid, Mailgun, our own tracking
    "delivered": DELIVERED,
    "deferred": DEFERRED,
    "bounce": BOUNCE_HARD,  # SendGrid's; its type "blocked" is a soft one (kind_of)
    "dropped": DROPPED,
    "spamreport": SPAM,
    "complained": SPAM,
    "unsubscribe": UNSUBSCRIBE,
    "group_unsubscribe": UNSUBSCRIBE,
    "unsubscribed": UNSUBSCRIBE,
    "open": OPEN,
    "opened": OPEN,
    "click": CLICK,
    "clicked": CLICK,
    "failed:permanent": BOUNCE_HARD,
    "failed:temporary": BOUNCE_SOFT,
    # Postmark, SES
    "Delivery": DELIVERED,
    "DeliveryDelay": DEFERRED,
    "SpamComplaint": SPAM,
    "Complaint": SPAM,
    "Reject": DROPPED,
    "Open": OPEN,
    "Click": CLICK,
    "Bounce:HardBounce": BOUNCE_HARD,
    "Bounce:Permanent": BOUNCE_HARD,
    "Bounce:SpamComplaint": SPAM,
    "Bounce:Unsubscribe": UNSUBSCRIBE,
    # Resend
    "email.delivered": DELIVERED,
    "email.delivery_delayed": DEFERRED,
    "email.bounced": BOUNCE_HARD,
    "email.complained": SPAM,
    "email.opened": OPEN,
    "email.clicked": CLICK,
}


@dataclass(frozen=True)
class Activity:
    kind: str
    who: str  # the address, or "id:<address id>" when only a token named the recipient
    list: str | None
    at: dt.datetime | None
    reason: str = ""  # bounces and drops
    url: str = ""  # clicks
    machine: bool = False  # opens: flagged or Apple's proxy; clicks: the provider's bot flag


def when(stamp: str | None) -> dt.datetime | None:
    """An ISO 8601 stamp (with Z or an offset, or naive UTC) as an aware UTC datetime."""
    if not stamp:
        return None
    try:
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def kind_of(event: Stored) -> str | None:
    name = event.event
    if name in _SIMPLE:
        kind = _SIMPLE[name]
    elif name.startswith("Bounce:"):
        kind = BOUNCE_SOFT  # Postmark's SoftBounce, Transient, DnsError...; SES Transient
    elif event.source == "postmark" and name == "SubscriptionChange":
        kind = UNSUBSCRIBE if event.payload.get("SuppressSending") is True else None
    else:
        return None
    if name == "bounce" and str(event.payload.get("type", "")).lower() == "blocked":
        kind = BOUNCE_SOFT  # SendGrid retries a block: the address may well be fine
    return kind


def _reason(payload: dict) -> str:
    for key in ("reason", "Description", "Details", "response", "bounceSubType"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:160]
    status = payload.get("delivery-status")
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return " ".join(status["message"].split())[:160]
    return "(no reason given)"


def _url(payload: dict) -> str:
    for value in (
        payload.get("url"),
        payload.get("OriginalLink"),
        (payload.get("click") or {}).get("link")
        if isinstance(payload.get("click"), dict)
        else None,
        ((payload.get("data") or {}).get("click") or {}).get("link")
        if isinstance(payload.get("data"), dict)
        else None,
    ):
        if isinstance(value, str) and value:
            return value
    return ""


def _user_agent(payload: dict) -> str:
    for key in ("useragent", "user_agent", "UserAgent"):
        if isinstance(payload.get(key), str):
            return payload[key].strip()
    return ""


def machine_open(payload: dict) -> bool:
    """MACHINE_OPEN_RULE."""
    if payload.get("sg_machine_open") in (True, "true"):
        return True
    if _user_agent(payload) == "Mozilla/5.0":
        return True
    try:
        return ipaddress.ip_address(str(payload.get("ip", ""))) in _APPLE
    except ValueError:
        return False


def bot_flag(payload: dict) -> bool:
    """The provider says a click is a bot's (Mailgun's client-info.bot)."""
    info = payload.get("client-info")
    return bool(isinstance(info, dict) and info.get("bot")) or payload.get("bot") is True


def activity(event: Stored) -> Activity | None:
    kind = kind_of(event)
    if kind is None:
        return None
    who = event.email or (
        f"id:{event.payload['recipient']}"
        if isinstance(event.payload.get("recipient"), str)
        else ""
    )
    if not who:
        return None
    payload = event.payload
    return Activity(
        kind=kind,
        who=who,
        list=event.list,
        at=when(event.occurred_at),
        reason=_reason(payload) if kind in (BOUNCE_HARD, BOUNCE_SOFT, DROPPED) else "",
        url=_url(payload) if kind == CLICK else "",
        machine=machine_open(payload)
        if kind == OPEN
        else bot_flag(payload)
        if kind == CLICK
        else False,
    )
