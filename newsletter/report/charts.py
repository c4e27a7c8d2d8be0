"""Inline SVG charts drawn here (no script, no network): a report opens anywhere, offline."""

from __future__ import annotations

from html import escape

from newsletter.report.figures import Hour, LinkFigures, Report

COLOURS = {
    "human_opens": "#2b6cb0",
    "machine_opens": "#a0aec0",
    "clicks": "#c05621",
    "automated_clicks": "#f6ad55",
}
LABELS = {
    "human_opens": "Human opens",
    "machine_opens": "Machine opens",
    "clicks": "Clicks",
    "automated_clicks": "Automated clicks",
}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(label)}" class="chart">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _nice_max(value: int) -> int:
    """An axis top at or above value: 1, 2, 5 × a power of ten."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return max(step * factor, 1)
        step *= 10


def over_time(hours: list[Hour]) -> str:
    """Opens and clicks per hour since the send: one line per series."""
    width, height, left, right, top, bottom = 720, 280, 44, 16, 34, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    series = list(COLOURS)
    highest = max((getattr(h, s) for h in hours for s in series), default=0)
    peak = 4 * _nice_max(-(-highest // 4))  # four grid steps of a round size
    count = max(len(hours), 2)
    body = []
    for i in range(5):  # grid and y labels
        y = top + plot_h - plot_h * i / 4
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
            f"{peak * i / 4:g}</text>"
        )

    def x(i: int) -> float:
        return left + plot_w * i / (count - 1)

    ticks = max(1, count // 12)
    for i in range(0, count, ticks):
        body.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" {FONT}>+{i}h</text>'
        )
    for name in series:
        points = " ".join(
            f"{x(i):.1f},{top + plot_h - plot_h * getattr(h, name) / peak:.1f}"
            for i, h in enumerate(hours)
        )
        if len(hours) == 1:
            points += f" {x(1):.1f},{points.split(',')[1]}"
        # machines' series dashed: a line hidden under a reader's line still shows
        dash = ' stroke-dasharray="7 4"' if name in ("machine_opens", "automated_clicks") else ""
        width_of = 6 if name == "human_opens" else 2.5  # drawn first and wider: it shows under
        body.append(
            f'<polyline class="series" data-series="{name}" fill="none" stroke-width="{width_of}" '
            f'stroke="{COLOURS[name]}"{dash} points="{points}"/>'
        )
        if len(hours) <= 48:  # a dot per hour while they can be told apart
            for i, h in enumerate(hours):
                y = top + plot_h - plot_h * getattr(h, name) / peak
                body.append(f'<circle cx="{x(i):.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[name]}"/>')
    for n, name in enumerate(series):  # legend
        lx = left + n * 165
        body.append(
            f'<rect x="{lx}" y="8" width="12" height="12" fill="{COLOURS[name]}"/>'
            f'<text x="{lx + 17}" y="18" {FONT}>{LABELS[name]}</text>'
        )
    return _svg(width, height, "Opens and clicks per hour since the send", body)


def _bars(rows: list[tuple[str, list[tuple[int, str]]]], label: str, width: int = 720) -> str:
    """Horizontal bars, each row stacked from (value, colour) parts, the total at its end."""
    name_w, bar_h, gap, top = 230, 20, 10, 8
    plot_w = width - name_w - 60
    peak = max((sum(v for v, _ in parts) for _, parts in rows), default=0) or 1
    body = []
    for i, (name, parts) in enumerate(rows):
        y = top + i * (bar_h + gap)
        short = name if len(name) <= 34 else name[:33] + "…"
        body.append(
            f'<text x="{name_w - 8}" y="{y + 14}" text-anchor="end" {FONT}>'
            f"<title>{escape(name)}</title>{escape(short)}</text>"
        )
        x = float(name_w)
        for value, colour in parts:
            w = plot_w * value / peak
            if w > 0:
                body.append(
                    f'<rect class="bar" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                    f'fill="{colour}"/>'
                )
            x += w
        total = sum(v for v, _ in parts)
        body.append(f'<text x="{x + 6:.1f}" y="{y + 14}" {FONT}>{total}</text>')
    height = top * 2 + max(len(rows), 1) * (bar_h + gap)
    return _svg(width, height, label, body)


def clicks_per_link(links: list[LinkFigures]) -> str:
    rows = [
        (
            link.text or link.url,
            [(link.clicks, COLOURS["clicks"]), (link.automated, COLOURS["automated_clicks"])],
        )
        for link in links
    ]
    return _bars(rows, "Clicks per link (readers, then automated)")


def funnel(report: Report) -> str:
    t = report.total
    colour = "#2f855a"
    rows = [
        ("Handed over", [(t.handed_over, colour)]),
        ("Delivered", [(t.delivered, colour)]),
        ("Human openers", [(report.opens.human_openers, COLOURS["human_opens"])]),
        ("Clickers", [(report.clicks.clickers, COLOURS["clicks"])]),
        ("Bounced", [(t.bounced_hard, "#c53030"), (t.bounced_soft, "#fc8181")]),
        ("Dropped", [(t.dropped, "#c53030")]),
        ("Spam reports", [(t.spam_reports, "#9b2c2c")]),
        ("Unsubscribed", [(t.unsubscribed_web, "#6b46c1"), (t.unsubscribed_provider, "#b794f4")]),
    ]
    return _bars(rows, "Delivery funnel")
