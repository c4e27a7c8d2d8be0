"""What the commands print: check results, tables, the send plan, progress and the summary."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from newsletter.cli.common import plural

if TYPE_CHECKING:  # the engine is imported where it runs: `newsletter --help` stays quick
    from newsletter.preview import PreviewResult
    from newsletter.sending import Progress, Summary, ledger


def preview_report(result: PreviewResult) -> list:
    """Print the subject, size, spam score and every problem; return the problems."""
    checked = result.checked
    if result.subscriber:
        email, name = result.subscriber
        typer.echo(f"As:        {f'{name} <{email}>' if name else email} (list {result.list_name})")
    problems = checked.problems
    typer.echo(f"Subject:   {checked.sample.subject}")
    typer.echo(f"Preheader: {checked.rendered.preheader or '(none)'}")
    typer.echo(f"HTML size: {result.html_bytes / 1024:.1f} KB (Gmail clips at 102 KB)")
    typer.echo(f"Spam:      {checked.spam.line}")
    if checked.links is not None:
        broken = sum(not link.ok for link in checked.links)
        typer.echo(f"Links:     {len(checked.links)} checked, {broken} broken")
    errors = sum(p.severity == "error" for p in problems)
    if not problems:
        typer.echo("Checks:    all passed")
    else:
        warnings = plural(len(problems) - errors, "warning")
        typer.echo(f"Checks:    {plural(errors, 'error')}, {warnings}")
        for problem in problems:
            typer.echo(f"  {problem}")
    return problems


def cell(value: str, width: int = 40) -> str:
    """A value made safe and short for a terminal table."""
    shown = "".join(c if c.isprintable() else "?" for c in value)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def table(rows: list[list[str]]) -> None:
    """Print rows as left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip())


def plan(prepared, plan, settings, send_at: int | None, book: ledger.Ledger) -> None:
    """Print what the send will do, before it asks; `plan` None: not counted yet (--yes)."""
    rate = f"{settings.rate:g}/s" if settings.rate else "no rate cap"
    lines = [
        f"Issue:      {prepared.checked.issue.path}",
        f"Subject:    {prepared.subject}",
        f"List:       {prepared.list_name}" if not prepared.is_test else "List:       (test send)",
    ]
    if prepared.segment is not None:
        lines.append(f"Segment:    {prepared.segment.text}")
    lines += [
        f"Provider:   {prepared.provider} ({plural(settings.workers, 'worker')}, {rate})",
    ]
    if send_at:
        when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(send_at))
        lines.append(f"Delivery:   scheduled for {when}")
    if plan is not None:  # else (--yes) the send counts them as it goes: the line comes after
        lines.append(recipients_line(plan))
    if prepared.checked.warnings:
        lines.append(f"Warnings:   {len(prepared.checked.warnings)} (see `newsletter preview`)")
    typer.echo("\n".join(lines))
    if plan is not None:
        unknown(prepared, plan, book)


def recipients_line(plan) -> str:
    """`Recipients: N (left out: …)`: who the send goes to and who not, and why."""
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
    return f"Recipients: {plan.to_send:,}{extra}"


def unknown(prepared, plan, book: ledger.Ledger) -> None:
    """The recipients held back as unknown from an earlier send, if any, and what to do."""
    from newsletter.sending import ledger

    if plan.unknown:
        typer.echo(
            f"{plural(plan.unknown, 'recipient')} may already have the issue: an earlier send "
            "stopped before the provider answered. They are not sent again; check them, then "
            "add --resend-unknown to send anyway:"
        )
        rows(book.rows(prepared.slug, [ledger.UNKNOWN, ledger.IN_FLIGHT], prepared.list_name))


def rows(found) -> None:
    """Print ledger rows, address and reason, as many as a summary names."""
    from newsletter.sending import ledger
    from newsletter.sending.summary import LISTED

    for count, row in enumerate(found):
        if count >= LISTED:
            typer.echo("  … (`newsletter status ISSUE --recipients` lists them all)")
            return
        error = ledger.STOPPED if row.state == ledger.IN_FLIGHT else row.error
        typer.echo(f"  {row.email}" + (f": {error}" if error else ""))


