"""`newsletter serve`: the web service for unsubscribe, opt-in, webhooks and the archive."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, load


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on ([serve] host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port ([serve] port, 8000).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes on the port (PostgreSQL store only; default 1).",
        ),
    ] = 1,
    config: ConfigOption = None,
) -> None:
    """Run the web service: one-click unsubscribe, double opt-in, SendGrid events, web archive.

    Example: newsletter serve --port 8000
    On PostgreSQL: newsletter serve --port 8000 --workers 2
    """
    from newsletter.web.app import run

    cfg = load(config)
    run(cfg, host=host or cfg.serve.host, port=port or cfg.serve.port, workers=workers)
