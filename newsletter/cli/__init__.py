"""The `newsletter` command: builds the app, registers every command, maps errors to exit codes."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, MutableMapping
from typing import Annotated

import typer
from typer.core import TyperGroup

from newsletter.errors import ExitCode, NewsletterError

# Every command, in the order `--help` lists them: name -> (module in newsletter.cli, the
# command function or sub-app). A module is imported when its command is looked up, so
# `newsletter preview` loads neither the sending engine nor the subscriber commands.
COMMANDS = {
    "init": ("issues", "init"),
    "new": ("issues", "new"),
    "preview": ("issues", "preview"),
    "doctor": ("doctor", "doctor"),
    "send": ("send", "send"),
    "status": ("send", "status"),
    "report": ("report", "report"),
    "serve": ("serve", "serve"),
    "subscribers": ("subscribers", "app"),
    "archive": ("archive", "app"),
    "store": ("store", "app"),
}


def _load(name: str):
    """The click command for one entry of COMMANDS, built as typer builds registered ones."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(f"newsletter.cli.{module}"), attribute)
    holder = typer.Typer(rich_markup_mode=None)  # as the root app: its settings reach groups
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name=name)(target)
    return typer.main.get_group(holder).commands[name]


class _Commands(MutableMapping):
    """The root group's commands: every name is known, each is built on first lookup."""

    def __init__(self, loaded: dict, lazy: dict[str, Callable]) -> None:
        self._loaded = dict(loaded)
        self._lazy = lazy

    def __getitem__(self, name: str):
        if name not in self._loaded and name in self._lazy:
            self._loaded[name] = self._lazy[name](name)
        return self._loaded[name]

    def __setitem__(self, name: str, command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name)
        self._lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._lazy
        yield from (name for name in self._loaded if name not in self._lazy)

    def __len__(self) -> int:
        return len(set(self._lazy) | set(self._loaded))


class Newsletter(TyperGroup):
    """The root group. Every command runs inside its `invoke`, which is the one error boundary:
    `newsletter`, `python -m newsletter(.cli)` and a test's CliRunner all go through it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands, dict.fromkeys(COMMANDS, _load))

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # the names only: nothing is imported to list them

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            if os.environ.get("NEWSLETTER_DEBUG"):
                raise  # typer prints the traceback (without locals: they may hold secrets)
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


app = typer.Typer(
    cls=Newsletter,
    help="Publish an email newsletter from a git repository.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # Plain help: Rich markup would eat "[send]" in "([send] provider)".
    rich_markup_mode=None,
)


def version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        typer.echo(f"newsletter {installed('newsletter-publisher')}")
    except PackageNotFoundError:
        typer.echo("newsletter (not installed: no newsletter-publisher distribution found)")
    raise typer.Exit()


@app.callback()
def options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    """The `newsletter` console script."""
    app(prog_name="newsletter")
