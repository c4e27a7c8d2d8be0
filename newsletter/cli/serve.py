"""`newsletter serve` and `newsletter subscribers sync`."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, handle_errors, load


@handle_errors
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on ([serve] host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port ([serve] port, 8000).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the web service: one-click unsubscribe, double opt-in, SendGrid events, web archive.

    Example: newsletter serve --port 8000
    """
    from newsletter.web.app import run

    cfg = load(config)
    run(cfg, host=host or cfg.serve.host, port=port or cfg.serve.port)


@handle_errors
def sync(
    since: Annotated[
        str | None,
        typer.Option(help="Only entries since this date or time, e.g. 2024-05-01 (default: all)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Pull SendGrid's bounces, blocks, spam reports, invalid emails and unsubscribes into
    subscribers/suppressions.csv.

    Example: newsletter subscribers sync --since 2024-05-01
    """
    from newsletter.sync import parse_since, sync_suppressions

    cfg = load(config)
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    report = sync_suppressions(cfg, since=start)
    width = max(len(kind) for kind in report.found)
    for kind, found in report.found.items():
        typer.echo(f"{kind:<{width}}  {found:>6} found, {report.added[kind]:>6} new")
    if report.skipped:
        typer.echo(f"Skipped {report.skipped} entries that are not email addresses.")
    total = sum(report.added.values())
    typer.echo(f"Added {total} suppression(s) to subscribers/suppressions.csv.")
