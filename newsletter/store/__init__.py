"""Where a workspace keeps its state: the files store (the embedded default) or PostgreSQL.

`[store] url` absent: lists are CSV files in subscribers/ and the rest is SQLite in
.newsletter/. `postgresql://…`: everything lives in one PostgreSQL database that several
machines share. `uses_postgres(config)` is the one question the rest of the code asks;
`newsletter.store.pg` opens connections and `newsletter.store.migrations` owns the schema.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from newsletter.config import Config


def uses_postgres(config: Config) -> bool:
    return config.store.url is not None


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for messages; query options are dropped."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}:***@{host}" if ":" in user else f"{name}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
