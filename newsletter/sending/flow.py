"""One send from start to end, as both `newsletter send` and the studio's "Send test" run it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Config
from newsletter.sending import engine
from newsletter.sending.collector import fewer_collections
from newsletter.sending.ledger import Ledger
from newsletter.sending.options import (
    OptionError,
    Settings,
    providers_supporting,
    settings_for,
    supports,
)
from newsletter.sending.planning import Plan, plan
from newsletter.sending.prepared import Prepared, open_ledger, prepare
from newsletter.sending.summary import Progress, Summary
from newsletter.store import uses_postgres

Reporter = Callable[[Progress], None]
# Shown the plan before anything is sent: stops the send by raising, or lets it go on by
# returning a context (a progress bar, say) that is open while the send runs and gives its
# progress callback (or None). The plan is None when the send was told not to count first.
Approve = Callable[
    [Prepared, Plan | None, Settings, Ledger], AbstractContextManager[Reporter | None]
]


@dataclass(frozen=True)
class Sent:
    """A finished send: what was sent, what became of it, and the seconds its run took."""

    prepared: Prepared
    summary: Summary
    elapsed: float
    counted: bool = True  # the plan was counted before the send; else summary.plan counts it


@fewer_collections()
def send(
    config: Config,
    issue_path: Path,
    *,
    list_name: str | None = None,
    provider: str | None = None,
    test_to: Iterable[str] = (),
    as_email: str | None = None,
    segment: str | None = None,
    workers: int | None = None,
    rate: float | None = None,
    limit: int | None = None,
    resend_unknown: bool = False,
    dry_run: bool = False,
    sandbox: bool = False,
    send_at: int | None = None,
    approve: Approve | None = None,
    count_first: bool = True,
) -> Sent:
    """Prepare (load and check the issue once), check the provider, plan, approve, run.

    `count_first=False` (nobody is asked) goes without the pass over the list that counts
    the plan before anything is sent: the send's own pass counts it (summary.plan), and
    `approve` gets None. A test send, a dry run and a shared (PostgreSQL) send count first.
    """
    from newsletter.providers import SendOptions, make_provider
    from newsletter.providers import check as check_provider

    provider = provider or config.send.provider
    if sandbox and not supports(provider, "sandbox"):
        able = providers_supporting("sandbox")
        raise OptionError(
            f"--sandbox needs a provider with a sandbox mode ({able}); {provider} has none"
        )
    options = SendOptions(sandbox=sandbox, send_at=send_at)
    prepared = prepare(
        config,
        issue_path,
        list_name=list_name,
        provider=provider,
        test_to=test_to,
        as_email=as_email,
        segment=segment,
    )
    settings = settings_for(
        config,
        provider,
        workers=workers,
        rate=rate,
        limit=limit,
        resend_unknown=resend_unknown,
        dry_run=dry_run,
    )
    check_provider(provider, config, options=options)  # settings and secrets, before asking
    factory = lambda: make_provider(provider, config, options=options)  # noqa: E731
    if uses_postgres(config) and not (prepared.is_test or sandbox or dry_run):
        from newsletter.sending import shared  # several senders may share this send

        summary, elapsed = shared.send(config, prepared, factory, settings, approve)
        return Sent(prepared, summary, elapsed)
    with open_ledger(config, prepared, sandbox=sandbox, dry_run=dry_run) as ledger:
        counted = count_first or prepared.is_test or dry_run
        planned = plan(prepared, ledger, settings) if counted else None
        shown = approve(prepared, planned, settings, ledger) if approve else None
        with shown or contextlib.nullcontext() as reporter:
            started = time.monotonic()
            summary = engine.run(
                prepared,
                ledger,
                factory,
                settings,
                on_progress=reporter,
                total=planned.to_send if planned else None,
            )
    return Sent(prepared, summary, time.monotonic() - started, counted)
