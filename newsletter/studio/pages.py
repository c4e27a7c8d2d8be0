"""What the studio answers with: the page's JSON state, the framed email, the error page."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from newsletter.checks import compat

if TYPE_CHECKING:
    from newsletter.studio.live import Snapshot, Studio

_DARK_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.I)


def framed(html: str, dark: bool = False) -> str:
    """The email as a frame shows it: links open a new tab; `dark` applies its dark-mode CSS."""
    if dark:
        # As a client that honours prefers-color-scheme (Apple Mail) shows it in dark mode.
        html = _DARK_QUERY.sub(
            lambda m: "(min-width: 0px)" if m.group(1).lower() == "dark" else "(max-width: 0px)",
            html,
        )
        html = html.replace("<head>", '<head><meta name="color-scheme" content="dark">', 1)
    return html.replace("<head>", '<head><base target="_blank">', 1)


def error_page(message: str) -> str:
    """A render error, shown where the email would be."""
    from html import escape

    return (
        '<!doctype html><meta charset="utf-8"><body style="font:15px system-ui;padding:24px;'
        f'color:#8a1c1c;background:#fff5f5"><strong>Render error</strong><pre '
        f'style="white-space:pre-wrap">{escape(message)}</pre>'
    )


def state_json(studio: Studio, snapshot: Snapshot) -> dict:
    """The page's state: version, error, problems, spam score and client support."""
    checked = snapshot.checked
    data = compat.load_data()
    return {
        "version": snapshot.version,
        "error": snapshot.error,
        "issue": str(studio.issue_path),
        "preheader": checked.rendered.preheader if checked else None,
        "render_ms": round(snapshot.render_ms, 1),
        "test_to": list(studio.config.send.test_to),
        "provider": studio.config.send.provider,
        "problems": [
            {"code": p.code, "severity": p.severity, "where": p.where, "message": p.message}
            for p in snapshot.problems
        ],
        "spam": snapshot.spam,
        "compat": [
            {
                "title": r.feature.title,
                "url": r.feature.url,
                "example": r.example,
                "enhancement": r.enhancement,
                "warns": r.warns,
                "unsupported": [
                    data.client_name(f, p) for f, p in compat.grouped(r.unsupported).items()
                ],
                "partial": _partial(data, r.partial),
            }
            for r in snapshot.compat
        ],
    }


def _partial(data: compat.SupportData, partial: list[tuple[str, str, str]]) -> list[dict]:
    """Partial support grouped: one entry per client family and note."""
    groups: dict[tuple[str, str], list[str]] = {}
    for family, platform, notes in partial:
        groups.setdefault((family, notes), []).append(platform)
    return [
        {"client": data.client_name(family, platforms), "notes": notes}
        for (family, notes), platforms in groups.items()
    ]
