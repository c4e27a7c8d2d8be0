"""Bad input through the CLI: one line naming the file, line or key, the right exit code, no
traceback (impossible dates, NUL bytes, a file where build/ should be, unknown templates,
an invalid from_email)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from typer.testing import CliRunner

from newsletter.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def bad(name: str) -> str:
    return str(Path("issues") / "bad" / name)


DATE_AND_NUL = [
    ("impossible-date.md", "4: date: '2024-02-30' is not a date (day is out of range for month); use YYYY-MM-DD"),
    ("month-13.md", "3: date: '2024-13-45' is not a date (month must be in 1..12); use YYYY-MM-DD"),
    ("quoted-impossible-date.md", "3: date: '2024-02-30' is not a date (day is out of range for month); use YYYY-MM-DD"),
    ("nul-byte.md", "7: contains a NUL byte; remove it"),
    ("nul-subject.md", "3: contains a NUL byte; remove it"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "message"), DATE_AND_NUL, ids=[c[0] for c in DATE_AND_NUL])
def test_preview_of_an_impossible_date_or_a_nul_byte_is_one_line_with_file_and_line(
    workspace, name, message
):
    result = run("preview", f"issues/bad/{name}")
    assert result.exit_code == 4, result.output
    assert result.output == f"Error: {bad(name)}:{message}\n"
    assert "Traceback" not in result.output
    assert not (workspace / "build").exists()


@pytest.mark.parametrize(("name", "message"), DATE_AND_NUL, ids=[c[0] for c in DATE_AND_NUL])
def test_send_of_an_impossible_date_or_a_nul_byte_mails_nobody(workspace, name, message):
    result = run("send", f"issues/bad/{name}", "--yes")
    assert result.exit_code == 4, result.output
    assert result.output == f"Error: {bad(name)}:{message}\n"
    assert not (workspace / "outbox").exists()


def test_the_web_archive_answers_404_for_an_issue_with_an_impossible_date(workspace):
    from test_serve import LiveServer, configure

    (workspace / "issues" / "leap.md").write_bytes(
        (workspace / "issues" / "bad" / "impossible-date.md").read_bytes()
    )
    with LiveServer(configure(workspace, 'archive = "all"')) as live, live.client() as client:
        page = client.get("/issues/leap.html")
        fine = client.get("/issues/sample.html")
    assert page.status_code == 404
    assert fine.status_code == 200


def test_preview_when_build_is_a_file_names_it_and_exits_4(workspace):
    (workspace / "build").write_text("not a folder\n")
    result = run("preview", "issues/sample.md")
    assert result.exit_code == 4, result.output
    assert result.output == (
        f"Error: build: is a file, not a folder; cannot create {Path('build/sample')}/ "
        "(move or remove the file)\n"
    )
    assert "Traceback" not in result.output


def test_preview_when_build_is_a_file_in_a_subprocess_has_no_traceback(workspace):
    (workspace / "build").write_text("not a folder\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SPAMASSASSIN"] = "off"
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/sample.md"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4
    assert done.stderr == (
        f"Error: build: is a file, not a folder; cannot create {Path('build/sample')}/ "
        "(move or remove the file)\n"
    )


def test_an_unknown_template_named_by_an_issue_names_the_issue_file_and_line(workspace):
    result = run("preview", "issues/bad/unknown-template.md")
    assert result.exit_code == 4
    assert result.output == (
        f"Error: {bad('unknown-template.md')}:3: template 'nonexistent' not found: "
        "no nonexistent.mjml.j2 in templates/ or the built-in templates\n"
    )


def test_an_unknown_template_named_by_the_config_names_newsletter_toml(workspace):
    path = workspace / "newsletter.toml"
    path.write_text(path.read_text().replace("base_url", 'template = "gone"\nbase_url'))
    result = run("preview", "issues/sample.md")
    assert result.exit_code == 4
    assert result.output == (
        "Error: newsletter.toml: template 'gone' not found: "
        "no gone.mjml.j2 in templates/ or the built-in templates\n"
    )


def test_an_invalid_from_email_names_newsletter_toml(workspace):
    path = workspace / "newsletter.toml"
    path.write_text(path.read_text().replace("news@example.org", "news.example.org"))
    result = run("preview", "issues/sample.md")
    assert result.exit_code == 3, result.output
    assert result.output == (
        f"Error: {path}: from_email 'news.example.org' is not an email address "
        "(An email address must have an @-sign.)\n"
    )


def serve_in_subprocess(workspace: Path, **env_vars: str) -> subprocess.CompletedProcess:
    """`newsletter serve` as a user starts it; a timeout means it started serving."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(PYTHONPATH=str(REPO), **env_vars)
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(free_port())],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_with_an_invalid_from_email_refuses_to_start(workspace):
    path = workspace / "newsletter.toml"
    path.write_text(path.read_text().replace("news@example.org", "news"))
    done = serve_in_subprocess(workspace)
    assert done.returncode == 3
    assert done.stderr == (
        f"Error: {path}: from_email 'news' is not an email address "
        "(An email address must have an @-sign.)\n"
    )


def test_an_invalid_from_email_from_the_environment_names_the_variable(workspace):
    done = serve_in_subprocess(workspace, NEWSLETTER_FROM_EMAIL="news@")
    assert done.returncode == 3
    assert done.stderr == (
        "Error: NEWSLETTER_FROM_EMAIL: from_email 'news@' is not an email address "
        "(There must be something after the @-sign.)\n"
    )


def test_an_import_whose_every_row_is_rejected_exits_4_after_the_summary(workspace, tmp_path):
    export = tmp_path / "all_rejected.csv"
    export.write_bytes((REPO / "tests/fixtures/subscribers/exports/all_rejected.csv").read_bytes())
    before = (workspace / "subscribers" / "main.csv").read_bytes()
    result = run("subscribers", "import", str(export))
    assert result.exit_code == 4, result.output
    assert result.stdout == (
        f"Imported {export} into main (csv format): 0 added, 0 updated, 0 unchanged, 2 rejected.\n"
    )
    assert result.stderr == (
        f"{export}:2: invalid email address 'not-a-mail': An email address must have an @-sign.\n"
        f"{export}:3: invalid email address '@example.org': "
        "There must be something before the @-sign.\n"
        f"Rejected rows written to {tmp_path / 'all_rejected.rejects.csv'}: "
        "fix them and import that file.\n"
        f"Error: {export}: every row was rejected; nothing was imported\n"
    )
    assert "Traceback" not in result.output
    assert (workspace / "subscribers" / "main.csv").read_bytes() == before
