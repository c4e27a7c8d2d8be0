"""A send made ready: the issue loaded, rendered and checked once, its campaign and recipients."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import ExitCode, SendError
from newsletter.message import Campaign
from newsletter.providers import get_provider_class
from newsletter.render import fill
from newsletter.sample import CheckedIssue, check_issue, find_recipient
from newsletter.segments import Segment
from newsletter.sending.ledger import LEDGER_NAME, Ledger
from newsletter.sending.options import OptionError
from newsletter.tokens import load_secret

TEST_PREFIX = "[TEST] "


class ChecksFailed(SendError):
    """The preview checks found errors: nothing is sent."""

    exit_code = ExitCode.CHECKS_FAILED


@dataclass(frozen=True)
class SampleRecipient:
    """A --test-to address, with the merge fields of a real subscriber (--as) or defaults."""

    email: str
    key: str
    name: str
    fields: dict[str, str]

    def merge_fields(self) -> dict[str, str]:
        return self.fields


@dataclass
class Prepared:
    """A send that passed the checks: the campaign and where its recipients come from."""

    config: Config
    checked: CheckedIssue
    campaign: Campaign
    list_name: str
    provider: str
    test_recipients: list[SampleRecipient] = field(default_factory=list)
    segment: Segment | None = None  # only the list's subscribers it matches

    @property
    def slug(self) -> str:
        return self.checked.issue.slug

    @property
    def is_test(self) -> bool:
        return bool(self.test_recipients)

    @property
    def subject(self) -> str:
        """The subject with merge fields shown as written, e.g. `News for {{ subscriber.name }}`."""
        rendered = self.checked.rendered
        sources = {i: f"{{{{ {f.source} }}}}" for i, f in enumerate(rendered.merge_fields)}
        return self.campaign.subject_prefix + fill(rendered.subject_parts, sources)

    def recipients(self, dropped=None) -> Iterator:
        """Who this send goes to, streamed: subscribed, not suppressed, not opted out (even
        where the list does not show it yet), each address once; bad rows come as Skipped."""
        # `dropped`, a subscribers.SendableStats, counts the rows left out as they stream by.
        if self.is_test:
            return iter(self.test_recipients)
        from newsletter import optouts
        from newsletter.store.lists import sendable

        config = self.config
        withdrawn = optouts.withdrawn(config.state_dir, self.list_name, self.campaign.secret)
        return sendable(
            config, self.list_name, dropped, withdrawn, skip_bad_rows=True, segment=self.segment
        )


def prepare(
    config: Config,
    issue_path: Path,
    *,
    list_name: str | None = None,
    provider: str | None = None,
    test_to: Iterable[str] = (),
    as_email: str | None = None,
    segment: str | None = None,
) -> Prepared:
    """Render and check the issue (ChecksFailed on errors) and set up the campaign."""
    from newsletter.issue import load_issue

    issue = load_issue(issue_path)
    test_to = list(test_to)
    list_name = list_name or issue.list or config.list
    provider = provider or config.send.provider
    get_provider_class(provider)  # an unknown name fails before anything is rendered
    secret = load_secret(config.state_dir)
    fields, name = {}, ""
    if as_email:
        fields, name = find_recipient(config, list_name, as_email)
    checked = check_issue(
        config,
        issue,
        recipient=fields or None,
        name=name,
        list_name=list_name,
        secret=secret,
        # A test copy goes to the editors, who are still writing it: init's example text
        # warns there as in a preview, and stops only a send to the list.
        sending=not test_to,
    )
    if checked.errors:
        raise ChecksFailed(
            f"the issue has {len(checked.errors)} error(s); nothing was sent "
            f"(first: {checked.errors[0]}); run `newsletter preview {issue_path}` for all"
        )
    if not test_to:
        from newsletter import optouts

        optouts.catch_up(config, secret)  # unsubscribes and bounces the lists do not show yet
    rendered = checked.rendered
    if not test_to:
        rendered = _tracked(config, rendered)
    campaign = Campaign(
        config, rendered, list_name, secret, subject_prefix=TEST_PREFIX if test_to else ""
    )
    recipients = [_test_recipient(address, fields, name) for address in test_to]
    chosen = list_segment(config, list_name, segment, issue) if not test_to else None
    return Prepared(config, checked, campaign, list_name, provider, recipients, chosen)


def list_segment(config: Config, list_name: str, text: str | None, issue=None) -> Segment | None:
    """--segment (or else the issue's `segment:`), checked against the list's columns."""

    where = "--segment"
    if text is None and issue is not None and issue.segment:
        text, where = issue.segment, f"{issue.where('segment')}: segment"
    if not text:
        return None
    from newsletter.store.lists import segment_for

    return segment_for(config, list_name, text, where=where)


def _tracked(config: Config, rendered):
    """The issue as sent to the list: its links kept in the store (for `newsletter report`
    and serve's redirects) and, with [tracking] on, rewritten. Test copies keep their plain links."""
    from newsletter.store import uses_postgres
    from newsletter.tracking import rewrite
    from newsletter.tracking.links import write_links

    links = rewrite.issue_links(rendered, config.base_url)
    if uses_postgres(config):  # serve and report may run on other machines: the store's
        from newsletter.tracking import pglinks  # psycopg: imported only when it is used

        pglinks.keep(config, rendered.issue.slug, links)
    else:
        write_links(config.state_dir, rendered.issue.slug, links)
    return rewrite.apply(config, rendered)


def _test_recipient(address: str, fields: dict[str, str], name: str) -> SampleRecipient:
    from newsletter.subscribers import email_key

    address = address.strip()
    if "@" not in address:
        raise OptionError(f"--test-to {address!r} is not an email address")
    return SampleRecipient(address, email_key(address), name, fields or {"email": address})


def open_ledger(
    config: Config, prepared: Prepared, *, sandbox: bool = False, dry_run: bool = False
) -> Ledger:
    """The workspace ledger (the store's on PostgreSQL); test and sandbox sends deliver
    nothing real and use a scratch one."""
    path = config.state_dir / LEDGER_NAME
    if prepared.is_test or sandbox:
        return Ledger(None)
    from newsletter.store import uses_postgres

    if uses_postgres(config):  # a dry run: planned against the shared ledger, writing nothing
        from newsletter.sending import shared

        return shared.open_ledger(config)
    if dry_run and not path.exists():
        return Ledger(None)
    return Ledger(path)
