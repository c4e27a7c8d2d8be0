"""`newsletter send` and `newsletter status`."""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter import files
from newsletter.cli import show
from newsletter.cli.common import ConfigOption, load
from newsletter.errors import UsageError


def send(
    issue: Annotated[
        Path, typer.Argument(help="The issue file, e.g. issues/2024-05-01-spring.md.")
    ],
    list_name: Annotated[
        str | None,
        typer.Option("--list", "-l", help="List to send to (default: the issue's list)."),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            "-p",
            help="outbox, smtp, sendgrid, postmark, resend, ses or mailgun ([send] provider).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Do everything but hand the messages to the provider.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking.")] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Send to at most N recipients in this run.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="At most this many messages per second ([send] rate).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Parallel connections or requests ([send] workers).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Deliver at this time, e.g. 2024-05-01T09:00 (sendgrid, up to 72 h)."),
    ] = None,
    resend_unknown: Annotated[
        bool,
        typer.Option(
            "--resend-unknown", help="Also send to recipients whose earlier outcome is unknown."
        ),
    ] = False,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox", help="SendGrid sandbox mode: validated, not delivered, not recorded."
        ),
    ] = False,
    test_to: Annotated[
        list[str] | None,
        typer.Option("--test-to", help="Send a [TEST] copy to this address only (repeatable)."),
    ] = None,
    as_email: Annotated[
        str | None, typer.Option("--as", help="With --test-to: use this subscriber's fields.")
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option(
            help="Only subscribers it matches, e.g. 'tag:python and country = \"UA\"' "
            "(default: the issue's segment:)."
        ),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Send an issue to a list: checks, confirmation, progress, and a summary.

    Example: newsletter send issues/2024-05-01-spring.md --list main
    """
    from newsletter import sending
    from newsletter.providers import outbox

    if as_email and not test_to:
        raise UsageError("--as only applies to a test send: add --test-to ADDRESS")
    config = load(config_path)
    provider = provider or config.send.provider
    send_at = _schedule(at, provider, ask=not dry_run)
    sent = sending.send(
        config,
        issue,
        list_name=list_name,
        provider=provider,
        test_to=test_to or (),
        as_email=as_email,
        segment=segment,
        workers=workers,
        rate=rate,
        limit=limit,
        resend_unknown=resend_unknown,
        dry_run=dry_run,
        sandbox=sandbox,
        send_at=send_at,
        approve=functools.partial(_approve, send_at=send_at, yes=yes or dry_run),
        count_first=not yes,  # nobody to show the count to before the send: counted as it goes
    )
    prepared = sent.prepared
    if not sent.counted:
        _counted_after(config, prepared, sent.summary)
    folder = files.show(outbox.folder_for(config, prepared.slug)) if provider == "outbox" else None
    test_command = _test_command(issue, prepared, as_email) if prepared.is_test else None
    show.summary(sent.summary, sent.elapsed, issue, folder, test_command)
    raise typer.Exit(int(sent.summary.exit_code))


def _approve(prepared, plan, settings, ledger, *, send_at: int | None, yes: bool):
    """Show the plan; ask unless told not to; a progress reporter for the run.

    With no plan (--yes: not counted before the send), the send goes on at once.
    """
    from newsletter.doctor import send_notes
    from newsletter.sending import Summary

    show.plan(prepared, plan, settings, send_at, ledger)
    for note in send_notes(prepared.config, prepared.provider):
        typer.echo(note)
    if plan is None:
        return show.Reporter(None, sys.stderr.isatty())
    if plan.to_send == 0:
        show.skipped(plan.invalid, plan.skipped)
        typer.echo("Nothing to send.")
        raise typer.Exit(int(Summary(plan).exit_code))
    if not (yes or prepared.is_test):
        if not sys.stdin.isatty():
            raise UsageError("not on a terminal: pass --yes to send without being asked")
        typer.confirm(f"Send to {plan.to_send:,} recipients now?", abort=True)
    return show.Reporter(plan.to_send, sys.stderr.isatty())


def _counted_after(config, prepared, summary) -> None:
    """The plan's line, counted by the send itself (--yes); "Nothing to send." when it had
    nobody to send to, as a counted plan would have said before."""
    from newsletter.sending.ledger import Ledger

    plan = summary.plan
    typer.echo(show.recipients_line(plan))
    if plan.unknown:
        with Ledger.for_workspace(config.state_dir) as book:
            show.unknown(prepared, plan, book)
    if plan.to_send == 0 and not (summary.interrupted or summary.stopped):
        show.skipped(plan.invalid, summary.skipped)
        typer.echo("Nothing to send.")
        raise typer.Exit(int(summary.exit_code))


def _schedule(at: str | None, provider: str, ask: bool) -> int | None:
    """The delivery time of --at; one already past is sent now only when the user says so."""
    from newsletter.sending import parse_when, schedule

    if not at:
        return None
    planned = schedule(parse_when(at), provider)
    if planned.late_by:
        late = show.duration(planned.late_by.total_seconds())
        if not (ask and sys.stdin.isatty()):
            raise UsageError(
                f"--at {at} was {late} ago: not sending late without asking; drop --at to send now"
            )
        typer.confirm(f"--at {at} was {late} ago. Send now anyway?", abort=True)
    return planned.send_at


def _test_command(issue: Path, prepared, as_email: str | None) -> str:
    """The command that sends a test send's copies again, for advice after it failed."""
    args = ["newsletter", "send", str(issue)]
    for recipient in prepared.test_recipients:
        args += ["--test-to", recipient.email]
    if as_email:
        args += ["--as", as_email]
    return shlex.join(args)


def status(
    issue: Annotated[str, typer.Argument(help="The issue file (or its slug).")],
    recipients: Annotated[
        bool, typer.Option("--recipients", help="List every recipient with its state.")
    ] = False,
    config_path: ConfigOption = None,
) -> None:
    """Show how the sends of an issue went: recipients per state for each list, and the failures
    (on PostgreSQL, also each sender of the send and its progress).

    Example: newsletter status issues/2024-05-01-spring.md --recipients
    """
    from newsletter.sending import ledger
    from newsletter.store import uses_postgres

    config = load(config_path)
    slug = ledger.issue_slug(issue)
    if uses_postgres(config):
        from newsletter.sending import pgsenders, shared

        with shared.open_ledger(config) as book:
            show.status(book, slug, recipients)
            if not recipients:
                show.senders(pgsenders.senders(book, slug))
        return
    path = config.state_dir / ledger.LEDGER_NAME
    if not path.exists():
        typer.echo(f"No sends of {slug} are recorded.")
        return
    with ledger.Ledger(path) as book:
        show.status(book, slug, recipients)