class Reporter:
    """A progress bar on a terminal; otherwise a plain line every few seconds."""

    EVERY = 5.0  # seconds between plain lines
    REDRAW = 0.1  # seconds between redraws of the bar

    def __init__(self, total: int | None, tty: bool) -> None:
        """`total` None: not counted before the send (--yes); no share done or time left."""
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

    def __enter__(self) -> Reporter:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def __call__(self, progress: Progress) -> None:
        known = progress.eta is not None and self.total is not None
        eta = f"{duration(progress.eta)} left" if known else ""
        speed = f"{progress.rate:,.0f}/s"
        now = time.monotonic()
        # Not counted first, the total is what the send has read so far: not worth showing.
        total = progress.total if self.total is not None else None
        if self.bar:
            self.bar.update(self.task, completed=progress.done, total=total, speed=speed, eta=eta)
            if now - self.last >= self.REDRAW or progress.done >= progress.total:
                self.last = now
                self.bar.refresh()
            return
        if now - self.last >= self.EVERY or progress.done >= progress.total:
            self.last = now
            if total is None:
                typer.echo(f"sent {progress.sent:,}, done {progress.done:,}, {speed}", err=True)
                return
            percent = 100 * progress.done / total if total else 100
            typer.echo(
                f"sent {progress.sent:,}, done {progress.done:,} of {total:,} "
                f"({percent:.0f}%), {speed}" + (f", {eta}" if eta else ""),
                err=True,
            )


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def summary(
    done: Summary,
    elapsed: float,
    issue: Path,
    outbox: str | None = None,
    test_command: str | None = None,
) -> None:
    """What the send did and what to do next; `outbox` is the folder the messages went to,
    `test_command` is set for a test send."""
    verb = "Would send" if done.dry_run else "Sent"
    typer.echo(f"{verb} {done.sent:,} in {duration(elapsed)}.")
    if outbox is not None and done.sent and not done.dry_run:
        typer.echo(f"Messages:   {outbox}/ (one .eml file per recipient)")
    if test_command is not None:
        return test_summary(done, test_command)
    plan = done.plan
    if plan.already_sent:
        typer.echo(f"Skipped {plan.already_sent:,} already sent.")
    left_out = ", ".join(f"{n:,} {why}" for why, n in plan.left_out.items() if why != "invalid")
    if left_out:
        typer.echo(f"Left out: {left_out}.")
    skipped(plan.invalid, done.skipped)
    failed = done.failed + plan.failed
    if failed:
        earlier = f" ({plan.failed:,} in an earlier send)" if plan.failed else ""
        typer.echo(f"Failed permanently: {failed:,}{earlier}:")
        for email, reason in done.failures:
            typer.echo(f"  {email}: {reason}")
    unknown = done.unknown + plan.unknown
    if unknown:
        typer.echo(
            f"Unknown: {unknown:,} (the provider may have them; not sent again unless "
            "--resend-unknown)"
        )
        for email in done.unknowns:
            typer.echo(f"  {email}")
    command = f"newsletter send {issue}"
    if done.retry:
        typer.echo(f"Failed temporarily: {done.retry:,}; `{command}` tries them again.")
    if plan.over_limit:
        typer.echo(f"Not yet sent: {plan.over_limit:,} (--limit); `{command}` continues.")
    if done.failures or done.unknowns:
        typer.echo(f"All recipients and reasons: newsletter status {issue} --recipients")
    if done.stopped:
        typer.echo(f"Stopped: {done.stopped}", err=True)
    if done.stopped or done.interrupted:
        typer.echo(
            f"Not sent yet: {done.remaining:,}. The ledger is up to date. "
            f"Run `{command}` again to resume: nobody gets it twice.",
            err=True,
        )


def skipped(count: int, shown: list[tuple[str, str]]) -> None:
    """The rows of the list skipped as malformed, each with its file:line and reason."""
    if not count:
        return
    typer.echo(
        f"Skipped {plural(count, 'invalid row')} "
        "(`newsletter subscribers validate` lists every problem):"
    )
    for where, reason in shown:
        typer.echo(f"  {where}: {reason}")
    if count > len(shown):
        typer.echo("  … (`newsletter status ISSUE` lists them all)")


