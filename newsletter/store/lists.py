"""The one place that picks the store for subscriber lists and suppressions.

Commands, sending and `forget` call these with the workspace's Config; each function runs the
files store's code (newsletter.subscribers) or the PostgreSQL one (pg_lists, pg_changes,
pg_import, pg_suppressions) in one short transaction, so every command behaves the same on
both stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from newsletter import subscribers as subs
from newsletter.config import Config
from newsletter.store import uses_postgres

if TYPE_CHECKING:  # psycopg is imported only when the PostgreSQL store is used
    import psycopg


@contextmanager
def transaction(config: Config, doing: str) -> Iterator[psycopg.Connection]:
    """A connection to the checked store; committed when the block ends without an error."""
    from newsletter.store import pg
    from newsletter.store.open import open_checked

    url = pg.url_of(config)
    conn = open_checked(config)
    try:
        with pg.errors(url, doing):
            yield conn
            conn.commit()
    finally:
        conn.close()


def suppressions_where(config: Config) -> str:
    """Where the suppressions live, for messages."""
    if uses_postgres(config):
        return "the PostgreSQL store's suppressions"
    return subs.display(subs.suppressions_path(config.subscribers_dir))


def list_names(config: Config) -> list[str]:
    if not uses_postgres(config):
        return subs.list_names(config.subscribers_dir)
    from newsletter.store import pg_lists

    with transaction(config, "cannot read the lists") as conn:
        return pg_lists.list_names(conn)


def _kept(config: Config, list_name: str) -> subs.Withdrawn | None:
    """Files store: the opt-outs serve kept in the journal that the file does not show yet
    (readers show them at once). PostgreSQL rows change as they arrive: nothing is kept."""
    from newsletter import optouts

    return optouts.view(config, list_name)


def segment_for(config: Config, list_name: str, text: str | None, *, where: str = "--segment"):
    """A segment checked against the list's columns (None without one)."""
    if text is None:
        return None
    from newsletter.segments import compile_segment, for_list

    if not uses_postgres(config):
        return for_list(config.subscribers_dir, list_name, text, where=where)
    from newsletter.segments import pg as segments_pg
    from newsletter.store import pg_lists

    with transaction(config, "cannot read the list") as conn:
        pg_lists.existing(conn, list_name)
        return compile_segment(text, segments_pg.columns(conn, list_name), where=where)


def count(config: Config, list_name: str, *, segment=None) -> dict[str, int]:
    if not uses_postgres(config):
        kept = _kept(config, list_name)
        return subs.count(config.subscribers_dir, list_name, kept, segment=segment)
    from newsletter.segments import pg as segments_pg
    from newsletter.store import pg_lists

    with transaction(config, "cannot count the list") as conn:
        if segment is None:
            return pg_lists.count(conn, list_name)
        pg_lists.existing(conn, list_name)
        return segments_pg.count(conn, list_name, segment)


def page(config: Config, list_name: str, **options) -> subs.Page:
    if not uses_postgres(config):
        kept = _kept(config, list_name)
        return subs.page(config.subscribers_dir, list_name, withdrawn=kept, **options)
    from newsletter.store import pg_lists

    with transaction(config, "cannot read the list") as conn:
        return pg_lists.page(conn, list_name, **options)


def find(config: Config, list_name: str, email: str) -> subs.Subscriber | None:
    """The subscriber with this address (case-insensitive), or None."""
    if uses_postgres(config):
        from newsletter.store import pg_lists

        with transaction(config, "cannot read the list") as conn:
            return pg_lists.find(conn, list_name, email)
    wanted = email.strip().lower()
    path = subs.list_path(config.subscribers_dir, list_name)
    for subscriber in subs.iter_subscribers(path):
        if subscriber.key == wanted or subscriber.email.lower() == wanted:
            return subscriber
    return None


def add_subscriber(config: Config, list_name: str, email: str, **options) -> str:
    if not uses_postgres(config):
        return subs.add_subscriber(config.subscribers_dir, list_name, email, **options)
    from newsletter.store import pg_changes

    with transaction(config, "cannot add to the list") as conn:
        return pg_changes.add_subscriber(conn, list_name, email, **options)


def remove_subscriber(
    config: Config, list_name: str, email: str, *, source: str = ""
) -> tuple[bool, str]:
    if not uses_postgres(config):
        return subs.remove_subscriber(config.subscribers_dir, list_name, email, source=source)
    from newsletter.store import pg_changes

    with transaction(config, "cannot change the list") as conn:
        return pg_changes.remove_subscriber(conn, list_name, email, source=source)


def set_status(config: Config, list_name: str, email: str, status: str, *, source: str = ""):
    if not uses_postgres(config):
        return subs.set_status(config.subscribers_dir, list_name, email, status, source=source)
    from newsletter.store import pg_changes

    with transaction(config, "cannot change the list") as conn:
        return pg_changes.set_status(conn, list_name, email, status, source=source)


def tag_subscriber(
    config: Config, list_name: str, email: str, tags: Sequence[str], *, remove: bool = False
) -> tuple[str, ...] | None:
    if not uses_postgres(config):
        return subs.tag_subscriber(config.subscribers_dir, list_name, email, tags, remove=remove)
    from newsletter.store import pg_changes

    with transaction(config, "cannot change the list") as conn:
        return pg_changes.tag_subscriber(conn, list_name, email, tags, remove=remove)


