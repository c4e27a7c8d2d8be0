"""The report as compact tables in the terminal (rich)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from newsletter.report.figures import Funnel, Report
from newsletter.report.read import Send

FUNNEL_ROWS = (
    ("Handed over", "handed_over"),
    ("Delivered", "delivered"),
    ("Deferred", "deferred"),
    ("Bounced (hard)", "bounced_hard"),
    ("Bounced (soft)", "bounced_soft"),
    ("Dropped", "dropped"),
    ("Spam reports", "spam_reports"),
    ("Unsubscribed (web)", "unsubscribed_web"),
    ("Unsubscribed (provider)", "unsubscribed_provider"),
)
HOURS_SHOWN = 24


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=i > 0)
    return table


def funnel_table(report: Report) -> Table:
    funnels: list[Funnel] = (
        report.lists if len(report.lists) == 1 else [*report.lists, report.total]
    )
    table = _table("Delivery", "", *(f.list for f in funnels))
    for label, name in FUNNEL_ROWS:
        table.add_row(label, *(str(getattr(f, name)) for f in funnels))
    table.add_section()
    for state in report.total.ledger:
        table.add_row(f"ledger: {state}", *(str(f.ledger[state]) for f in funnels))
    return table


def print_report(report: Report, console: Console) -> None:
    total = report.total
    console.print(f"[bold]{report.issue}[/bold] · first handed over {report.first_sent or '—'}")
    console.print(funnel_table(report))
    for title, reasons in (
        ("Hard bounces: top reasons", report.hard_bounce_reasons),
        ("Soft bounces: top reasons", report.soft_bounce_reasons),
        ("Drops: top reasons", report.drop_reasons),
    ):
        if reasons:
            table = _table(title, "reason", "recipients")
            for reason in reasons:
                table.add_row(reason.reason, str(reason.count))
            console.print(table)
    opens, clicks = report.opens, report.clicks
    base = total.delivered or total.handed_over
    of = "of delivered" if total.delivered else "of handed over"
    table = _table("Opens and clicks", "", "count", of)
    table.add_row(
        "Human openers (unique)", str(opens.human_openers), percent(opens.human_openers, base)
    )
    table.add_row("Human opens", str(opens.human_opens), "")
    table.add_row("Machine opens (apart)", str(opens.machine_opens), "")
    table.add_row("Machine-only openers", str(opens.machine_only_openers), "")
    table.add_row("Clickers (unique)", str(clicks.clickers), percent(clicks.clickers, base))
    table.add_row("Clicks", str(clicks.clicks), "")
    table.add_row("Automated clicks (apart)", str(clicks.automated_clicks), "")
    console.print(table)
    if clicks.links:
        table = _table("Clicks per link", "link", "clicks", "clickers", "automated")
        for link in clicks.links:
            label = f"{link.text}\n[dim]{link.url}[/dim]" if link.text else link.url
            table.add_row(label, str(link.clicks), str(link.clickers), str(link.automated))
        console.print(table)
    shown = [
        h
        for h in report.hours[:HOURS_SHOWN]
        if h.human_opens or h.machine_opens or h.clicks or h.automated_clicks
    ]
    if shown:
        table = _table(
            f"Per hour since the send (first {HOURS_SHOWN} hours, quiet hours left out)",
            "hour",
            "human opens",
            "machine opens",
            "clicks",
            "automated",
        )
        for h in shown:
            table.add_row(
                f"+{h.hour}h",
                str(h.human_opens),
                str(h.machine_opens),
                str(h.clicks),
                str(h.automated_clicks),
            )
        console.print(table)
    for name, rule in report.rules.items():
        console.print(f"[dim]{name.replace('_', ' ').capitalize()}: {rule}[/dim]")


def print_sends(rows: list[tuple[Send, Report]], console: Console) -> None:
    """Recent sends, newest first, with their headline figures."""
    table = _table(
        "Recent sends (sent: handed over; opened: human openers; clicked: clickers)",
        "issue (lists)",
        "date",
        "sent",
        "delivered",
        "bounced",
        "opened",
        "clicked",
        "unsub",
    )
    for send, report in rows:
        t = report.total
        table.add_row(
            f"{send.issue} ({', '.join(send.lists)})",
            send.started_at[:10],
            str(t.handed_over),
            str(t.delivered),
            str(t.bounced_hard + t.bounced_soft),
            str(report.opens.human_openers),
            str(report.clicks.clickers),
            str(t.unsubscribed_web + t.unsubscribed_provider),
        )
    console.print(table)
