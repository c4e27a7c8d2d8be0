"""The spam check's faster paths: spamc against a running spamd, and the stock spamassassin
run so that it loads its rules before the message arrives."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import FIXTURES, free_port
from spamd_server import find_spamd

from newsletter import spamproc
from newsletter.checks import spam

requires_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="apt-get install spamassassin"
)
requires_spamd = pytest.mark.skipif(
    find_spamd() is None or shutil.which("spamc") is None,
    reason="apt-get install spamd spamc",
)


@pytest.fixture(scope="module")
def spamd(tmp_path_factory):
    from spamd_server import Spamd

    server = Spamd(tmp_path_factory.mktemp("spamd")).start()
    try:
        yield server
    finally:
        server.stop()


def preview(issue: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`newsletter preview ISSUE` as a command, with the spam check on unless `env` says."""
    base = {k: v for k, v in os.environ.items() if k != spam.ENV}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", issue],
        capture_output=True, text=True, env={**base, **env}, timeout=120,
    )  # fmt: skip


def spam_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("Spam:"))


def counting_stub(folder: Path) -> tuple[Path, Path]:
    """A stand-in spamassassin that notes each start and answers with a 0.3-point report."""
    log = folder / "starts"
    stub = folder / "spamassassin"
    stub.write_text(
        f"#!/bin/sh\necho started >> {log}\ncat > /dev/null\n"
        "printf 'Content analysis details:   (0.3 points, 5.0 required)\\n\\n'\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)
    return stub, log


@requires_spamassassin
def test_the_stock_spamassassin_loads_its_rules_first_and_scores_as_the_command_does(
    workspace, monkeypatch
):
    from newsletter.config import load_config
    from newsletter.issue import load_issue
    from newsletter.sample import check_issue

    shutil.copy(FIXTURES / "spam" / "error.md", workspace / "issues" / "error.md")
    config = load_config(workspace / "newsletter.toml")
    eml = check_issue(config, load_issue(Path("issues/error.md"))).sample.eml
    executable = shutil.which("spamassassin")
    command = spamproc.preloading_command(executable)
    assert command is not None and command[2].endswith("spamcheck.pl")
    monkeypatch.delenv(spam.ENV, raising=False)
    preloaded = spam.score(eml)  # through spamcheck.pl
    stock = subprocess.run(
        [executable, *spam.COMMAND], input=eml, capture_output=True, env={"LC_ALL": "C"}
    )
    expected = spam.parse_report(stock.stdout.decode())
    assert expected is not None and expected.score > 5.0
    assert (preloaded.score, preloaded.required) == (expected.score, expected.required)
    # The same rules fired (SpamAssassin lists equal scores in no fixed order).
    assert sorted(preloaded.rules, key=str) == sorted(expected.rules, key=str)


def test_a_stand_in_spamassassin_is_run_as_named():
    assert spamproc.preloading_command(str(FIXTURES / "spam" / "report.txt")) is None
    assert spamproc.preloading_command(shutil.which("sh")) is None


@requires_spamd
def test_with_a_spamd_answering_preview_scores_through_spamc_and_starts_no_spamassassin(
    workspace, spamd, tmp_path
):
    stub, log = counting_stub(tmp_path)
    shutil.copy(FIXTURES / "spam" / "warning.md", workspace / "issues" / "warning.md")
    done = preview("issues/warning.md", {spam.ENV: str(stub), spam.SPAMD_ENV: spamd.address})
    assert done.returncode == 0, done.stderr
    assert spam_line(done.stdout).startswith(
        f"Spam:      2.7 points (spamd at {spamd.address}; warns above 2.0): "
    )
    assert "DEAR_FRIEND +2.7" in spam_line(done.stdout)
    assert "warning spam-score: SpamAssassin scores 2.7 points" in done.stdout
    assert not log.exists()  # no spamassassin was started


@requires_spamd
def test_the_sample_scored_by_spamd_passes_as_it_does_with_spamassassin(workspace, spamd):
    done = preview("issues/sample.md", {spam.SPAMD_ENV: spamd.address})
    assert done.returncode == 0, done.stderr
    assert spam_line(done.stdout).startswith(f"Spam:      0.0 points (spamd at {spamd.address};")
    assert "Checks:    all passed" in done.stdout


def test_without_a_spamd_at_the_address_preview_starts_spamassassin(workspace, tmp_path):
    stub, log = counting_stub(tmp_path)
    closed = f"127.0.0.1:{free_port()}"
    done = preview("issues/sample.md", {spam.ENV: str(stub), spam.SPAMD_ENV: closed})
    assert done.returncode == 0, done.stderr
    assert spam_line(done.stdout).startswith("Spam:      0.3 points (SpamAssassin, local tests;")
    assert log.read_text().splitlines() == ["started"]


@requires_spamd
def test_a_spamd_that_hangs_up_is_one_line_and_the_preview_carries_on(workspace):
    # Something that accepts the connection (so spamc is chosen) and closes it at once.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        done = preview("issues/sample.md", {spam.SPAMD_ENV: f"127.0.0.1:{port}"})
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert spam_line(done.stdout).startswith("Spam:      not scored: spamc gave no report (exit ")
    assert "Checks:    all passed" in done.stdout


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:7830", ("127.0.0.1", 7830)),
        ("spam.internal", ("spam.internal", 783)),
        ("[::1]:7830", ("::1", 7830)),
        ("off", None),
        ("", None),
        ("host:port", None),
    ],
)
def test_the_spamd_address_is_host_and_optional_port(value, address):
    assert spamproc.spamd_address({spam.SPAMD_ENV: value}) == address