def downgrade_status(
    config: Config, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    if not uses_postgres(config):
        return subs.downgrade_status(
            config.subscribers_dir, list_name, email, status, source=source
        )
    from newsletter.store import pg_changes

    with transaction(config, "cannot change the list") as conn:
        return pg_changes.downgrade_status(conn, list_name, email, status, source=source)


def downgrade_many(
    config: Config, list_name: str, wanted: Callable[[], Mapping[str, tuple[str, str]]]
) -> int:
    if not uses_postgres(config):
        return subs.downgrade_many(config.subscribers_dir, list_name, wanted)
    from newsletter.store import pg_changes

    with transaction(config, "cannot change the list") as conn:
        return pg_changes.downgrade_many(conn, list_name, wanted)


def forget(config: Config, email: str) -> dict[str, int]:
    """Erase an address from every list, keeping its hash as a suppression; rows per list."""
    if not uses_postgres(config):
        return subs.forget(config.subscribers_dir, email)
    from newsletter.store import pg_changes

    with transaction(config, "cannot erase the address") as conn:
        return pg_changes.forget(conn, email)


def import_file(config: Config, list_name: str, file: Path, **options) -> subs.ImportReport:
    if not uses_postgres(config):
        return subs.import_file(config.subscribers_dir, list_name, file, **options)
    from newsletter.store import pg_import

    with transaction(config, "cannot import into the list") as conn:
        return pg_import.import_file(conn, list_name, file, **options)


def export(
    config: Config,
    list_name: str,
    *,
    statuses: Sequence[str] = (),
    to: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Write a list as CSV (to a file atomically, or a stream); the rows written."""
    if not uses_postgres(config):
        return subs.export(
            config.subscribers_dir,
            list_name,
            statuses=statuses,
            to=to,
            stream=stream,
            withdrawn=_kept(config, list_name),
        )
    import sys

    from newsletter.store import pg_lists
    from newsletter.subscribers.lists import refuse_export_target
    from newsletter.subscribers.model import known_status
    from newsletter.subscribers.store import atomic_write

    for status in statuses:
        known_status(status)
    refuse_export_target(config.subscribers_dir, to)
    with transaction(config, "cannot export the list") as conn:
        shape = pg_lists.existing(conn, list_name)
        if to is None:
            out = stream or sys.stdout
            written = pg_lists.write_csv(conn, shape, out, statuses)
            out.flush()
            return written
        with atomic_write(to, bom=shape.bom) as target:
            return pg_lists.write_csv(conn, shape, target.file, statuses)


def validate(
    config: Config, list_name: str | None = None, *, check_deliverability: bool = False
) -> list[subs.Problem]:
    if not uses_postgres(config):
        return subs.validate(
            config.subscribers_dir, list_name, check_deliverability=check_deliverability
        )
    from newsletter.store import pg_lists

    with transaction(config, "cannot read the lists") as conn:
        return pg_lists.validate(conn, list_name, check_deliverability=check_deliverability)


def sendable(
    config: Config,
    list_name: str,
    stats: subs.SendableStats | None = None,
    withdrawn: subs.Withdrawn | None = None,
    *,
    skip_bad_rows: bool = False,
    segment=None,
) -> Iterator[subs.Subscriber | subs.Skipped]:
    """Who a send goes to, streamed (see subscribers.sendable); the connection lives as long
    as the iteration. With `segment`, only its rows: on PostgreSQL chosen by the query, on
    the files store row by row (a bad row stays in, so the send reports it)."""
    if not uses_postgres(config):
        found = subs.sendable(
            config.subscribers_dir, list_name, stats, withdrawn, skip_bad_rows=skip_bad_rows
        )
        yield from found if segment is None else _in_segment(found, segment, stats)
        return
    from newsletter.store import pg_lists

    with transaction(config, "cannot read the list") as conn:
        yield from pg_lists.sendable(
            conn, list_name, stats, withdrawn, skip_bad_rows=skip_bad_rows, segment=segment
        )


def _in_segment(found: Iterator, segment, stats: subs.SendableStats | None) -> Iterator:
    matches = segment.matches
    for recipient in found:
        # A bad row stays in, so the send still reports it (its fields cannot be trusted).
        if not isinstance(recipient, subs.Subscriber) or matches(recipient):
            yield recipient
        elif stats is not None:
            stats.outside_segment += 1


def suppression_reasons(config: Config) -> dict[str, str]:
    if not uses_postgres(config):
        return subs.suppression_reasons(config.subscribers_dir)
    from newsletter.store import pg_suppressions

    with transaction(config, "cannot read the suppressions") as conn:
        return pg_suppressions.suppression_reasons(conn)


def add_suppressions(config: Config, entries: Iterable[tuple[str, str]]) -> int:
    """Suppress several addresses at once; how many were new."""
    if not uses_postgres(config):
        return subs.add_suppressions(config.subscribers_dir, entries)
    from newsletter.store import pg_suppressions

    with transaction(config, "cannot add suppressions") as conn:
        return pg_suppressions.add_suppressions(conn, entries)
