"""`newsletter subscribers import` and `sync`: addresses from another service's export, and
SendGrid's suppressions. cli/subscribers.py registers them on the `subscribers` app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.common import ConfigOption, load, plural
from newsletter.cli.subscriber_options import (
    MAX_SHOWN,
    DeliverabilityOption,
    Format,
    ListOption,
    folding,
    lists,
    pairs,
    subs,
)
from newsletter.errors import SubscriberError


def import_(
    file: Annotated[Path, typer.Argument(help="CSV export to import.")],
    list_name: ListOption = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="COLUMN=FIELD (FIELD empty to skip the column; repeatable)."),
    ] = None,
    format: Annotated[Format, typer.Option(help="Whose export this is.")] = Format.auto,
    update: Annotated[
        bool, typer.Option(help="Also update names and fields of addresses already in the list.")
    ] = False,
    check_deliverability: DeliverabilityOption = False,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Tag every imported address with TAG (repeatable)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Import a CSV export (Mailchimp, Substack, Buttondown, listmonk or plain CSV) into a list.

    Example: newsletter subscribers import members_export.csv --list main --map Company=company
    """
    mapping = pairs(map_ or [], "--map")
    cfg = load(config)
    with folding(cfg):
        report = lists.import_file(
            cfg,
            list_name or cfg.list,
            file,
            format=format.value,
            mapping=mapping,
            update=update,
            check_deliverability=check_deliverability,
            tags=tag or (),
        )
    typer.echo(
        f"Imported {subs.display(file)} into {report.list_name} ({report.format} format): "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.rejected} rejected."
    )
    if report.suppressed:
        where = lists.suppressions_where(cfg)
        addresses = plural(
            report.suppressed, "bounced or blocked address", "bounced or blocked addresses"
        )
        typer.echo(f"{addresses} added to {where}.")
    if report.ignored_columns:
        typer.echo(f"Ignored columns: {', '.join(report.ignored_columns)}.")
    for problem in report.problems[:MAX_SHOWN]:
        typer.echo(str(problem), err=True)
    if len(report.problems) > MAX_SHOWN:
        typer.echo(f"... and {len(report.problems) - MAX_SHOWN} more.", err=True)
    if report.rejects_path:
        typer.echo(
            f"Rejected rows written to {subs.display(report.rejects_path)}: "
            "fix them and import that file.",
            err=True,
        )
    taken = report.added + report.updated + report.unchanged + report.suppressed
    if report.rejected and not taken:  # an all-bad file is an input error: say so in the code
        raise SubscriberError(
            "every row was rejected; nothing was imported", where=subs.display(file)
        )


def sync(
    since: Annotated[
        str | None,
        typer.Option(help="Only entries since this date or time, e.g. 2024-05-01 (default: all)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Pull SendGrid's bounces, blocks, spam reports, invalid emails and unsubscribes into
    subscribers/suppressions.csv.

    Example: newsletter subscribers sync --since 2024-05-01
    """
    from newsletter.providers.sendgrid.suppressions import parse_since, sync_suppressions

    cfg = load(config)
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    report = sync_suppressions(cfg, since=start)
    width = max(len(kind) for kind in report.found)
    for kind, found in report.found.items():
        typer.echo(f"{kind:<{width}}  {found:>6} found, {report.added[kind]:>6} new")
    if report.skipped:
        which = "is not an email address" if report.skipped == 1 else "are not email addresses"
        typer.echo(f"Skipped {plural(report.skipped, 'entry', 'entries')} that {which}.")
    total = sum(report.added.values())
    typer.echo(f"Added {plural(total, 'suppression')} to {lists.suppressions_where(cfg)}.")
