"""Shared fixtures: a real workspace on disk, copied fresh for each test."""

from __future__ import annotations

import shutil
import signal
import socket
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent
# Secrets a developer may have exported: a test workspace never sees them.
PROVIDER_SECRETS = {
    "SENDGRID_API_KEY",
    "POSTMARK_SERVER_TOKEN",
    "RESEND_API_KEY",
    "RESEND_WEBHOOK_SECRET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "MAILGUN_API_KEY",
    "MAILGUN_WEBHOOK_SIGNING_KEY",
}


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_reaches_subprocesses():
    """Tests send SIGINT to the commands they start, as Ctrl-C would. A pytest started in the
    background by a script (`pytest &`) inherits SIGINT ignored, and an ignored signal stays
    ignored across exec: the command would never see the Ctrl-C. Python's own handler in this
    process makes children start with the default, which Python turns into KeyboardInterrupt.
    """
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def _no_spamassassin(monkeypatch: pytest.MonkeyPatch) -> None:
    """SpamAssassin takes seconds per preview; the spam tests turn it back on for themselves."""
    monkeypatch.setenv("NEWSLETTER_SPAMASSASSIN", "off")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of tests/fixtures/workspace as the current directory, with no NEWSLETTER_* env."""
    import os

    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") or name in PROVIDER_SECRETS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSLETTER_SPAMASSASSIN", "off")  # as _no_spamassassin: kept off here too
    root = tmp_path / "ws"
    shutil.copytree(FIXTURES / "workspace", root)
    monkeypatch.chdir(root)
    return root


def free_port() -> int:
    """A port that is free now (aiosmtpd's Controller cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL server for the whole session (tests/pg_server.py)."""
    from pg_server import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A throwaway, empty database on the session's PostgreSQL server; its URL."""
    return pg_server.fresh_database()


@pytest.fixture
def pg_workspace(workspace: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test workspace pointed at a fresh, migrated PostgreSQL database."""
    import psycopg

    from newsletter.store import migrations

    monkeypatch.setenv("NEWSLETTER_STORE_URL", pg_url)
    with psycopg.connect(pg_url) as conn:
        migrations.migrate(conn)
    return workspace


@pytest.fixture
def lists_pushed_when_on_postgres(request):
    """For a test on `pg_workspace`: its lists in the store, as `newsletter store push` puts
    them (a test on the files store is left as it is)."""
    if "pg_workspace" in request.fixturenames:
        from pg_server import push_files

        push_files(request.getfixturevalue("pg_workspace"))
