"""`newsletter archive`: the public archive of sent issues as a static site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, load, plural

app = typer.Typer(
    help="The public archive of sent issues (web pages, an index and an Atom feed).",
    no_args_is_help=True,
)


@app.command()
def build(
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write the site into (default: site/ in the workspace)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Where the site will be published (default: base_url + /archive)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write every sent issue's web page, an index and feed.xml as a static site.

    Example: newsletter archive build --out site/
    """
    from newsletter.web.site import build as build_site

    cfg = load(config)
    folder = out if out is not None else cfg.root / "site"
    found = build_site(cfg, folder, site_url=url)
    typer.echo(f"Archive: {plural(len(found), 'issue')}, index.html and feed.xml in {folder}")
