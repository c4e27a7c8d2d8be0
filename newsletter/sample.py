"""Issue -> render -> the sample reader's exact message -> run_checks: what preview, studio and send check."""

from __future__ import annotations

from dataclasses import dataclass, field

from newsletter.checks import ERROR, WARNING, Problem, Sample, compat, run_checks, spam
from newsletter.config import Config
from newsletter.errors import SubscriberError
from newsletter.issue import Issue
from newsletter.message import Campaign
from newsletter.render import Rendered, Renderer

SAMPLE_RECIPIENT = {"email": "reader@example.com"}


@dataclass
class CheckedIssue:
    """An issue rendered once, the message its sample reader gets, and what the checks found."""

    issue: Issue
    rendered: Rendered
    sample: Sample
    problems: list[Problem] = field(default_factory=list)
    compat: list[compat.FeatureReport] = field(default_factory=list)
    spam: spam.SpamCheck | None = None  # when asked for: the score, or why there is none
    links: list | None = None  # linkcheck.LinkResult per link, when asked for

    @property
    def unsubscribe_url(self) -> str:
        return self.sample.unsubscribe_url

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]


def find_recipient(config: Config, list_name: str, email: str) -> tuple[dict[str, str], str]:
    """(merge fields, name) of a subscriber of the list, by address (case-insensitive)."""
    from newsletter.store import lists, uses_postgres
    from newsletter.subscribers import list_path

    subscriber = lists.find(config, list_name, email)
    if subscriber is not None:
        return subscriber.merge_fields(), subscriber.name
    where = (
        "PostgreSQL" if uses_postgres(config) else str(list_path(config.subscribers_dir, list_name))
    )
    raise SubscriberError(f"{email} is not in the list {list_name!r}", where=where)


def segment_recipient(
    config: Config, list_name: str, segment: str, email: str | None = None
) -> tuple[dict[str, str], str, str]:
    """(merge fields, name, address) of a subscriber in the segment: `email` when it is in
    it (else an error), or the list's first subscribed row the segment matches."""
    from newsletter.store import lists, uses_postgres
    from newsletter.subscribers import list_path

    chosen = lists.segment_for(config, list_name, segment)
    where = (
        "PostgreSQL" if uses_postgres(config) else str(list_path(config.subscribers_dir, list_name))
    )
    if email is not None:
        sub = lists.find(config, list_name, email)
        if sub is None:
            raise SubscriberError(f"{email} is not in the list {list_name!r}", where=where)
        if not chosen.matches(sub):
            raise SubscriberError(f"{email} is not in the segment {segment!r}", where=where)
        return sub.merge_fields(), sub.name, sub.email
    first = lists.page(config, list_name, status="subscribed", per_page=1, segment=chosen)
    if not first.subscribers:
        raise SubscriberError(f"no subscriber matches the segment {segment!r}", where=where)
    sub = first.subscribers[0]
    return sub.merge_fields(), sub.name, sub.email


def sample_message(
    config: Config,
    rendered: Rendered,
    list_name: str,
    secret: bytes,
    recipient: dict[str, str] | None = None,
    name: str = "",
) -> Sample:
    """The exact message one reader (by default the sample reader) gets of this issue."""
    recipient = recipient or SAMPLE_RECIPIENT
    email = recipient["email"]
    message = Campaign(config, rendered, list_name, secret).message(
        email, email.lower(), recipient, name
    )
    parts = message.personalized()
    unsubscribe_url = message.unsubscribe_url or message.unsubscribe_mailto
    return Sample(email, parts.subject, parts.html, parts.text, unsubscribe_url, message.as_bytes)


def check_issue(
    config: Config,
    issue: Issue,
    *,
    renderer: Renderer | None = None,
    recipient: dict[str, str] | None = None,
    name: str = "",
    list_name: str | None = None,
    secret: bytes = b"preview",
    score_spam: bool = False,
    spam_started: spam.Started | str | None = None,
    check_links: bool = False,
    sending: bool = False,
) -> CheckedIssue:
    """Render an issue once, build the sample reader's message, and run every check on it."""
    # SpamAssassin spends about a second loading its rules before it reads a message:
    # started first, it does that while the issue renders.
    started = (spam_started or spam.start()) if score_spam else None
    try:
        rendered = (renderer or Renderer(config)).render(issue)
        list_name = list_name or issue.list or config.list
        sample = sample_message(config, rendered, list_name, secret, recipient, name)
        checked = CheckedIssue(issue, rendered, sample, compat=compat.report(sample.html))
    except BaseException:
        if isinstance(started, spam.Started):
            started.cancel()
        raise
    if started is not None:
        checked.spam = spam.check_message(sample.eml, started)
    if check_links:
        from newsletter.checks import linkcheck

        skip = {sample.unsubscribe_url, rendered.context.get("view_url") or ""}
        checked.links = linkcheck.check_links(linkcheck.collect_links(sample.html, skip))
    checked.problems = run_checks(
        config,
        rendered,
        sample,
        compat_reports=checked.compat,
        spam_report=checked.spam.report if checked.spam else None,
        link_results=checked.links,
        sending=sending,
    )
    return checked
