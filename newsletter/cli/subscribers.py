"""`newsletter subscribers …`: list, count, add, remove, forget, import, export, validate, sync."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli import show, subscribers_import
from newsletter.cli.common import ConfigOption, load, plural
from newsletter.cli.subscriber_options import (
    DeliverabilityOption,
    ListArgument,
    ListOption,
    SegmentOption,
    Status,
    folding,
    lists,
    pairs,
    subs,
)
from newsletter.errors import ExitCode

app = typer.Typer(
    help="Manage subscriber lists (CSV files in subscribers/, or the PostgreSQL store).",
    no_args_is_help=True,
    rich_markup_mode=None,  # as the main app: help shows what it says
)


@app.command("list")
def list_(
    name: ListArgument = None,
    status: Annotated[Status | None, typer.Option(help="Only rows with this status.")] = None,
    page: Annotated[int, typer.Option(min=1, help="Page to show.")] = 1,
    per_page: Annotated[int, typer.Option(min=1, help="Rows per page.")] = 50,
    segment: SegmentOption = None,
    config: ConfigOption = None,
) -> None:
    """Show the lists and their counts by status, or the rows of one list.

    Example: newsletter subscribers list main --status unsubscribed --page 2
    """
    cfg = load(config)
    if name is None:
        _show_lists(cfg)
        return
    wanted = status.value if status else None
    chosen = lists.segment_for(cfg, name, segment)
    found = lists.page(cfg, name, status=wanted, number=page, per_page=per_page, segment=chosen)
    suffix = f" with status {wanted}" if wanted else ""
    suffix += f" in segment {segment}" if segment else ""
    if not found.subscribers:
        typer.echo(f"No rows in {name}{suffix} on page {page} ({found.total} in all).")
        return
    rows = [["LINE", "EMAIL", "NAME", "STATUS", "SUBSCRIBED_AT"]]
    rows += [
        [
            str(s.line),
            show.cell(s.email),
            show.cell(s.name),
            show.cell(s.status, 14),
            show.cell(s.subscribed_at),
        ]
        for s in found.subscribers
    ]
    show.table(rows)
    first = (found.page - 1) * found.per_page + 1
    last = first + len(found.subscribers) - 1
    more = f"; next: --page {found.page + 1}" if last < found.total else ""
    typer.echo(f"Rows {first}-{last} of {found.total} in {name}{suffix}{more}.")


def _show_lists(cfg) -> None:
    names = lists.list_names(cfg)
    if not names:
        typer.echo(
            f"No lists in {_where(cfg)} yet: add one with `newsletter subscribers add EMAIL`."
        )
        return
    counts = {name: lists.count(cfg, name) for name in names}
    columns = ["total", *subs.STATUSES]
    if any("invalid" in c for c in counts.values()):
        columns.append("invalid")
    rows = [["LIST", *(c.upper() for c in columns)]]
    for name, by_status in counts.items():
        by_status["total"] = sum(by_status.values())
        rows.append([name, *(str(by_status.get(c, 0)) for c in columns)])
    show.table(rows)
    suppressed = lists.suppression_reasons(cfg)
    if suppressed:
        where = lists.suppressions_where(cfg)
        addresses = plural(len(suppressed), "suppressed address", "suppressed addresses")
        typer.echo(f"{addresses} in {where} (never mailed).")


@app.command()
def count(
    name: ListArgument = None, segment: SegmentOption = None, config: ConfigOption = None
) -> None:
    """Count a list's rows by status (fast: rows are not checked).

    Example: newsletter subscribers count main --segment 'tag:python and not tag:paused'
    """
    cfg = load(config)
    target = name or cfg.list
    chosen = lists.segment_for(cfg, target, segment)
    by_status = lists.count(cfg, target, segment=chosen)
    by_status["total"] = sum(by_status.values())
    width = max(map(len, by_status))
    for status, number in by_status.items():
        typer.echo(f"{status.ljust(width)}  {number}")


@app.command()
def add(
    email: Annotated[str, typer.Argument(help="Address to add.")],
    name: Annotated[str, typer.Option(help="Display name (no line breaks).")] = "",
    field: Annotated[
        list[str] | None, typer.Option("--field", help="Custom field KEY=VALUE (repeatable).")
    ] = None,
    list_name: ListOption = None,
    resubscribe: Annotated[
        bool,
        typer.Option(
            help="Subscribe an address that unsubscribed, bounced or never confirmed (pending)."
        ),
    ] = False,
    check_deliverability: DeliverabilityOption = False,
    config: ConfigOption = None,
) -> None:
    """Add an address to a list, or update the name and fields of one already there.

    Example: newsletter subscribers add ada@example.org --name "Ada Lovelace" --field company=ACME
    """
    fields = pairs(field or [], "--field")
    cfg = load(config)
    target = list_name or cfg.list
    with folding(cfg):
        result = lists.add_subscriber(
            cfg,
            target,
            email,
            name=name,
            fields=fields,
            source="cli",
            resubscribe=resubscribe,
            check_deliverability=check_deliverability,
        )
    if resubscribe:
        from newsletter import optouts

        # They asked to be mailed again: an unsubscribe kept from a link no longer holds.
        optouts.clear(cfg.state_dir, subs.email_key(email), target)
    email = email.strip()
    if result == "added":
        typer.echo(f"Added {email} to {target}.")
    elif result == "updated":
        typer.echo(f"Updated {email} in {target}.")
    else:
        typer.echo(f"{email} is already in {target}; nothing changed.")


@app.command()
def remove(
    email: Annotated[str, typer.Argument(help="Address to unsubscribe.")],
    list_name: ListOption = None,
    config: ConfigOption = None,
) -> None:
    """Mark an address unsubscribed (the row is kept, so it is never re-imported as subscribed).

    Example: newsletter subscribers remove ada@example.org --list main
    """
    cfg = load(config)
    target = list_name or cfg.list
    with folding(cfg):
        changed, previous = lists.remove_subscriber(cfg, target, email, source="cli")
    if changed:
        typer.echo(f"Unsubscribed {email.strip()} from {target} (the row is kept).")
    else:
        typer.echo(f"{email.strip()} is already {previous} in {target}; nothing changed.")


@app.command()
def forget(
    email: Annotated[str, typer.Argument(help="Address to erase.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
) -> None:
    """Erase an address from every list (GDPR), keeping only a hash so it is never re-imported.

    Example: newsletter subscribers forget ada@example.org --yes
    """
    cfg = load(config)
    if not yes:
        typer.confirm(f"Erase {email.strip()} from every list? This cannot be undone.", abort=True)
    from newsletter.privacy import forget_everywhere

    with folding(cfg):
        erasure = forget_everywhere(cfg, email)
    removed = erasure.rows_by_list
    if removed:
        parts = ", ".join(f"{plural(n, 'row')} from {name}" for name, n in removed.items())
        typer.echo(f"Erased {email.strip()}: {parts}.")
    else:
        typer.echo(f"{email.strip()} was in no list.")
    where = lists.suppressions_where(cfg)
    typer.echo(f"Only its hash is kept, in {where}, so it is never imported or added again.")
    if erasure.ledger_rows or erasure.events:
        typer.echo(
            f"Also erased from the send ledger ({plural(erasure.ledger_rows, 'record')}, kept as "
            f"the hash) and the event store ({plural(erasure.events, 'event')})."
        )


# Addresses from elsewhere (subscribers_import.py), listed here in the help's order.
app.command("import")(subscribers_import.import_)

TagsArgument = Annotated[list[str], typer.Argument(help="One or more tags.")]


@app.command()
def tag(
    email: Annotated[str, typer.Argument(help="Address to tag.")],
    tags: TagsArgument,
    list_name: ListOption = None,
    config: ConfigOption = None,
) -> None:
    """Add tags to an address (the list's `tags` column).

    Example: newsletter subscribers tag ada@example.org python early-reader --list main
    """
    _tag(email, tags, list_name, config, remove=False)


@app.command()
def untag(
    email: Annotated[str, typer.Argument(help="Address to untag.")],
    tags: TagsArgument,
    list_name: ListOption = None,
    config: ConfigOption = None,
) -> None:
    """Take tags away from an address.

    Example: newsletter subscribers untag ada@example.org early-reader --list main
    """
    _tag(email, tags, list_name, config, remove=True)


def _tag(email: str, tags: list[str], list_name: str | None, config, *, remove: bool) -> None:
    cfg = load(config)
    target = list_name or cfg.list
    with folding(cfg):
        after = lists.tag_subscriber(cfg, target, email, tags, remove=remove)
    if after is None:
        typer.echo(f"{email.strip()} in {target}: nothing changed.")
    else:
        typer.echo(f"{email.strip()} in {target}: tags {', '.join(after) or '(none)'}.")


@app.command()
def export(
    name: ListArgument = None,
    status: Annotated[
        list[Status] | None, typer.Option(help="Only rows with this status (repeatable).")
    ] = None,
    to: Annotated[
        Path | None, typer.Option(help="File to write (default: standard output).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write a list, or its rows with some statuses, as CSV.

    Example: newsletter subscribers export main --status subscribed --to subscribed.csv
    """
    cfg = load(config)
    target = name or cfg.list
    statuses = [s.value for s in status or []]
    written = lists.export(cfg, target, statuses=statuses, to=to)
    if to is not None:
        typer.echo(f"Exported {written} rows of {target} to {subs.display(to)}.")


@app.command()
def validate(
    name: Annotated[
        str | None, typer.Argument(help="List name; default: every list and the suppressions.")
    ] = None,
    check_deliverability: DeliverabilityOption = False,
    config: ConfigOption = None,
) -> None:
    """Check lists (addresses, statuses, dates, duplicates) and print every problem with its line.

    Example: newsletter subscribers validate main
    """
    cfg = load(config)
    found = lists.validate(cfg, name, check_deliverability=check_deliverability)
    for problem in found:
        typer.echo(str(problem))
    problems = [p for p in found if not p.warning]
    if problems:
        typer.echo(f"{plural(len(problems), 'problem')} found.", err=True)
        raise typer.Exit(int(ExitCode.CHECKS_FAILED))
    warned = len(found)
    also = f" ({plural(warned, 'warning')})" if warned else ""
    if name is not None:
        typer.echo(f"No problems in {name}{also}.")
    else:
        checked = len(lists.list_names(cfg))
        if not checked:
            typer.echo(f"No lists in {_where(cfg)} to check.")
        else:
            typer.echo(f"No problems in {plural(checked, 'list')}{also}.")


def _where(cfg) -> str:
    """Where the lists live, for messages: the folder, or the PostgreSQL store."""
    from newsletter.store import uses_postgres

    return "the PostgreSQL store" if uses_postgres(cfg) else f"{subs.display(cfg.subscribers_dir)}/"


app.command()(subscribers_import.sync)
