"""PostgreSQL connections through psycopg 3: one place that opens them and maps their errors.

The URL comes from `[store] url` / NEWSLETTER_STORE_URL; libpq reads the standard PG*
variables (PGPASSWORD, PGSSLMODE, ...) and ~/.pgpass for whatever the URL leaves out, and
honours `sslmode`. No message from here ever holds the URL's password: errors name the
store by its redacted URL, and psycopg's own text is scrubbed of the password too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from newsletter.config import Config
from newsletter.errors import StoreError
from newsletter.store import redact

APPLICATION = "newsletter"


def url_of(config: Config) -> str:
    if config.store.url is None:
        raise StoreError("no [store] url: this workspace uses the files store")
    return config.store.url


def scrub(message: str, url: str) -> str:
    """psycopg's message without the URL's password (libpq never prints it, but be sure)."""
    password = urlsplit(url).password
    text = " ".join(str(message).split())
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(secret, "***")
    return text


@contextmanager
def errors(url: str, doing: str) -> Iterator[None]:
    """Re-raise any psycopg error as a one-line StoreError naming the store, never its password."""
    try:
        yield
    except psycopg.Error as exc:
        raise StoreError(f"{doing}: {scrub(str(exc), url)}", where=redact(url)) from None


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    with errors(url, "cannot connect to the PostgreSQL store"):
        return psycopg.connect(
            url, autocommit=autocommit, application_name=APPLICATION, connect_timeout=10
        )


def pool(url: str, *, size: int = 10) -> ConnectionPool:
    """A pool for `serve`: opened at once, so a wrong URL fails at start-up, not on a request."""
    p = ConnectionPool(
        url,
        min_size=1,
        max_size=max(1, size),
        kwargs={"application_name": APPLICATION, "connect_timeout": 10},
        open=False,
    )
    with errors(url, "cannot connect to the PostgreSQL store"):
        p.open(wait=True, timeout=15)
    return p
