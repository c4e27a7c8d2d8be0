"""The CLI as a whole: every command registered, `--version`, help that shows what it says,
and the one error boundary (exit codes, "Interrupted.", NEWSLETTER_DEBUG)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from newsletter.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()

COMMANDS = [
    "init", "new", "preview", "doctor", "send", "status", "serve", "subscribers", "archive", "store",
]  # fmt: skip
SUBSCRIBER_COMMANDS = [
    "list", "count", "add", "remove", "forget", "import", "export", "validate", "sync",
]  # fmt: skip


def every_command(command=None, path=()):
    """(words after `newsletter`, command) for the app, each group and each command under it."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from every_command(sub, (*path, name))


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PYTHONPATH"] = str(REPO)
    env["COLUMNS"] = "200"
    return env


@pytest.mark.parametrize("module", ["newsletter", "newsletter.cli"])
def test_help_of_the_package_and_of_the_cli_module_lists_every_command(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listed = re.findall(r"^  (\w+)  ", done.stdout, re.M)
    assert listed == COMMANDS


def test_the_subscribers_group_holds_sync_with_the_others():
    done = runner.invoke(app, ["subscribers", "--help"])
    assert done.exit_code == 0
    assert re.findall(r"^  (\w+)  ", done.output, re.M) == SUBSCRIBER_COMMANDS


def test_version_prints_the_distribution_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"newsletter {project['version']}\n"


def test_every_help_shows_what_it_says():
    """Markup must not eat text ("([send] provider)" once printed as "( provider)"), every
    command and option has help, and each example keeps a line of its own."""
    holes = {}
    for path, command in every_command():
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        name = " ".join(("newsletter", *path))
        if not (command.help or "").strip():
            holes[name] = "no help text"
        for param in command.params:
            if param.name != "help" and not (getattr(param, "help", None) or "").strip():
                holes[f"{name} {param.name}"] = "no help text"
        found = re.findall(r".{0,20}(?:\( |\(\)|\[\]|\S +Example:).{0,20}", result.output)
        if found:
            holes[name] = found
    assert holes == {}


@pytest.mark.parametrize(
    ("words", "shown"),
    [
        (["send"], "([send] provider)."),
        (["send"], "([send] rate)"),
        (["serve"], "([serve] host, 127.0.0.1)"),
    ],
)
def test_help_keeps_the_bracketed_config_keys(words, shown):
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert shown in " ".join(result.output.split())  # wherever the help wraps its lines


def test_send_help_names_every_provider():
    from newsletter.providers import PROVIDERS

    result = runner.invoke(app, ["send", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    shown = text[text.index("--provider") : text.index("([send] provider)")]
    assert [name for name in PROVIDERS if name not in shown] == []


def test_a_usage_error_from_a_command_is_one_line_with_exit_code_2(workspace):
    result = runner.invoke(app, ["new"])
    assert result.exit_code == 2
    assert "Error:" in result.output
    assert "give a TITLE or --from-text FILE" in result.output
    assert "Traceback" not in result.output


def test_a_bad_date_for_new_is_a_usage_error(workspace):
    result = runner.invoke(app, ["new", "Title", "--date", "March 4th"])
    assert result.exit_code == 2
    assert "expected YYYY-MM-DD, got 'March 4th'" in result.output
    assert not (workspace / "issues" / "march-4th.md").exists()


def test_newsletter_debug_shows_the_traceback(workspace):
    env = {**subprocess_env(), "NEWSLETTER_DEBUG": "1", "NEWSLETTER_SPAMASSASSIN": "off"}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/missing.md"],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" in done.stderr
    assert "IssueError" in done.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_ctrl_c_says_interrupted_and_exits_130(workspace):
    fifo = workspace / "roundup.txt"
    os.mkfifo(fifo)
    child = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "new", "--from-text", str(fifo)],
        cwd=workspace,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None and time.monotonic() < deadline:
            try:  # succeeds once the command has opened the FIFO to read it
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
        assert writer is not None
        time.sleep(0.2)  # now it waits in read(): nothing is ever written
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if writer is not None:
            os.close(writer)
        if child.poll() is None:
            child.kill()
    assert (child.returncode, err, out) == (130, "Interrupted.\n", "")
