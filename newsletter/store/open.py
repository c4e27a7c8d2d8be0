"""Opening the PostgreSQL store for a command: connect, check the schema, say which store."""

from __future__ import annotations

import psycopg

from newsletter.config import Config
from newsletter.store import migrations, pg


def open_checked(config: Config, *, autocommit: bool = False) -> psycopg.Connection:
    """A connection to the configured store, refused (StoreError) unless its schema is current."""
    url = pg.url_of(config)
    conn = pg.connect(url)
    try:
        with pg.errors(url, "cannot read the store's schema version"):
            migrations.check(conn)
            conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn
