"""`newsletter send` and `newsletter status`."""

from __future__ import annotations

import itertools
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter import ledger as states
from newsletter.cli.common import ConfigOption, fail, handle_errors, load
from newsletter.errors import ExitCode

if TYPE_CHECKING:  # the engine is imported where it runs: `newsletter --help` stays quick
    from newsletter import send as engine


@handle_errors
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
        typer.Option("--provider", "-p", help="outbox, smtp or sendgrid ([send] provider)."),
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
    config_path: ConfigOption = None,
) -> None:
    """Send an issue to a list: checks, confirmation, progress, and a summary.

    Example: newsletter send issues/2024-05-01-spring.md --list main
    """
    from newsletter import send as engine
    from newsletter.providers import SendOptions, make_provider

    if as_email and not test_to:
        raise fail("--as only applies to a test send: add --test-to ADDRESS", ExitCode.USAGE)
    config = load(config_path)
    provider = provider or config.send.provider
    if sandbox and not engine.supports(provider, "sandbox"):
        able = engine.providers_supporting("sandbox")
        raise fail(
            f"--sandbox needs a provider with a sandbox mode ({able}); {provider} has none",
            ExitCode.USAGE,
        )
    send_at = _schedule(at, provider, ask=not dry_run)
    prepared = engine.prepare(
        config,
        issue,
        list_name=list_name,
        provider=provider,
        test_to=test_to or (),
        as_email=as_email,
    )
    settings = engine.settings_for(
        config,
        provider,
        workers=workers,
        rate=rate,
        limit=limit,
        resend_unknown=resend_unknown,
        dry_run=dry_run,
    )
    options = SendOptions(sandbox=sandbox, send_at=send_at)
    make_provider(provider, config, options=options).close()  # settings and secrets, before asking
    with engine.open_ledger(config, prepared, sandbox=sandbox, dry_run=dry_run) as ledger:
        plan = engine.plan(prepared, ledger, settings)
        _show_plan(prepared, plan, settings, send_at, ledger)
        if plan.to_send == 0:
            _show_skipped(plan.invalid, plan.skipped)
            typer.echo("Nothing to send.")
            raise typer.Exit(int(engine.Summary(plan).exit_code))
        if not (yes or dry_run or prepared.is_test):
            if not sys.stdin.isatty():
                raise fail(
                    "not on a terminal: pass --yes to send without being asked", ExitCode.USAGE
                )
            typer.confirm(f"Send to {plan.to_send:,} recipients now?", abort=True)
        reporter = _Reporter(plan.to_send, sys.stderr.isatty())
        started = time.monotonic()
        with reporter:
            summary = engine.run(
                prepared,
                ledger,
                lambda: make_provider(provider, config, options=options),
                settings,
                on_progress=reporter,
                total=plan.to_send,
            )
    test_command = _test_command(issue, prepared, as_email) if prepared.is_test else None
    _show_summary(summary, time.monotonic() - started, issue, test_command)
    raise typer.Exit(int(summary.exit_code))


def _schedule(at: str | None, provider: str, ask: bool) -> int | None:
    from newsletter import send as engine

    if not at:
        return None
    planned = engine.schedule(engine.parse_when(at), provider)
    if planned.late_by:
        late = _duration(planned.late_by.total_seconds())
        if not (ask and sys.stdin.isatty()):
            raise fail(
                f"--at {at} was {late} ago: not sending late without asking; drop --at to send now",
                ExitCode.USAGE,
            )
        typer.confirm(f"--at {at} was {late} ago. Send now anyway?", abort=True)
    return planned.send_at


def _show_plan(prepared, plan, settings, send_at, ledger) -> None:
    from newsletter import send as engine

    rate = f"{settings.rate:g}/s" if settings.rate else "no rate cap"
    lines = [
        f"Issue:      {prepared.checked.issue.path}",
        f"Subject:    {prepared.subject}",
        f"List:       {prepared.list_name}" if not prepared.is_test else "List:       (test send)",
        f"Provider:   {prepared.provider} ({settings.workers} worker(s), {rate})",
    ]
    if send_at:
        when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(send_at))
        lines.append(f"Delivery:   scheduled for {when}")
    detail = []
    if plan.already_sent:
        detail.append(f"{plan.already_sent:,} already sent")
    detail += [f"{n:,} {why}" for why, n in plan.left_out.items()]
    if plan.failed:
        detail.append(f"{plan.failed:,} failed earlier")
    if plan.unknown:
        detail.append(f"{plan.unknown:,} unknown")
    if plan.over_limit:
        detail.append(f"{plan.over_limit:,} left for later by --limit")
    extra = f" (left out: {', '.join(detail)})" if detail else ""
    lines.append(f"Recipients: {plan.to_send:,}{extra}")
    if prepared.checked.warnings:
        lines.append(f"Warnings:   {len(prepared.checked.warnings)} (see `newsletter preview`)")
    typer.echo("\n".join(lines))
    if plan.unknown:
        typer.echo(
            f"{plan.unknown:,} recipient(s) may already have the issue: an earlier send stopped "
            "before the provider answered. They are not sent again; check them, then add "
            "--resend-unknown to send anyway:"
        )
        unknown = ledger.rows(prepared.slug, [states.UNKNOWN, states.IN_FLIGHT], prepared.list_name)
        _list_rows(unknown, engine.LISTED)


