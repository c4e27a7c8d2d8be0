"""An issue's links on the PostgreSQL store (the `report` schema component's `issue_links`).

The files store keeps them in `.newsletter/links/<issue>.json` on the machine that sent; on
PostgreSQL every `serve` instance (click redirects) and `report` may run elsewhere, so a send
writes them into the store, replacing what an earlier send of the issue wrote, and `store
push` copies the files store's (push_links), so the links of issues sent before the move
still redirect.
"""

from __future__ import annotations

import psycopg

from newsletter.config import Config
from newsletter.tracking.links import LINKS_DIR, Link, read_links


def write(conn: psycopg.Connection, issue: str, links: list[Link]) -> None:
    """The issue's links as sent now, in one transaction (the caller's connection).

    Senders of one shared send start together and each keeps the links: one at a time (a
    lock on the issue until the transaction ends), or the second would meet the rows the
    first has not committed yet and fail on their keys.
    """
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('issue_links'), hashtext(%s))", (issue,)
        )
        conn.execute("DELETE FROM issue_links WHERE issue = %s", (issue,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO issue_links (issue, position, url, text) VALUES (%s, %s, %s, %s)",
                [(issue, n, link.url, link.text) for n, link in enumerate(links)],
            )


def read(conn: psycopg.Connection, issue: str) -> list[Link]:
    """The issue's links as last sent, in message order; [] when none were kept."""
    rows = conn.execute(
        "SELECT url, text FROM issue_links WHERE issue = %s ORDER BY position", (issue,)
    ).fetchall()
    return [Link(url, text) for url, text in rows]


def has(conn: psycopg.Connection, issue: str, url: str) -> bool:
    """Whether `url` is a link of the issue as sent (serve's click redirect asks)."""
    row = conn.execute(
        "SELECT 1 FROM issue_links WHERE issue = %s AND url = %s LIMIT 1", (issue, url)
    ).fetchone()
    return row is not None


def keep(config: Config, issue: str, links: list[Link]) -> None:
    """A send's links into the store (StoreError when it cannot be reached or is not current)."""
    from newsletter.store import pg
    from newsletter.store.open import open_checked

    with open_checked(config) as conn, pg.errors(pg.url_of(config), "keeping the issue's links"):
        write(conn, issue, links)


def push_links(conn: psycopg.Connection, config: Config) -> str:
    """`store push`: each issue's links file into the store, unless the store has that
    issue's links already (a send on PostgreSQL wrote them: they are newer). What it did."""
    folder = config.state_dir / LINKS_DIR
    issues = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    if not issues:
        return "links: none kept"
    have = {issue for (issue,) in conn.execute("SELECT DISTINCT issue FROM issue_links")}
    copied = 0
    for issue in issues:
        links = read_links(config.state_dir, issue)
        if issue not in have and links:
            write(conn, issue, links)
            copied += 1
    return f"links: {len(issues)} issues ({copied} copied)" + (
        "" if copied else ": nothing changed"
    )
