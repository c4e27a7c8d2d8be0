"""The PostgreSQL store's foundation against a real server: migrate, versions, secrets kept."""

from __future__ import annotations

import psycopg
import pytest
from pg_server import PASSWORD
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.store import migrations, redact

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_migrate_creates_every_component_then_says_it_is_current(workspace, pg_url, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_STORE_URL", pg_url)
    first = _run("store", "migrate")
    assert first.exit_code == 0, first.output
    shipped = migrations.steps()
    for component in shipped:
        assert f"applied {component} 1:" in first.output
    with psycopg.connect(pg_url) as conn:
        assert migrations.versions(conn) == {c: len(s) for c, s in shipped.items()}
        assert conn.execute("SELECT to_regclass('rate_limit_hits')").fetchone()[0]
    again = _run("store", "migrate")
    assert again.exit_code == 0
    assert "already current" in again.output and "applied" not in again.output
    assert PASSWORD not in first.output + again.output


def test_a_database_behind_the_program_asks_for_migrate(workspace, pg_url, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_STORE_URL", pg_url)
    result = _run("store", "status")
    assert result.exit_code == 0, result.output
    assert "run `newsletter store migrate`" in result.output
    from newsletter.config import load_config
    from newsletter.errors import StoreError
    from newsletter.store.open import open_checked

    with pytest.raises(StoreError, match="run `newsletter store migrate`"):
        open_checked(load_config(workspace / "newsletter.toml"))


def test_a_database_ahead_of_the_program_is_refused(pg_workspace, pg_url):
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE newsletter_schema SET version = 99 WHERE component = 'limits'")
    result = _run("store", "migrate")
    assert result.exit_code == 3
    assert "limits schema is at version 99, newer than this program's 1: upgrade newsletter" in (
        result.output
    )
    assert PASSWORD not in result.output


def test_a_wrong_password_is_one_line_that_never_shows_a_password(workspace, pg_url, monkeypatch):
    wrong = pg_url.replace(PASSWORD, "not-the-password-71c2")
    monkeypatch.setenv("NEWSLETTER_STORE_URL", wrong)
    result = _run("store", "migrate")
    assert result.exit_code == 3
    err = result.output.strip()
    assert err.startswith("Error: postgresql://newsletter:***@127.0.0.1:")
    assert "cannot connect to the PostgreSQL store" in err and "password authentication" in err
    assert "not-the-password-71c2" not in err and len(err.splitlines()) == 1


def test_the_password_may_come_from_pgpassword(workspace, pg_url, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_STORE_URL", pg_url.replace(f":{PASSWORD}@", "@"))
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    result = _run("store", "migrate")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output


def test_a_password_in_newsletter_toml_is_refused(workspace, pg_url):
    toml = workspace / "newsletter.toml"
    toml.write_text(toml.read_text() + f'\n[store]\nurl = "{pg_url}"\n')
    result = _run("store", "status")
    assert result.exit_code == 3
    assert "store.url: holds a password; put the URL in NEWSLETTER_STORE_URL" in result.output
    assert PASSWORD not in result.output


def test_redact_hides_the_password_and_keeps_the_rest():
    assert redact("postgresql://u:s3cr%40t@db.example:5433/news?sslmode=require") == (
        "postgresql://u:***@db.example:5433/news"
    )
    assert redact("postgresql://db.example/news") == "postgresql://db.example/news"


def test_status_names_the_files_store_when_no_url_is_set(workspace):
    result = _run("store", "status")
    assert result.exit_code == 0
    assert result.output.startswith("files store: lists in ")
