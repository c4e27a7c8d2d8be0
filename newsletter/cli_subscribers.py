"""`newsletter subscribers …`: list, add, remove, forget, import, export, validate."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage subscriber lists (CSV files in subscribers/).", no_args_is_help=True)
