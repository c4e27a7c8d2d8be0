"""`newsletter init`, `new` and `preview`: a workspace, an issue file, and what it will look like."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from newsletter import files
from newsletter.cli import show
from newsletter.cli.common import ConfigOption, iso_date, load
from newsletter.errors import ExitCode


def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")] = Path("."),
    template: Annotated[
        str,
        typer.Option(help="The built-in template: default, letter (an essay) or digest (links)."),
    ] = "default",
) -> None:
    """Create a workspace: newsletter.toml, an example issue, an empty list.

    Example: newsletter init my-letter --template letter
    """
    from newsletter.render import BUILTIN_TEMPLATES
    from newsletter.workspace import init_workspace

    for path in init_workspace(directory, template):
        typer.echo(f"created {path}")
    typer.echo(
        "Templates: the built-in ones. To change one, copy it into templates/ from "
        f"{BUILTIN_TEMPLATES} (a copy no longer gets the built-in's fixes)."
    )
    typer.echo(f"Next: cd {directory} && newsletter preview issues/*.md")


def new(
    title: Annotated[str | None, typer.Argument(help="Title of the new issue.")] = None,
    from_text: Annotated[
        Path | None, typer.Option("--from-text", help="Convert a plain-text roundup.")
    ] = None,
    date: Annotated[
        dt.date | None,
        typer.Option(
            parser=iso_date,
            metavar="YYYY-MM-DD",
            help="Issue date (default: the date in the title, else today).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create a dated issue file in issues/, from a skeleton or from a plain-text roundup.

    Example: newsletter new "Week of March 4th" --date 2026-03-04

    Example: newsletter new --from-text roundup.txt
    """
    from newsletter import importer

    cfg = load(config)
    if from_text is not None:
        issue = importer.file_to_issue(from_text, date)
    elif title:
        issue = importer.new_issue_text(title, date)
    else:
        raise typer.BadParameter("give a TITLE or --from-text FILE")
    path = importer.write_new(cfg.issues_dir, issue, force=force)
    dated = (
        f" (dated {issue.date} from the title; --date to change)" if issue.date_from_title else ""
    )
    typer.echo(f"created {files.show(path)}{dated}")


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
    segment: Annotated[
        str | None,
        typer.Option(help="Preview as a subscriber in this segment (--as: check they are in it)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Render an issue, check it, and write build/<slug>/email.html, .txt, .eml and .mjml.

    Example: newsletter preview issues/2022-01-21-nato-weekly-roundup-week-of-january-21st.md

    Example: newsletter preview issues/2022-01-21-nato-weekly-roundup-week-of-january-21st.md --serve
    """
    cfg = load(config)
    result = _first_preview(cfg, issue, as_email, check_links, keep_going=serve, segment=segment)
    problems = []
    if result is not None:
        problems = show.preview_report(result)
        written = [result.html_path, result.text_path, result.eml_path, result.mjml_path]
        if screenshot:
            from newsletter.screenshots import take_screenshots

            written += take_screenshots(result.html_path)
        for path in written:
            typer.echo(f"Wrote      {files.show(path)}")
        if text:
            typer.echo("")
            typer.echo(result.checked.sample.text, nl=False)
    if serve:
        return _serve_studio(cfg, issue, port, as_email, open_browser)
    if open_browser and result is not None:
        _open(result.html_path.resolve().as_uri())
    errors = sum(p.severity == "error" for p in problems)
    if errors or (strict and problems):
        raise typer.Exit(int(ExitCode.CHECKS_FAILED))


def _first_preview(
    cfg, issue: Path, as_email: str | None, check_links: bool, keep_going: bool, segment=None
):
    """The preview's result; with --serve an issue error is shown and the page keeps trying."""
    from newsletter import spamproc

    # SpamAssassin loads its rules for about a second: started before the imports and the
    # render (by newsletter/launch.py when it can), it is ready by the time the message is.
    started = spamproc.take()

    from newsletter.errors import ConfigError, NewsletterError
    from newsletter.preview import preview as run_preview

    try:
        return run_preview(
            cfg,
            issue,
            as_email=as_email,
            check_links=check_links,
            segment=segment,
            spam_started=started,
        )
    except NewsletterError as exc:
        if not keep_going or isinstance(exc, ConfigError):
            raise
        typer.echo(f"Error: {exc}", err=True)  # the page shows it until it is fixed
        return None
    finally:
        if isinstance(started, spamproc.Started):
            started.cancel()  # a no-op once it has scored; else the preview failed first


def _serve_studio(cfg, issue: Path, port: int, as_email: str | None, open_browser: bool) -> None:
    from newsletter.studio import serve as serve_studio

    def ready(url: str) -> None:
        typer.echo(f"Serving   {url} (only this machine can reach it; Ctrl-C stops)")
        if open_browser:
            _open(url)

    serve_studio(cfg, issue, port=port, as_email=as_email, on_ready=ready)


def _open(url: str) -> None:
    import webbrowser

    webbrowser.open(url)