def _list_rows(rows, limit: int) -> None:
    for shown, row in enumerate(rows):
        if shown >= limit:
            typer.echo("  … (`newsletter status ISSUE --recipients` lists them all)")
            return
        error = states.STOPPED if row.state == states.IN_FLIGHT else row.error
        typer.echo(f"  {row.email}" + (f": {error}" if error else ""))


class _Reporter:
    """A progress bar on a terminal; otherwise a plain line every few seconds."""

    EVERY = 5.0  # seconds between plain lines
    REDRAW = 0.1  # seconds between redraws of the bar

    def __init__(self, total: int, tty: bool) -> None:
        self.total = total
        self.bar = None
        self.last = 0.0
        if tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("Sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TextColumn("{task.fields[eta]}"),
                console=Console(stderr=True),
                # No refresh thread: the send forks a process to read the list, best done
                # from a process with one thread. Each progress report redraws instead.
                auto_refresh=False,
            )
            self.task = self.bar.add_task("send", total=total, speed="", eta="")

    def __enter__(self) -> _Reporter:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def __call__(self, progress: engine.Progress) -> None:
        eta = f"{_duration(progress.eta)} left" if progress.eta is not None else ""
        speed = f"{progress.rate:,.0f}/s"
        if self.bar:
            self.bar.update(
                self.task, completed=progress.done, total=progress.total, speed=speed, eta=eta
            )
            now = time.monotonic()
            if now - self.last >= self.REDRAW or progress.done >= progress.total:
                self.last = now
                self.bar.refresh()
            return
        now = time.monotonic()
        if now - self.last >= self.EVERY or progress.done >= progress.total:
            self.last = now
            percent = 100 * progress.done / progress.total if progress.total else 100
            typer.echo(
                f"sent {progress.sent:,}, done {progress.done:,} of {progress.total:,} "
                f"({percent:.0f}%), {speed}" + (f", {eta}" if eta else ""),
                err=True,
            )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _test_command(issue: Path, prepared, as_email: str | None) -> str:
    """The command that sends a test send's copies again, for advice after it failed."""
    args = ["newsletter", "send", str(issue)]
    for recipient in prepared.test_recipients:
        args += ["--test-to", recipient.email]
    if as_email:
        args += ["--as", as_email]
    return shlex.join(args)


def _show_summary(
    summary: engine.Summary, elapsed: float, issue: Path, test_command: str | None = None
) -> None:
    """What the send did and what to do next; `test_command` is set for a test send."""
    if test_command is not None:
        return _show_test_summary(summary, elapsed, test_command)
    plan = summary.plan
    verb = "Would send" if summary.dry_run else "Sent"
    typer.echo(f"{verb} {summary.sent:,} in {_duration(elapsed)}.")
    if plan.already_sent:
        typer.echo(f"Skipped {plan.already_sent:,} already sent.")
    left_out = ", ".join(f"{n:,} {why}" for why, n in plan.left_out.items() if why != "invalid")
    if left_out:
        typer.echo(f"Left out: {left_out}.")
    _show_skipped(plan.invalid, summary.skipped)
    failed = summary.failed + plan.failed
    if failed:
        earlier = f" ({plan.failed:,} in an earlier send)" if plan.failed else ""
        typer.echo(f"Failed permanently: {failed:,}{earlier}:")
        for email, reason in summary.failures:
            typer.echo(f"  {email}: {reason}")
    unknown = summary.unknown + plan.unknown
    if unknown:
        typer.echo(
            f"Unknown: {unknown:,} (the provider may have them; not sent again unless "
            "--resend-unknown)"
        )
        for email in summary.unknowns:
            typer.echo(f"  {email}")
    command = f"newsletter send {issue}"
    if summary.retry:
        typer.echo(f"Failed temporarily: {summary.retry:,}; `{command}` tries them again.")
    if plan.over_limit:
        typer.echo(f"Not yet sent: {plan.over_limit:,} (--limit); `{command}` continues.")
    if summary.failures or summary.unknowns:
        typer.echo(f"All recipients and reasons: newsletter status {issue} --recipients")
    if summary.stopped:
        typer.echo(f"Stopped: {summary.stopped}", err=True)
    if summary.stopped or summary.interrupted:
        typer.echo(
            f"Not sent yet: {summary.remaining:,}. The ledger is up to date. "
            f"Run `{command}` again to resume: nobody gets it twice.",
            err=True,
        )


