"""Issue files and workspace templates render in Jinja's sandbox: no code runs from them.

Each fixture under issues/unsafe/ would run `touch pwned` in the workspace if it escaped;
the tests assert the file never appears, and that preview, send and the web archive refuse
the issue in one line that names the file and line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app

runner = CliRunner()
UNSAFE = "access to attribute {!r} of {!r} object is unsafe."

CASES = [
    ("cycler-body.md", 7, UNSAFE.format("__init__", "StrictUndefined")),
    ("mro-body.md", 7, UNSAFE.format("__class__", "str")),
    ("self-body.md", 7, UNSAFE.format("__init__", "TemplateReference")),
    ("self-subject.md", 3, UNSAFE.format("__init__", "TemplateReference")),
    ("cycler-preheader.md", 3, UNSAFE.format("__init__", "StrictUndefined")),
    ("merge-field.md", 5, UNSAFE.format("__globals__", "function")),
]


def expected(name: str, line: int, message: str) -> str:
    where = Path("issues") / "unsafe" / name
    return f"Error: {where}:{line}: not allowed in templates: {message}\n"


@pytest.mark.parametrize(("name", "line", "message"), CASES, ids=[c[0] for c in CASES])
def test_preview_refuses_code_that_escapes_the_sandbox_and_runs_nothing(
    workspace, name, line, message
):
    result = runner.invoke(app, ["preview", f"issues/unsafe/{name}"])
    assert not (workspace / "pwned").exists()
    assert result.exit_code == 4, result.output
    assert result.output == expected(name, line, message)
    assert "Traceback" not in result.output
    assert not (workspace / "build").exists()


def test_a_workspace_template_is_sandboxed_too(workspace):
    result = runner.invoke(app, ["preview", "issues/unsafe/template.md"])
    assert not (workspace / "pwned").exists()
    assert result.exit_code == 4, result.output
    where = Path("templates") / "unsafe.mjml.j2"
    assert result.output == (
        f"Error: {where}:5: not allowed in templates: "
        + UNSAFE.format("__globals__", "function")
        + "\n"
    )


@pytest.mark.parametrize(("name", "line", "message"), CASES, ids=[c[0] for c in CASES])
def test_send_refuses_code_that_escapes_the_sandbox_and_mails_nobody(
    workspace, name, line, message
):
    result = runner.invoke(app, ["send", f"issues/unsafe/{name}", "--yes"])
    assert not (workspace / "pwned").exists()
    assert result.exit_code == 4, result.output
    assert result.output.endswith(expected(name, line, message))
    assert "Traceback" not in result.output
    assert not list((workspace / "outbox").glob("*/*.eml"))


def test_preview_through_a_subprocess_runs_no_command(workspace):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SPAMASSASSIN"] = "off"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/unsafe/cycler-body.md"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not (workspace / "pwned").exists()
    assert done.returncode == 4
    assert done.stdout == ""
    assert done.stderr == expected("cycler-body.md", *CASES[0][1:])


def test_the_web_archive_answers_404_for_an_unsafe_issue_and_runs_nothing(workspace):
    from test_serve import LiveServer, configure

    for name in ("cycler-body.md", "merge-field.md"):
        shutil.copy(workspace / "issues" / "unsafe" / name, workspace / "issues" / name)
    with LiveServer(configure(workspace, 'archive = "all"')) as live, live.client() as client:
        body = client.get("/issues/cycler-body.html")
        merge = client.get("/issues/merge-field.html")
        fine = client.get("/issues/sample.html")
    assert not (workspace / "pwned").exists()
    assert body.status_code == merge.status_code == 404
    assert fine.status_code == 200
