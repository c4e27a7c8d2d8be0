"""`newsletter report`: delivery, opens and clicks of a sent issue (newsletter.report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, load


def report(
    issue: Annotated[
        str | None, typer.Argument(help="The issue file (or its slug); none: the recent sends.")
    ] = None,
    list_name: Annotated[
        str | None, typer.Option("--list", help="Only the recipients of this list.")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the report as one self-contained HTML file."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Report what happened to an issue: delivery, bounces, human and machine opens, clicks.

    Example: newsletter report issues/2024-05-01-spring.md --html report.html
    """
    from rich.console import Console

    from newsletter import report as reports
    from newsletter.report import terminal
    from newsletter.sending.ledger import issue_slug

    config = load(config_path)
    console = Console(highlight=False, soft_wrap=False)
    if issue is None:
        sends = reports.recent(config)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {
                            "issue": s.issue,
                            "lists": list(s.lists),
                            "started_at": s.started_at,
                            **r.as_dict(),
                        }
                        for s, r in sends
                    ],
                    indent=2,
                    ensure_ascii=False,
                )
            )
        elif not sends:
            typer.echo("No sends are recorded yet.")
        else:
            terminal.print_sends(sends, console)
        return
    slug = issue_slug(issue)
    figures = reports.report(config, slug, list_name)
    if html is not None:
        from newsletter.report.page import write_page

        write_page(figures, html)
    if as_json:
        typer.echo(json.dumps(figures.as_dict(), indent=2, ensure_ascii=False))
    elif not figures.total.handed_over and not any(figures.total.ledger.values()):
        typer.echo(f"No sends of {slug} are recorded.")
    else:
        terminal.print_report(figures, console)
    if html is not None and not as_json:
        typer.echo(f"Wrote {html}")