def _show_skipped(count: int, skipped: list[tuple[str, str]]) -> None:
    """The rows of the list skipped as malformed, each with its file:line and reason."""
    if not count:
        return
    rows = "row" if count == 1 else "rows"
    typer.echo(
        f"Skipped {count:,} invalid {rows} (`newsletter subscribers validate` lists every problem):"
    )
    for where, reason in skipped:
        typer.echo(f"  {where}: {reason}")
    if count > len(skipped):
        typer.echo("  … (`newsletter status ISSUE` lists them all)")


def _show_test_summary(summary: engine.Summary, elapsed: float, command: str) -> None:
    """A test send has no ledger: nothing resumes, and running it again sends every copy."""
    typer.echo(f"Sent {summary.sent:,} in {_duration(elapsed)}.")
    if summary.failed:
        typer.echo(f"Failed permanently: {summary.failed:,}:")
        for email, reason in summary.failures:
            typer.echo(f"  {email}: {reason}")
    if summary.unknown:
        typer.echo(f"Unknown: {summary.unknown:,} (the provider may have them):")
        for email in summary.unknowns:
            typer.echo(f"  {email}")
    if summary.stopped:
        typer.echo(f"Stopped: {summary.stopped}", err=True)
    not_sent = summary.retry + summary.remaining
    if not_sent:
        typer.echo(
            f"Not sent yet: {not_sent:,}. A test send is not recorded, so it does not resume: "
            f"run `{command}` again to send every test copy again.",
            err=True,
        )


@handle_errors
def status(
    issue: Annotated[str, typer.Argument(help="The issue file (or its slug).")],
    recipients: Annotated[
        bool, typer.Option("--recipients", help="List every recipient with its state.")
    ] = False,
    config_path: ConfigOption = None,
) -> None:
    """Show how the sends of an issue went: recipients per state for each list, and the failures.

    Example: newsletter status issues/2024-05-01-spring.md --recipients
    """
    from newsletter import send as engine

    config = load(config_path)
    slug = engine.issue_slug(issue)
    path = config.state_dir / states.LEDGER_NAME
    if not path.exists():
        typer.echo(f"No sends of {slug} are recorded.")
        return
    with states.Ledger(path) as ledger:
        counts = ledger.counts(slug)
        if not counts:
            typer.echo(f"No sends of {slug} are recorded.")
            return
        sending = ledger.is_sending(slug)
        typer.echo(slug + (" (a send is running)" if sending else ""))
        for list_name, by_state in counts.items():
            if not sending and states.IN_FLIGHT in by_state:
                # Nobody is sending: what is still in flight is unknown.
                by_state[states.UNKNOWN] = by_state.get(states.UNKNOWN, 0) + by_state.pop(
                    states.IN_FLIGHT
                )
            parts = [f"{by_state[s]:,} {_LABELS[s]}" for s in states.STATES if s in by_state]
            typer.echo(f"  list {list_name}: {', '.join(parts)}")
        if recipients:
            for row in ledger.rows(slug):
                state = (
                    states.UNKNOWN if row.state == states.IN_FLIGHT and not sending else row.state
                )
                typer.echo(
                    "\t".join(
                        [
                            row.list,
                            row.email,
                            state,
                            str(row.attempts),
                            row.updated_at,
                            row.error or "",
                        ]
                    )
                )
            return
        unknown = [states.UNKNOWN] if sending else [states.UNKNOWN, states.IN_FLIGHT]
        for wanted, title in (([states.FAILED], "Failed"), (unknown, "Unknown")):
            rows = list(itertools.islice(ledger.rows(slug, wanted), engine.LISTED + 1))
            if rows:
                typer.echo(f"{title}:")
                _list_rows(rows, engine.LISTED)
        invalid = sorted(ledger.rows(slug, [states.INVALID]), key=_where)
        if invalid:
            typer.echo("Invalid (skipped; fix these rows and send again):")
            for row in invalid:
                typer.echo(f"  {row.error}")


def _where(row: states.Row) -> tuple[str, int]:
    """An invalid row's file and line, from its error ("subscribers/main.csv:12: ...")."""
    where, _, line = (row.error or "").partition(": ")[0].rpartition(":")
    return (where, int(line)) if line.isdigit() else (row.error or "", 0)


_LABELS = {
    states.SENT: "sent",
    states.FAILED: "failed",
    states.RETRY: "to retry",
    states.UNKNOWN: "unknown",
    states.IN_FLIGHT: "in flight",
    states.INVALID: "invalid",
}
