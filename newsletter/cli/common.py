"""What every command module shares: the --config option and the one place errors become exit codes."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import typer

from newsletter.errors import ExitCode, NewsletterError

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="newsletter.toml to use (default: nearest one upwards)."),
]


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(func):
    """Turn a NewsletterError into one line on stderr and its exit code; tracebacks on request."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NewsletterError as exc:
            if os.environ.get("NEWSLETTER_DEBUG"):
                raise
            raise fail(str(exc), int(exc.exit_code)) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


def load(config_path: Path | None):
    from newsletter.config import load_config

    return load_config(config_path)
