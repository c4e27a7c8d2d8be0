"""typer commands only: options in, one library call, known errors out as one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli_common import ConfigOption, handle_errors, load
from newsletter.errors import ExitCode

app = typer.Typer(
    help="Publish an email newsletter from a git repository.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.command()
@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")] = Path("."),
) -> None:
    """Create a workspace: newsletter.toml, the default template, an example issue, an empty list.

    Example: newsletter init my-letter
    """
    from newsletter.workspace import init_workspace

    for path in init_workspace(directory):
        typer.echo(f"created {path}")
    typer.echo(f"Next: cd {directory} && newsletter preview issues/*.md")


@app.command()
@handle_errors
def new(
    title: Annotated[str | None, typer.Argument(help="Title of the new issue.")] = None,
    from_text: Annotated[
        Path | None, typer.Option("--from-text", help="Convert a plain-text roundup.")
    ] = None,
    date: Annotated[
        str | None, typer.Option(help="Issue date, YYYY-MM-DD (default: today).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create a dated issue file in issues/, from a skeleton or from a plain-text roundup.

    Example: newsletter new "Week of March 4th"
    Example: newsletter new --from-text roundup.txt --date 2022-01-21
    """
    import datetime as dt

    from newsletter import importer
    from newsletter.errors import IssueError

    cfg = load(config)
    try:
        day = dt.date.fromisoformat(date) if date else dt.date.today()
    except ValueError:
        raise IssueError(f"--date: expected YYYY-MM-DD, got {date!r}") from None
    if from_text is not None:
        try:
            source = from_text.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise IssueError(f"cannot read: {exc}", where=str(from_text)) from None
        name, text = importer.text_to_issue(source, day, where=str(from_text))
    elif title:
        name, text = importer.new_issue_text(title, day)
    else:
        raise typer.BadParameter("give a TITLE or --from-text FILE")
    path = importer.write_new(cfg.issues_dir, name, text, force=force)
    typer.echo(f"created {_show(path)}")


@app.command()
@handle_errors
def preview(
    issue: Annotated[Path, typer.Argument(help="The issue file (issues/*.md).")],
    as_email: Annotated[
        str | None, typer.Option("--as", help="Preview as this subscriber of the list.")
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the HTML in a browser.")
    ] = False,
    text: Annotated[bool, typer.Option("--text", help="Print the plain-text part.")] = False,
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
    config: ConfigOption = None,
) -> None:
    """Render an issue, check it, and write build/<slug>/email.html, email.txt and email.eml.

    Example: newsletter preview issues/2022-01-21-nato-weekly-roundup-week-of-january-21st.md
    """
    from newsletter.preview import preview as run_preview

    cfg = load(config)
    result = run_preview(cfg, issue, as_email=as_email)
    checked = result.checked
    typer.echo(f"Subject:   {checked.sample.subject}")
    typer.echo(f"Preheader: {checked.rendered.preheader or '(none)'}")
    typer.echo(f"HTML size: {result.html_bytes / 1024:.1f} KB (Gmail clips at 102 KB)")
    errors, warnings = len(checked.errors), len(checked.warnings)
    if not checked.problems:
        typer.echo("Checks:    all passed")
    else:
        typer.echo(f"Checks:    {errors} error(s), {warnings} warning(s)")
        for problem in checked.problems:
            typer.echo(f"  {problem}")
    for path in (result.html_path, result.text_path, result.eml_path):
        typer.echo(f"Wrote      {_show(path)}")
    if text:
        typer.echo("")
        typer.echo(checked.sample.text, nl=False)
    if open_browser:
        import webbrowser

        webbrowser.open(result.html_path.resolve().as_uri())
    if errors or (strict and warnings):
        raise typer.Exit(int(ExitCode.CHECKS_FAILED))


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main() -> None:
    app(prog_name="newsletter")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def _attach_commands() -> None:
    """Commands that live in their own modules."""
    from newsletter import cli_send, cli_serve, cli_subscribers

    for module, names in ((cli_send, ("send", "status")), (cli_serve, ("serve",))):
        for name in names:
            if hasattr(module, name):
                app.command(name)(getattr(module, name))
    if hasattr(cli_serve, "sync"):
        cli_subscribers.app.command("sync")(cli_serve.sync)
    app.add_typer(cli_subscribers.app, name="subscribers")


_attach_commands()
