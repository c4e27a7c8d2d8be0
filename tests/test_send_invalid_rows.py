"""A list with bad rows: the send goes ahead for every good row and reports each bad one.

Each bad row (an invalid or missing address, a name with a line break, an unknown status, a
row with more values than the header) is skipped, recorded in the ledger as `invalid` with
its file:line and reason, counted in the summary, listed by `status`, and the exit code says
that not everyone got the issue. `subscribers validate` still lists every problem.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from loopback import SmtpServer
from test_readahead import CHILD, children
from test_send import Script, ledger_rows, send
from test_send_e2e import ledger_states, send_in_process, smtp_env
from typer.testing import CliRunner

from newsletter import sending
from newsletter.cli import app
from newsletter.config import load_config
from newsletter.errors import ExitCode
from newsletter.sending.ledger import INVALID, SENT, Ledger
from newsletter.sending.readahead import can_fork

HEADER = "email,name,status,company,vip,nickname"
BAD = {
    "invalid address": "not-an-address,Broken,subscribed,,,",
    "line break": 'r90001@example.org,"Line\nbreak",subscribed,,,',
    "extra column": "r90002@example.org,Extra,subscribed,Acme,,,surplus",
    "unknown status": "r90003@example.org,Odd,maybe,,,",
    "missing address": ",No Address,subscribed,,,",
}
REASONS = {
    "invalid address": "invalid email address 'not-an-address'",
    "line break": "name contains a line break or control character",
    "extra column": "7 values but the header has 6 columns",
    "unknown status": "unknown status 'maybe'",
    "missing address": "missing email address",
}


def write_bad_list(root: Path, count: int = 100, bad_after: int = 10) -> tuple[list[str], dict]:
    """`count` good rows with the BAD rows among them; (good addresses, {kind: line})."""
    lines = [HEADER]
    good = [f"r{i:05d}@example.org" for i in range(count)]
    where = {}
    for i, address in enumerate(good):
        if i == bad_after:
            for kind, row in BAD.items():
                where[kind] = len("\n".join(lines).split("\n")) + 1
                lines.append(row)
        lines.append(f"{address},Reader {i},subscribed,,,")
    (root / "subscribers" / "main.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return good, where


def test_smtp_send_delivers_every_good_row_and_records_each_bad_one(workspace):
    good, where = write_bad_list(workspace)
    with SmtpServer() as server:
        settings = sending.Settings(workers=2, batch_size=20, backoff=0.01, backoff_max=0.05)
        summary = send_in_process(workspace, smtp_env(server), settings)
        received = sorted(m.rcpt_tos[0] for m in server.messages)
    assert received == good
    assert (summary.sent, summary.failed, summary.plan.invalid) == (100, 0, 5)
    assert summary.exit_code == ExitCode.INCOMPLETE
    with Ledger(workspace / ".newsletter" / "ledger.sqlite3") as ledger:
        invalid = {row.error: row.email for row in ledger.rows("merge", [INVALID])}
    assert len(invalid) == 5
    for kind, line in where.items():
        [error] = [e for e in invalid if e.startswith(f"subscribers/main.csv:{line}: ")]
        assert REASONS[kind] in error, kind
    assert ledger_states(workspace)["r00000@example.org"] == SENT


def test_send_cli_summary_exit_code_and_status_name_each_bad_row(workspace):
    good, where = write_bad_list(workspace, count=12, bad_after=3)
    runner = CliRunner()
    result = runner.invoke(app, ["send", "issues/merge.md", "--yes"])
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert "Recipients: 12 (left out: 5 invalid)" in result.output
    assert re.search(r"^Sent 12 in \d+ s\.$", result.output, re.M)
    assert "Skipped 5 invalid rows (`newsletter subscribers validate` lists every problem):" in (
        result.output
    )
    for kind, line in where.items():
        assert re.search(
            rf"^  subscribers/main\.csv:{line}: .*{re.escape(REASONS[kind])}", (result.output), re.M
        ), kind
    assert len(list((workspace / "outbox" / "merge").glob("*.eml"))) == 12

    status = runner.invoke(app, ["status", "issues/merge.md"])
    assert status.exit_code == 0, status.output
    assert "  list main: 12 sent, 5 invalid\n" in status.output
    assert "Invalid (skipped; fix these rows and send again):\n" in status.output
    for line in where.values():
        assert f"  subscribers/main.csv:{line}: " in status.output

    validate = runner.invoke(app, ["subscribers", "validate", "main"])
    assert validate.exit_code == 1
    assert [int(m) for m in re.findall(r"main\.csv:(\d+):", validate.output)] == sorted(
        where.values()
    )

    # Fixed, the next send mails the fixed rows only, and `status` forgets the old problems.
    path = workspace / "subscribers" / "main.csv"
    text = path.read_text(encoding="utf-8")
    for kind in ("invalid address", "line break"):
        text = text.replace(BAD[kind], f"fixed-{kind.split()[0]}@example.org,Fixed,subscribed,,,")
    path.write_text(text, encoding="utf-8")
    again = runner.invoke(app, ["send", "issues/merge.md", "--yes"])
    assert again.exit_code == ExitCode.INCOMPLETE, again.output
    assert "Recipients: 2 (left out: 12 already sent, 3 invalid)" in again.output
    status = runner.invoke(app, ["status", "merge"])
    assert "  list main: 14 sent, 3 invalid\n" in status.output


def test_a_list_of_only_bad_rows_sends_nothing_and_says_why(workspace):
    (workspace / "subscribers" / "main.csv").write_text(
        HEADER + "\n" + BAD["invalid address"] + "\n", encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["send", "issues/merge.md", "--yes"])
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert "Recipients: 0 (left out: 1 invalid)" in result.output
    assert "Nothing to send." in result.output


@pytest.mark.skipif(not can_fork(), reason="the read-ahead process needs fork")
def test_bad_rows_go_through_the_read_ahead_process_as_they_do_in_thread(tmp_path, workspace):
    outcomes = []
    for ahead in (True, False):
        root = tmp_path / f"ahead-{ahead}"
        shutil.copytree(workspace, root)
        write_bad_list(root, count=1200, bad_after=700)
        config = load_config(root / "newsletter.toml")
        seen: set[str] = set()
        script = Script()
        settings = sending.Settings(workers=2, batch_size=50, read_ahead=ahead)

        def answer(message, attempt, seen=seen, accept=script.answer):
            seen.update(children())
            return accept(message, attempt)

        script.answer = answer
        summary = send(config, script, settings)
        assert (CHILD in seen) is ahead
        rows = ledger_rows(config)
        here = str(root)  # outside the current folder, file names are absolute
        outcomes.append(
            (
                summary.sent,
                summary.plan.invalid,
                [(where.replace(here, "ROOT"), why) for where, why in summary.skipped],
                sorted(script.accepted),
                {
                    email.replace(here, "ROOT"): (
                        row.state,
                        (row.error or "").replace(here, "ROOT"),
                    )
                    for email, row in rows.items()
                },
            )
        )
    assert outcomes[0] == outcomes[1]
    sent, invalid, listed, accepted, _ = outcomes[0]
    assert (sent, invalid, len(listed), len(accepted)) == (1200, 5, 5, 1200)
