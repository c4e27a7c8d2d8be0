"""The report as one self-contained HTML file: tables and inline SVG charts, no network."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from newsletter.errors import NewsletterError
from newsletter.report import charts
from newsletter.report.figures import Report
from newsletter.report.terminal import FUNNEL_ROWS, percent

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;color:#1a202c;max-width:960px;margin:2em auto;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;font-size:1.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .8em;border-bottom:1px solid #e2e8f0}
th{text-align:left;background:#f7fafc}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#4a5568;font-size:.9em}.chart{max-width:100%;height:auto;display:block;margin:.5em 0}
.url{color:#4a5568;font-size:.85em;word-break:break-all}
"""


class ReportWriteError(NewsletterError):
    """The HTML report cannot be written."""


def _table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if i >= numeric_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def render_page(report: Report) -> str:
    funnels = report.lists if len(report.lists) == 1 else [*report.lists, report.total]
    delivery = [
        [escape(label), *(str(getattr(f, name)) for f in funnels)] for label, name in FUNNEL_ROWS
    ] + [[f"ledger: {s}", *(str(f.ledger[s]) for f in funnels)] for s in report.total.ledger]
    parts = [
        f"<h1>{escape(report.issue)}</h1>",
        f'<p class="muted">First handed over {escape(report.first_sent or "—")} (UTC)</p>',
        "<h2>Delivery</h2>",
        charts.funnel(report),
        _table(["", *(escape(f.list) for f in funnels)], delivery),
    ]
    for title, reasons in (
        ("Hard bounces: top reasons", report.hard_bounce_reasons),
        ("Soft bounces: top reasons", report.soft_bounce_reasons),
        ("Drops: top reasons", report.drop_reasons),
    ):
        if reasons:
            rows = [[escape(r.reason), str(r.count)] for r in reasons]
            parts += [f"<h2>{title}</h2>", _table(["reason", "recipients"], rows)]
    o, c, t = report.opens, report.clicks, report.total
    base = t.delivered or t.handed_over
    parts += [
        "<h2>Opens and clicks</h2>",
        _table(
            ["", "count", "of delivered" if t.delivered else "of handed over"],
            [
                ["Human openers (unique)", str(o.human_openers), percent(o.human_openers, base)],
                ["Human opens", str(o.human_opens), ""],
                ["Machine opens (apart)", str(o.machine_opens), ""],
                ["Machine-only openers", str(o.machine_only_openers), ""],
                ["Clickers (unique)", str(c.clickers), percent(c.clickers, base)],
                ["Clicks", str(c.clicks), ""],
                ["Automated clicks (apart)", str(c.automated_clicks), ""],
            ],
        ),
        "<h2>Opens and clicks per hour since the send</h2>",
        charts.over_time(report.hours),
    ]
    if c.links:
        rows = [
            [
                f'{escape(link.text or "")}<div class="url">{escape(link.url)}</div>',
                str(link.clicks),
                str(link.clickers),
                str(link.automated),
            ]
            for link in c.links
        ]
        parts += [
            "<h2>Clicks per link</h2>",
            charts.clicks_per_link(c.links),
            _table(["link", "clicks", "clickers", "automated"], rows),
        ]
    parts.append("<h2>How the figures are counted</h2>")
    parts += [f'<p class="muted">{escape(rule)}</p>' for rule in report.rules.values()]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Report: {escape(report.issue)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def write_page(report: Report, path: Path) -> None:
    """Write the page atomically (a half-written report is never left behind)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(render_page(report), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportWriteError(f"{path}: cannot write the report: {exc.strerror}") from None
