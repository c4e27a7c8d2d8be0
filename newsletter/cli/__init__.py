"""typer commands only: options in, one library call, known errors out as one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, handle_errors, load
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
        bool,
        typer.Option("--open", help="Open the HTML (or, with --serve, the page) in a browser."),
    ] = False,
    text: Annotated[bool, typer.Option("--text", help="Print the plain-text part.")] = False,
    strict: Annotated[bool, typer.Option(help="Fail on warnings too.")] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Serve a live preview page on 127.0.0.1 that reloads on every change."
        ),
    ] = False,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port for --serve (0: any free port).")
    ] = 8001,
    screenshot: Annotated[
        bool,
        typer.Option(
            "--screenshot", help="Write desktop.png, mobile.png and dark.png (headless Chromium)."
        ),
    ] = False,
    check_links: Annotated[
        bool, typer.Option("--check-links", help="Request every link and image; warn on broken.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Render an issue, check it, and write build/<slug>/email.html, email.txt and email.eml.

    Example: newsletter preview issues/2022-01-21-nato-weekly-roundup-week-of-january-21st.md
    Example: newsletter preview issues/2022-01-21-nato-weekly-roundup-week-of-january-21st.md --serve
    """
    from newsletter.errors import ConfigError, NewsletterError
    from newsletter.preview import preview as run_preview

    cfg = load(config)
    try:
        result = run_preview(cfg, issue, as_email=as_email, check_links=check_links)
    except NewsletterError as exc:
        if not serve or isinstance(exc, ConfigError):
            raise
        typer.echo(f"Error: {exc}", err=True)  # the page shows it until it is fixed
        result = None
    errors = warnings = 0
    if result is not None:
        checked = result.checked
        problems = checked.problems
        typer.echo(f"Subject:   {checked.sample.subject}")
        typer.echo(f"Preheader: {checked.rendered.preheader or '(none)'}")
        typer.echo(f"HTML size: {result.html_bytes / 1024:.1f} KB (Gmail clips at 102 KB)")
        typer.echo(f"Spam:      {checked.spam.line}")
        if checked.links is not None:
            broken = sum(not link.ok for link in checked.links)
            typer.echo(f"Links:     {len(checked.links)} checked, {broken} broken")
        errors = sum(p.severity == "error" for p in problems)
        warnings = len(problems) - errors
        if not problems:
            typer.echo("Checks:    all passed")
        else:
            typer.echo(f"Checks:    {errors} error(s), {warnings} warning(s)")
            for problem in problems:
                typer.echo(f"  {problem}")
        written = [result.html_path, result.text_path, result.eml_path]
        if screenshot:
            from newsletter.screenshots import take_screenshots

            written += take_screenshots(result.html_path)
        for path in written:
            typer.echo(f"Wrote      {_show(path)}")
        if text:
            typer.echo("")
            typer.echo(checked.sample.text, nl=False)
    if serve:
        from newsletter.studio import serve as serve_studio

        def ready(url: str) -> None:
            typer.echo(f"Serving   {url} (only this machine can reach it; Ctrl-C stops)")
            if open_browser:
                import webbrowser

                webbrowser.open(url)

        serve_studio(cfg, issue, port=port, as_email=as_email, on_ready=ready)
        return
    if open_browser and result is not None:
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
    from newsletter.cli import send as cli_send
    from newsletter.cli import serve as cli_serve
    from newsletter.cli import subscribers as cli_subscribers

    for module, names in ((cli_send, ("send", "status")), (cli_serve, ("serve",))):
        for name in names:
            if hasattr(module, name):
                app.command(name)(getattr(module, name))
    if hasattr(cli_serve, "sync"):
        cli_subscribers.app.command("sync")(cli_serve.sync)
    app.add_typer(cli_subscribers.app, name="subscribers")


_attach_commands()
