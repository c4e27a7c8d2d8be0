"""A command loads what it uses: `newsletter preview` imports neither the other commands'
modules nor the sending engine, and `--help` still lists every command."""

from __future__ import annotations

import os
import subprocess
import sys

from newsletter.cli import show
from newsletter.sending import ledger

# Runs `newsletter preview ISSUE` in this process, then prints the modules it imported.
PROBE = """
import sys
from newsletter.cli import main
sys.argv = ["newsletter", "preview", "issues/sample.md"]
try:
    main()
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)))
"""


def test_preview_imports_no_other_command_and_not_the_sending_engine(workspace):
    env = {**os.environ, "NEWSLETTER_SPAMASSASSIN": "off"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert "Checks:    all passed" in done.stdout, done.stderr
    modules = set(done.stdout.split("MODULES ", 1)[1].split())
    assert "newsletter.cli.issues" in modules
    unused = {
        "newsletter.cli.send", "newsletter.cli.subscribers", "newsletter.cli.store",
        "newsletter.cli.report", "newsletter.cli.serve", "newsletter.cli.archive",
        "newsletter.cli.doctor", "newsletter.sending.ledger", "newsletter.subscribers.importing",
        "newsletter.subscribers.changes", "filelock", "urllib3",  # (requests: a stand-in)
    }  # fmt: skip
    assert unused & modules == set()


def test_status_labels_every_state_of_the_ledger():
    states = {ledger.SENT, ledger.FAILED, ledger.RETRY, ledger.UNKNOWN, ledger.IN_FLIGHT}
    assert states | {ledger.INVALID} <= set(show.LABELS)


def test_preview_as_a_command_prints_everything_and_exits_with_the_checks_code(workspace):
    env = {**os.environ, "NEWSLETTER_SPAMASSASSIN": "off"}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/problems/no-unsubscribe.md"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "error" in done.stdout
    written = [line for line in done.stdout.splitlines() if line.startswith("Wrote")]
    assert len(written) == 4
    assert (workspace / "build" / "no-unsubscribe" / "email.eml").stat().st_size > 0
    ok = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/sample.md"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.endswith("build/sample/email.mjml\n")
