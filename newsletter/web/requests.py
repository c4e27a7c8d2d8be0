"""Open subscribe requests, one per (list, address): what a confirmation link may confirm.

A request remembers the row as it was when the link was mailed (status and updated_at). The
link confirms only while the newest request is its own and the row is unchanged since, so a
newer request, an unsubscribe or any other change in between makes an older link void.
Rows are named by the keyed address id that tokens carry, never by the address.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from newsletter.db import Database
from newsletter.errors import NewsletterError

REQUESTS_NAME = "optin.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    list TEXT NOT NULL,
    address_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    row_status TEXT NOT NULL,
    row_updated TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    confirmed_at TEXT,
    PRIMARY KEY (list, address_id)
)
"""


class RequestStoreError(NewsletterError):
    """The opt-in request database cannot be opened or written."""


@dataclass(frozen=True)
class Request:
    request_id: str
    row_status: str
    row_updated: str
    confirmed: bool


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class RequestStore(Database):
    """`.newsletter/optin.sqlite3`; one connection shared by the service's threads."""

    def __init__(self, path: Path) -> None:
        # IF NOT EXISTS: files from before the schema version was kept have the table already.
        super().__init__(
            path, _SCHEMA, SCHEMA_VERSION, RequestStoreError, name="the opt-in requests"
        )

    @classmethod
    def for_workspace(cls, state_dir: Path) -> RequestStore:
        return cls(state_dir / REQUESTS_NAME)

    def _run(self, sql: str, params: tuple) -> list[tuple]:
        with self.connect() as db:
            return db.execute(sql, params).fetchall()

    def open(
        self, list_name: str, address_id: str, request_id: str, row_status: str, row_updated: str
    ) -> None:
        """Record a new request; it replaces any older one for the address, voiding its link."""
        self._run(
            "INSERT OR REPLACE INTO requests (list, address_id, request_id, row_status, "
            "row_updated, requested_at, confirmed_at) VALUES (?,?,?,?,?,?,NULL)",
            (list_name, address_id, request_id, row_status, row_updated, _now()),
        )

    def get(self, list_name: str, address_id: str, request_id: str) -> Request | None:
        """The request, when it is still the newest one for the address."""
        rows = self._run(
            "SELECT request_id, row_status, row_updated, confirmed_at FROM requests "
            "WHERE list = ? AND address_id = ? AND request_id = ?",
            (list_name, address_id, request_id),
        )
        if not rows:
            return None
        found, status, updated, confirmed_at = rows[0]
        return Request(found, status, updated, confirmed_at is not None)

    def confirmed(self, list_name: str, address_id: str, request_id: str) -> None:
        self._run(
            "UPDATE requests SET confirmed_at = ? "
            "WHERE list = ? AND address_id = ? AND request_id = ?",
            (_now(), list_name, address_id, request_id),
        )
