"""The welcome email: `[subscribe] welcome`, mailed by `serve` to an address that confirms.

It goes through the configured provider and is recorded in the send ledger (the store's
shared one on PostgreSQL: pgwelcome.py) under the welcome issue's slug like any send, so each
address gets it once (across restarts, repeated confirmations and serve instances) and
`newsletter status issues/welcome.md` shows it. Nothing here can fail a
confirmation: every problem is logged and the welcome is simply not sent.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import Config
from newsletter.errors import ConfigError, NewsletterError
from newsletter.message import Campaign
from newsletter.subscribers import Subscriber

if TYPE_CHECKING:
    from newsletter.web.pgstore import Pg

log = logging.getLogger("newsletter.serve")


def welcome_path(config: Config, list_name: str) -> Path | None:
    found = config.subscribe.welcome_for(list_name)
    return config.root / found if found else None


def check(config: Config, lists: list[str]) -> None:
    """Refuse to serve with a welcome issue that is missing or does not load (at start)."""
    from newsletter.issue import load_issue

    for list_name in lists:
        path = welcome_path(config, list_name)
        if path is None:
            continue
        key = "welcome_lists" if list_name in config.subscribe.welcome_lists else "welcome"
        if not path.is_file():
            raise ConfigError(f"[subscribe] {key}: {path} does not exist")
        try:
            load_issue(path)
        except NewsletterError as exc:
            raise ConfigError(f"[subscribe] {key}: {exc}") from None


@dataclass
class Welcome:
    config: Config
    secret: bytes
    # One welcome at a time: they are few, and a provider is used by one thread.
    lock: threading.Lock = field(default_factory=threading.Lock)
    pg: Pg | None = None  # the PostgreSQL store's pool: the welcome is in its shared ledger
    _campaigns: dict[tuple[str, Path], tuple[int, Campaign]] = field(default_factory=dict)

    def send(self, list_name: str, row: Subscriber) -> str:
        """Mail the list's welcome issue to a confirmed row unless it had it; the outcome."""
        path = welcome_path(self.config, list_name)
        if path is None:
            return "none"
        try:
            with self.lock:
                return self._send(list_name, path, row)
        except (NewsletterError, OSError) as exc:
            log.error("welcome message not sent: %s", exc)
            return "failed"

    def _send(self, list_name: str, path: Path, row: Subscriber) -> str:
        from newsletter.sending.ledger import RETRY, SENT, Ledger, Outcome

        campaign = self._campaign(list_name, path)
        slug = campaign.issue_slug
        provider_name = self.config.send.provider
        if self.pg is not None:
            return self._send_pg(list_name, campaign, row)
        with Ledger.for_workspace(self.config.state_dir) as ledger, ledger.claim(slug):
            if ledger.blocked(slug, [row.key]):
                return "already sent"
            message = campaign.message(row.email, row.key, row.merge_fields(), row.name)
            run = ledger.start_run(slug, list_name, provider_name)
            ledger.mark_in_flight(slug, list_name, run, 0, [(row.key, row.email)])
            try:
                result = self._hand_over(message)
            except (NewsletterError, OSError) as exc:
                # Refused before or while handing over: another confirmation may try again.
                ledger.record(slug, [Outcome(row.key, RETRY, None, str(exc))])
                ledger.finish_run(run, "failed")
                raise
            state = _state(result)
            ledger.record(
                slug, [Outcome(row.key, state, result.provider_id, result.reason or None)]
            )
            ledger.finish_run(run, "ok" if state == SENT else "incomplete")
        return _told(state, result)

    def _send_pg(self, list_name: str, campaign: Campaign, row: Subscriber) -> str:
        """As _send, in the store's shared ledger: once per address whichever instance asks."""
        from newsletter.sending.ledger import RETRY, SENT
        from newsletter.web.pgwelcome import PgWelcomes

        book, slug = PgWelcomes(self.pg), campaign.issue_slug
        message = campaign.message(row.email, row.key, row.merge_fields(), row.name)
        run = book.take(slug, list_name, row, self.config.send.provider)
        if run is None:
            return "already sent"
        try:
            result = self._hand_over(message)
        except (NewsletterError, OSError) as exc:
            book.settle(slug, row.key, run, RETRY, None, str(exc), "failed")
            raise
        state = _state(result)
        outcome = "ok" if state == SENT else "incomplete"
        book.settle(slug, row.key, run, state, result.provider_id, result.reason or None, outcome)
        return _told(state, result)

    def _hand_over(self, message):
        from newsletter.providers import make_provider

        with make_provider(self.config.send.provider, self.config) as provider:
            [result] = provider.send_batch([message])
        return result

    def _campaign(self, list_name: str, path: Path) -> Campaign:
        """The welcome issue rendered once, again only after its file changes."""
        from newsletter.issue import load_issue
        from newsletter.sample import check_issue

        mtime = path.stat().st_mtime_ns
        cached = self._campaigns.get((list_name, path))
        if cached is not None and cached[0] == mtime:
            return cached[1]
        # Not in the archive (site.entries leaves welcomes out), so no "view in browser" link.
        issue = replace(load_issue(path), archive=False)
        checked = check_issue(
            self.config, issue, list_name=list_name, secret=self.secret, sending=True
        )
        if checked.errors:
            raise NewsletterError(
                f"the welcome issue has {len(checked.errors)} error(s) (first: "
                f"{checked.errors[0]}); run `newsletter preview {path}`"
            )
        campaign = Campaign(self.config, checked.rendered, list_name, self.secret)
        self._campaigns[(list_name, path)] = (mtime, campaign)
        return campaign


def _state(result) -> str:
    """The ledger state of the provider's answer."""
    from newsletter.providers import Status
    from newsletter.sending.ledger import FAILED, RETRY, SENT, UNKNOWN

    return {
        Status.ACCEPTED: SENT,
        Status.REJECTED: FAILED,
        Status.TEMPORARY: RETRY,
        Status.UNKNOWN: UNKNOWN,
    }[result.status]


def _told(state: str, result) -> str:
    from newsletter.sending.ledger import SENT

    if state != SENT:
        log.error("welcome message not sent: %s %s", result.status.value, result.reason)
    return state
