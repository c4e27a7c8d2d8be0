"""`newsletter subscribers …`: list, count, add, remove, forget, import, export, validate, sync."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli import show
from newsletter.cli.common import ConfigOption, load, plural
from newsletter.errors import ExitCode, SubscriberError


class _Lazy:
    """A module imported on first use, so other commands start without it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str):
        import importlib

        return getattr(importlib.import_module(self.name), attr)


subs = _Lazy("newsletter.subscribers")
lists = _Lazy("newsletter.store.lists")  # picks the files or the PostgreSQL store

app = typer.Typer(
    help="Manage subscriber lists (CSV files in subscribers/, or the PostgreSQL store).",
    no_args_is_help=True,
    rich_markup_mode=None,  # as the main app: help shows what it says
)

MAX_SHOWN = 10  # rejected rows printed by `import`; the rejects file has them all


class Status(StrEnum):
    subscribed = "subscribed"
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"
    pending = "pending"


class Format(StrEnum):
    auto = "auto"
    mailchimp = "mailchimp"
    substack = "substack"
    buttondown = "buttondown"
    listmonk = "listmonk"
    csv = "csv"


ListArgument = Annotated[
    str | None, typer.Argument(help="List name (subscribers/NAME.csv); default: `list` in config.")
]
ListOption = Annotated[
    str | None,
    typer.Option(
        "--list", "-l", help="List name (subscribers/NAME.csv); default: `list` in config."
    ),
]
SegmentOption = Annotated[
    str | None,
    typer.Option(help="Only rows in this segment, e.g. 'tag:python and country = \"UA\"'."),
]
DeliverabilityOption = Annotated[
    bool,
    typer.Option("--check-deliverability", help="Also look up each domain's MX records in DNS."),
]


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        pairs[key.strip()] = rest
    return pairs


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


def _folding(cfg):
    """Writes of a list in this block fold in the opt-outs kept for it (optouts.fold); on
    PostgreSQL serve changes the rows themselves, so there is nothing to fold."""
    from contextlib import nullcontext

    from newsletter import optouts
    from newsletter.store import uses_postgres

    return nullcontext() if uses_postgres(cfg) else optouts.folding(cfg)


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
    fields = _pairs(field or [], "--field")
    cfg = load(config)
    target = list_name or cfg.list
    with _folding(cfg):
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
    with _folding(cfg):
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

    with _folding(cfg):
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


@app.command("import")
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
    mapping = _pairs(map_ or [], "--map")
    cfg = load(config)
    with _folding(cfg):
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
    with _folding(cfg):
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


@app.command()
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


def _where(cfg) -> str:
    """Where the lists live, for messages: the folder, or the PostgreSQL store."""
    from newsletter.store import uses_postgres

    return "the PostgreSQL store" if uses_postgres(cfg) else f"{subs.display(cfg.subscribers_dir)}/"
