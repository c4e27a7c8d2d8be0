"""The `newsletter` command: builds the app, registers every command, maps errors to exit codes."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from typer.core import TyperGroup

from newsletter.cli import archive, doctor, issues, report, send, serve, store, subscribers
from newsletter.errors import ExitCode, NewsletterError


class Newsletter(TyperGroup):
    """The root group. Every command runs inside its `invoke`, which is the one error boundary:
    `newsletter`, `python -m newsletter(.cli)` and a test's CliRunner all go through it."""

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


for command in (
    issues.init,
    issues.new,
    issues.preview,
    doctor.doctor,
    send.send,
    send.status,
    report.report,
    serve.serve,
):
    app.command()(command)
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(archive.app, name="archive")
app.add_typer(store.app, name="store")


def main() -> None:
    """The `newsletter` console script."""
    app(prog_name="newsletter")
