"""The report's figures: a pure function of the rows read.py returns (no storage, no clock)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from newsletter.report import classify as c
from newsletter.report.read import Rows
from newsletter.sending.ledger import STATES

WEB_UNSUBSCRIBE_RULE = (
    "A web (one-click or page) unsubscribe counts for the last issue sent to that address "
    "on that list before it; provider unsubscribes count for the issue their event names."
)
TOP_REASONS = 5
HOURS_MAX = 14 * 24  # the per-hour figures cover the first two weeks after the send
# the ledger's own states, in the order a reader expects them
LEDGER_STATES = ("sent", "failed", "retry", "unknown", "in_flight", "invalid")
assert set(LEDGER_STATES) == set(STATES)


@dataclass
class Funnel:
    list: str
    ledger: dict[str, int]  # the send ledger's states
    handed_over: int  # accepted by the provider (ledger: sent)
    delivered: int = 0
    deferred: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    dropped: int = 0
    spam_reports: int = 0
    unsubscribed_web: int = 0
    unsubscribed_provider: int = 0


@dataclass
class Reason:
    reason: str
    count: int


@dataclass
class LinkFigures:
    url: str
    text: str
    clicks: int  # readers' clicks
    clickers: int  # unique readers who clicked it
    automated: int  # clicks counted apart (classify.AUTOMATED_CLICK_RULE)


@dataclass
class Hour:
    hour: int  # hours since the first message was handed over: 0 is the first hour
    human_opens: int = 0
    machine_opens: int = 0
    clicks: int = 0
    automated_clicks: int = 0


@dataclass
class Opens:
    human_openers: int  # unique recipients with at least one human open
    human_opens: int
    machine_opens: int
    machine_only_openers: int  # recipients whose every open was a machine's


@dataclass
class Clicks:
    clickers: int  # unique recipients with at least one reader's click
    clicks: int
    automated_clicks: int
    links: list[LinkFigures]


@dataclass
class Report:
    issue: str
    first_sent: str | None
    lists: list[Funnel]
    total: Funnel
    hard_bounce_reasons: list[Reason]
    soft_bounce_reasons: list[Reason]
    drop_reasons: list[Reason]
    opens: Opens
    clicks: Clicks
    hours: list[Hour]
    rules: dict[str, str] = field(
        default_factory=lambda: {
            "machine_opens": c.MACHINE_OPEN_RULE,
            "automated_clicks": c.AUTOMATED_CLICK_RULE,
            "web_unsubscribes": WEB_UNSUBSCRIBE_RULE,
        }
    )

    def as_dict(self) -> dict:
        return asdict(self)


def _top(reasons: Counter) -> list[Reason]:
    return [Reason(r, n) for r, n in sorted(reasons.items(), key=lambda i: (-i[1], i[0]))][
        :TOP_REASONS
    ]


def _web_unsubscribes(rows: Rows, sent: dict[tuple[str, str], dt.datetime]) -> list[c.Activity]:
    """Web unsubscribes this issue caused (WEB_UNSUBSCRIBE_RULE)."""
    later: dict[str, list[dt.datetime]] = defaultdict(list)
    for email, _, stamp in rows.later_sends:
        moment = c.when(stamp)
        if moment is not None:
            later[email].append(moment)
    out = []
    for event in rows.web_unsubscribes:
        at = c.when(event.occurred_at)
        ours = sent.get((event.list or "", event.email or ""))
        if at is None or ours is None or at < ours.replace(microsecond=0):
            continue
        if any(ours < other <= at for other in later.get(event.email or "", [])):
            continue  # a later issue reached them first
        out.append(c.Activity(c.UNSUBSCRIBE, event.email or "", event.list, at, reason="web"))
    return out


def _automated(clicks: list[c.Activity], delivered_at: dict[str, dt.datetime]) -> set[int]:
    """Indexes of the clicks classify.AUTOMATED_CLICK_RULE counts apart."""
    out = set()
    same_second: dict[tuple[str, dt.datetime], set[str]] = defaultdict(set)
    for click in clicks:
        if click.at is not None:
            same_second[(click.who, click.at.replace(microsecond=0))].add(click.url)
    for i, click in enumerate(clicks):
        if click.machine:
            out.add(i)
            continue
        if click.at is None:
            continue
        delivered = delivered_at.get(click.who)
        if (
            delivered is not None
            and (click.at - delivered).total_seconds() <= (c.AFTER_DELIVERY_SECONDS)
            or len(same_second[(click.who, click.at.replace(microsecond=0))]) >= c.SAME_SECOND_LINKS
        ):
            out.add(i)
    return out


def compute(rows: Rows) -> Report:
    recipients = rows.recipients
    list_of = {r.key: r.list for r in recipients}
    sent = {(r.list, r.key): m for r in recipients if (m := c.when(r.sent_at))}
    first = min(sent.values(), default=None)
    acts = [a for e in rows.events if (a := c.activity(e))]
    web = _web_unsubscribes(rows, sent)
    by_kind: dict[str, list[c.Activity]] = defaultdict(list)
    for act in acts:
        by_kind[act.kind].append(act)

    # When each recipient's message arrived: the provider's delivered event, else the hand-over.
    delivered_at: dict[str, dt.datetime] = {key: m for (_, key), m in sent.items()}
    arrived: dict[str, dt.datetime] = {}
    for act in by_kind[c.DELIVERED]:
        if act.at is not None and (act.who not in arrived or act.at < arrived[act.who]):
            arrived[act.who] = act.at
    delivered_at.update(arrived)

    lists = sorted({r.list for r in recipients} | {a.list for a in acts if a.list})
    funnels = {name: _funnel(name, [r for r in recipients if r.list == name]) for name in lists}
    total = _funnel("all lists", recipients)

    def count(kind: str, attribute: str, found: list[c.Activity]) -> None:
        per_list: dict[str, set[str]] = defaultdict(set)
        for act in found:
            per_list[act.list or list_of.get(act.who, "")].add(act.who)
        for name, who in per_list.items():
            if name in funnels:
                setattr(funnels[name], attribute, getattr(funnels[name], attribute) + len(who))
            setattr(total, attribute, getattr(total, attribute) + len(who))

    for kind, attribute in (
        (c.DELIVERED, "delivered"),
        (c.DEFERRED, "deferred"),
        (c.BOUNCE_HARD, "bounced_hard"),
        (c.BOUNCE_SOFT, "bounced_soft"),
        (c.DROPPED, "dropped"),
        (c.SPAM, "spam_reports"),
        (c.UNSUBSCRIBE, "unsubscribed_provider"),
    ):
        count(kind, attribute, by_kind[kind])
    count(c.UNSUBSCRIBE, "unsubscribed_web", web)

    opens = by_kind[c.OPEN]
    human = [o for o in opens if not o.machine]
    human_openers = {o.who for o in human}
    clicks = by_kind[c.CLICK]
    automated = _automated(clicks, delivered_at)
    readers = [k for i, k in enumerate(clicks) if i not in automated]
    return Report(
        issue=rows.issue,
        first_sent=first.isoformat(timespec="seconds") if first else None,
        lists=[funnels[name] for name in lists],
        total=total,
        hard_bounce_reasons=_top(Counter(a.reason for a in by_kind[c.BOUNCE_HARD])),
        soft_bounce_reasons=_top(Counter(a.reason for a in by_kind[c.BOUNCE_SOFT])),
        drop_reasons=_top(Counter(a.reason for a in by_kind[c.DROPPED])),
        opens=Opens(
            human_openers=len(human_openers),
            human_opens=len(human),
            machine_opens=len(opens) - len(human),
            machine_only_openers=len({o.who for o in opens if o.machine} - human_openers),
        ),
        clicks=Clicks(
            clickers=len({k.who for k in readers}),
            clicks=len(readers),
            automated_clicks=len(automated),
            links=_links(rows, clicks, automated),
        ),
        hours=_hours(first, opens, clicks, automated),
    )


def _funnel(name: str, recipients) -> Funnel:
    states = Counter(r.state for r in recipients)
    ledger = {state: states.get(state, 0) for state in LEDGER_STATES}
    return Funnel(name, ledger, handed_over=ledger["sent"])


def _links(rows: Rows, clicks: list[c.Activity], automated: set[int]) -> list[LinkFigures]:
    text = {link.url: link.text for link in rows.links}
    order = {link.url: i for i, link in enumerate(rows.links)}
    human: dict[str, list[str]] = defaultdict(list)
    machine: Counter = Counter()
    for i, click in enumerate(clicks):
        if i in automated:
            machine[click.url] += 1
        else:
            human[click.url].append(click.who)
    urls = sorted(
        set(human) | set(machine),
        key=lambda u: (-len(human.get(u, [])), order.get(u, len(order)), u),
    )
    return [
        LinkFigures(
            url=url,
            text=text.get(url, ""),
            clicks=len(human.get(url, [])),
            clickers=len(set(human.get(url, []))),
            automated=machine[url],
        )
        for url in urls
    ]


def _hours(
    first: dt.datetime | None, opens: list[c.Activity], clicks: list[c.Activity], automated
) -> list[Hour]:
    if first is None:
        return []
    start = first.replace(microsecond=0)
    hours: dict[int, Hour] = {}

    def bucket(at: dt.datetime | None) -> Hour | None:
        if at is None or at < start:
            return None
        index = int((at - start).total_seconds() // 3600)
        if index >= HOURS_MAX:
            return None
        return hours.setdefault(index, Hour(index))

    for act in opens:
        if (slot := bucket(act.at)) is not None:
            if act.machine:
                slot.machine_opens += 1
            else:
                slot.human_opens += 1
    for i, act in enumerate(clicks):
        if (slot := bucket(act.at)) is not None:
            if i in automated:
                slot.automated_clicks += 1
            else:
                slot.clicks += 1
    last = max(hours, default=-1)
    return [hours.get(i, Hour(i)) for i in range(last + 1)]
