"""The welcome email on the PostgreSQL store: recorded in the shared send ledger, so each
address gets it once across repeated confirmations, restarts and every `serve` instance, and
`status` shows it. Against the real PostgreSQL server of the session (conftest.pg_workspace).
"""

from __future__ import annotations

import time

import psycopg
from test_serve import LiveServer, subscribe, wait_for
from test_serve_optin import confirm_links, press_confirm
from test_serve_pg import pg_config, seed
from test_serve_welcome import welcomes, with_welcome
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.tokens import load_secret
from newsletter.web.pglists import PgDirectory
from newsletter.web.pgstore import Pg
from newsletter.web.welcome import Welcome


def test_confirming_on_postgresql_sends_the_welcome_once_and_records_it_in_the_store(
    pg_workspace, pg_url
):
    seed(pg_url)
    with_welcome(pg_workspace)
    with LiveServer(pg_config(pg_workspace, pg_url)) as live, live.client() as client:
        subscribe(client, email="lin@example.com", name="Lin Yu")
        [link] = confirm_links(pg_workspace, 1)
        done = press_confirm(client, link)
        assert done.status_code == 200 and "You are subscribed" in done.text
        [message] = wait_for(lambda: welcomes(pg_workspace))
        assert message["To"].addresses[0].addr_spec == "lin@example.com"
        assert message["Subject"] == "Welcome, Lin"
        assert press_confirm(client, link).status_code == 200  # the same link pressed again
    with LiveServer(pg_config(pg_workspace, pg_url)) as live, live.client() as client:
        assert press_confirm(client, link).status_code == 200  # a restart (another instance)
        time.sleep(0.5)  # a background welcome would have been written by now
    # A fresh Welcome on a pool of its own, as another instance: the store says it was sent.
    config = pg_config(pg_workspace, pg_url)
    db = Pg(pg_url, 2)
    try:
        row = PgDirectory(db, b"").row("main", "lin@example.com")
        fresh = Welcome(config, load_secret(pg_workspace / ".newsletter", env={}), pg=db)
        assert fresh.send("main", row) == "already sent"
    finally:
        db.close()
    assert len(welcomes(pg_workspace)) == 1
    assert not (pg_workspace / ".newsletter" / "ledger.sqlite3").exists()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT list, key, state, attempts, sent_at IS NOT NULL FROM send_recipients "
            "WHERE issue = 'welcome'"
        ).fetchall()
        runs = conn.execute("SELECT list, outcome FROM send_runs WHERE issue = 'welcome'")
        assert runs.fetchall() == [("main", "ok")]
    assert rows == [("main", "lin@example.com", "sent", 1, True)]
    status = CliRunner().invoke(app, ["status", "issues/welcome.md"])
    assert status.exit_code == 0, status.output
    assert "  list main: 1 sent" in status.output
