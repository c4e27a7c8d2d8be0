"""`newsletter report`: what happened to an issue after it was handed over.

read.py reads the rows from the files store and pgread.py the same rows from PostgreSQL,
classify.py puts the providers' events in one vocabulary and tells machines from readers,
figures.py computes the report as a pure function of the rows, and terminal.py, page.py
(HTML) and charts.py (SVG) show it.
"""

from __future__ import annotations

from newsletter.config import Config
from newsletter.report.figures import Report, compute
from newsletter.report.pgread import PgReader
from newsletter.report.read import FilesReader, Send
from newsletter.store import uses_postgres


def reader(config: Config) -> FilesReader | PgReader:
    """The store's reader: the files store's SQLite files, or the PostgreSQL store's tables."""
    if uses_postgres(config):
        return PgReader(config)
    return FilesReader(config)


def report(config: Config, issue: str, list_name: str | None = None) -> Report:
    return compute(reader(config).rows(issue, list_name))


def recent(config: Config, limit: int = 10) -> list[tuple[Send, Report]]:
    source = reader(config)
    return [(send, compute(source.rows(send.issue))) for send in source.sends(limit)]
