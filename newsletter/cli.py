"""typer commands only: options in, one library call, known errors out as one line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from newsletter.cli_common import ConfigOption, handle_errors, load

app = typer.Typer(
    help="Publish an email newsletter from a git repository.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

def main() -> None:
    app(prog_name="newsletter")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def _attach_commands() -> None:
    """Commands that live in their own modules."""
    from newsletter import cli_send, cli_subscribers

    app.add_typer(cli_subscribers.app, name="subscribers")
    for name in ("send", "status"):
        if hasattr(cli_send, name):
            app.command(name)(getattr(cli_send, name))


_attach_commands()
