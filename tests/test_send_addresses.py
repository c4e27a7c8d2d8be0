"""Real sends of addresses and names that do not fit plain ASCII headers.

Non-ASCII addresses (IDN domains, UTF-8 local parts) and over-long names and subjects go
through `newsletter send` to the outbox, the loopback SMTP server (with and without
SMTPUTF8) and the SendGrid loopback server. One recipient's problem is that recipient's
alone: the others are sent, nothing ends in a traceback.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from loopback import SendgridServer, SmtpServer
from test_message import display_name
from test_send import write_list
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.errors import ExitCode
from newsletter.sending.ledger import FAILED, SENT, Ledger

runner = CliRunner()
KEY = "SG.loopback-test-key.addresses"

UTF8_LOCAL = "José@exámple.es"  # needs SMTPUTF8: no ASCII form of the local part exists
IDN_ONLY = "max@exámple.es"  # an ASCII local part: the domain goes out IDNA-encoded
IDN_WIRE = "max@xn--exmple-qta.es"
PLAIN = ["r00000@example.org", "r00001@example.org", "r00002@example.org"]


def mixed_list(root: Path) -> None:
    extra = [
        {"email": UTF8_LOCAL, "name": "José Núñez", "status": "subscribed"},
        {"email": IDN_ONLY, "name": "Max Müller", "status": "subscribed"},
    ]
    write_list(root, 3, extra=extra)


def send(root: Path, env: dict[str, str]):
    return runner.invoke(app, ["send", "issues/merge.md", "--yes"], env=env)


def states(root: Path) -> dict[str, tuple[str, str | None]]:
    with Ledger(root / ".newsletter" / "ledger.sqlite3") as ledger:
        return {row.email: (row.state, row.error) for row in ledger.rows("merge")}


def smtp_env(server: SmtpServer) -> dict[str, str]:
    return {
        "NEWSLETTER_SEND_PROVIDER": "smtp",
        "NEWSLETTER_SMTP_HOST": server.host,
        "NEWSLETTER_SMTP_PORT": str(server.port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_SMTP_TIMEOUT": "10",
    }


def parse(data: bytes) -> email.message.EmailMessage:
    # From str: the bytes parser would read UTF-8 headers (RFC 6532) as escaped ASCII.
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)


def test_outbox_send_writes_non_ascii_addresses_and_sends_everyone(workspace):
    mixed_list(workspace)
    result = send(workspace, {})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == ExitCode.OK, result.output
    assert {e: s for e, (s, _) in states(workspace).items()} == {
        **{e: SENT for e in PLAIN},
        UTF8_LOCAL: SENT,
        IDN_ONLY: SENT,
    }
    files = {}
    for path in (workspace / "outbox" / "merge").glob("*.eml"):
        data = path.read_bytes()
        files[parse(data)["To"].addresses[0].addr_spec] = data
    # An SMTPUTF8 message (RFC 6532): the address is UTF-8 as written; everything else ASCII.
    to_line = next(line for line in files[UTF8_LOCAL].split(b"\r\n") if line.startswith(b"To:"))
    assert UTF8_LOCAL.encode() in to_line
    assert parse(files[UTF8_LOCAL])["To"].addresses[0].display_name == "José Núñez"
    files[IDN_WIRE].decode("ascii")  # an IDN domain alone needs no SMTPUTF8
    assert set(files) == {*PLAIN, UTF8_LOCAL, IDN_WIRE}


def test_smtp_with_smtputf8_delivers_non_ascii_addresses(workspace):
    mixed_list(workspace)
    with SmtpServer() as server:
        result = send(workspace, smtp_env(server))
        received = {m.rcpt_tos[0]: m for m in server.messages}
    assert result.exit_code == ExitCode.OK, result.output
    assert set(received) == {*PLAIN, UTF8_LOCAL, IDN_WIRE}
    assert "SMTPUTF8" in received[UTF8_LOCAL].mail_options
    assert "SMTPUTF8" not in received[IDN_WIRE].mail_options  # plain ASCII on the wire
    assert received[IDN_WIRE].data.decode("ascii")
    assert parse(received[UTF8_LOCAL].data)["To"].addresses[0].addr_spec == UTF8_LOCAL
    assert {s for s, _ in states(workspace).values()} == {SENT}


def test_smtp_without_smtputf8_fails_only_the_non_ascii_local_part(workspace):
    mixed_list(workspace)
    with SmtpServer(smtputf8=False) as server:
        result = send(workspace, smtp_env(server))
        received = sorted(m.rcpt_tos[0] for m in server.messages)
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert "Traceback" not in result.output
    assert received == sorted([*PLAIN, IDN_WIRE])
    ledger = states(workspace)
    assert ledger.pop(UTF8_LOCAL) == (
        FAILED,
        "the address has non-ASCII characters before the @ and SMTP server "
        f"{server.host}:{server.port} does not offer SMTPUTF8",
    )
    assert {s for s, _ in ledger.values()} == {SENT}
    assert f"  {UTF8_LOCAL}: the address has non-ASCII characters before the @" in result.output


def test_sendgrid_sends_idn_domains_encoded_and_fails_only_the_non_ascii_local_part(workspace):
    mixed_list(workspace)
    env = {
        "NEWSLETTER_SEND_PROVIDER": "sendgrid",
        "SENDGRID_API_KEY": KEY,
        "NEWSLETTER_SENDGRID_TIMEOUT": "10",
    }
    with SendgridServer(api_key=KEY) as server:
        env["NEWSLETTER_SENDGRID_HOST"] = server.url
        result = send(workspace, env)
        received = sorted(d.to_email for d in server.deliveries())
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert received == sorted([*PLAIN, IDN_WIRE])
    ledger = states(workspace)
    state, reason = ledger.pop(UTF8_LOCAL)
    assert state == FAILED
    assert reason == (
        "the address has non-ASCII characters before the @: "
        "the sendgrid provider does not send to such addresses (SMTPUTF8)"
    )
    assert {s for s, _ in ledger.values()} == {SENT}


def test_smtp_accepts_a_message_for_a_5000_character_name_and_subject_field(workspace):
    # The first word, a 2,500-character run with no space to fold at, goes into the subject.
    long_name = "Q" * 2500 + " Lovelace" * 278  # 5,002 characters
    write_list(
        workspace,
        2,
        extra=[{"email": "long@example.org", "name": long_name, "status": "subscribed"}],
    )
    with SmtpServer() as server:
        result = send(workspace, smtp_env(server))
        received = {m.rcpt_tos[0]: m for m in server.messages}
    assert result.exit_code == ExitCode.OK, result.output
    data = received["long@example.org"].data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = parse(data)
    assert display_name(data) == long_name[:200]
    assert parsed["Subject"] == "News for " + "Q" * 2500