def test_summary(done: Summary, command: str) -> None:
    """A test send has no ledger: nothing resumes, and running it again sends every copy."""
    if done.failed:
        typer.echo(f"Failed permanently: {done.failed:,}:")
        for email, reason in done.failures:
            typer.echo(f"  {email}: {reason}")
    if done.unknown:
        typer.echo(f"Unknown: {done.unknown:,} (the provider may have them):")
        for email in done.unknowns:
            typer.echo(f"  {email}")
    if done.stopped:
        typer.echo(f"Stopped: {done.stopped}", err=True)
    not_sent = done.retry + done.remaining
    if not_sent:
        typer.echo(
            f"Not sent yet: {not_sent:,}. A test send is not recorded, so it does not resume: "
            f"run `{command}` again to send every test copy again.",
            err=True,
        )


# The ledger's states (newsletter.sending.ledger: not imported here, so that `preview`,
# which shows no ledger, does not load it and its file locks).
LABELS = {
    "sent": "sent",
    "failed": "failed",
    "retry": "to retry",
    "unknown": "unknown",
    "in_flight": "in flight",
    "invalid": "invalid",
    "planned": "waiting for a sender",  # the PostgreSQL store's shared plan (pgledger.py)
    "claimed": "claimed by a sender",
}


def status(book: ledger.Ledger, slug: str, recipients: bool) -> None:
    """Recipients per state for each list of an issue, then the failures (or every recipient)."""
    from newsletter.sending import ledger

    counts = book.counts(slug)
    if not counts:
        typer.echo(f"No sends of {slug} are recorded.")
        return
    sending = book.is_sending(slug)
    segments = book.segments(slug)

    def state_of(state: str) -> str:  # nobody is sending: what is still in flight is unknown
        return ledger.UNKNOWN if state == ledger.IN_FLIGHT and not sending else state

    typer.echo(slug + (" (a send is running)" if sending else ""))
    for list_name, by_state in counts.items():
        merged: dict[str, int] = {}
        for state, number in by_state.items():
            merged[state_of(state)] = merged.get(state_of(state), 0) + number
        parts = [f"{merged[s]:,} {LABELS[s]}" for s in LABELS if s in merged]
        used = segments.get(list_name, [])
        shown = f" (segment: {'; '.join(u or 'whole list' for u in used)})" if any(used) else ""
        typer.echo(f"  list {list_name}{shown}: {', '.join(parts)}")
    if recipients:
        for row in book.rows(slug):
            fields = [row.list, row.email, state_of(row.state), str(row.attempts), row.updated_at]
            typer.echo("\t".join([*fields, row.error or ""]))
        return
    from newsletter.sending.summary import LISTED

    unknown = [ledger.UNKNOWN] if sending else [ledger.UNKNOWN, ledger.IN_FLIGHT]
    for wanted, title in (([ledger.FAILED], "Failed"), (unknown, "Unknown")):
        found = list(itertools.islice(book.rows(slug, wanted), LISTED + 1))
        if found:
            typer.echo(f"{title}:")
            rows(found)
    invalid = sorted(book.rows(slug, [ledger.INVALID]), key=_where)
    if invalid:
        typer.echo("Invalid (skipped; fix these rows and send again):")
        for row in invalid:
            typer.echo(f"  {row.error}")


def _where(row: ledger.Row) -> tuple[str, int]:
    """An invalid row's file and line, from its error ("subscribers/main.csv:12: ...")."""
    where, _, line = (row.error or "").partition(": ")[0].rpartition(":")
    return (where, int(line)) if line.isdigit() else (row.error or "", 0)


def senders(found) -> None:
    """The senders of a send on PostgreSQL (pgsenders.SenderRow): where, how far, alive or not."""
    if not found:
        return
    typer.echo("Senders:")
    for r in found:
        held = f", {r.holding:,} in hand" if r.holding else ""
        heard = f", last heard {r.heartbeat}" if r.state == "sending" else ""
        typer.echo(
            f"  #{r.id} {r.host} pid {r.pid} since {r.started_at}: {r.state}, "
            f"{r.sent:,} sent{held}{heard}"
        )
