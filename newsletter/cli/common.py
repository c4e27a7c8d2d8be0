"""What the command modules share: the --config option, loading it, dates and plurals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="newsletter.toml to use (default: nearest one upwards)."),
]


def load(config_path: Path | None):
    """The workspace's Config: from --config, else the nearest newsletter.toml upwards."""
    from newsletter.config import load_config

    return load_config(config_path)


def iso_date(value: str | dt.date | None) -> dt.date | None:
    """Parse a YYYY-MM-DD option value; anything else is a usage error."""
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


def plural(count: int, word: str, many: str | None = None) -> str:
    """ "1 worker", "2 workers" (`many` for irregular words: plural(n, "address", "addresses"))."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"
