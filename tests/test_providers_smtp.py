"""SmtpProvider against a real aiosmtpd server on loopback: plain, STARTTLS and implicit TLS."""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import re
import smtplib
import socket
import threading
from pathlib import Path

import pytest
from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st
from loopback import SmtpServer, make_campaign, make_certificate, message_for, subscribers

from newsletter.config import load_config
from newsletter.errors import ConfigError, ProviderError
from newsletter.message import dot_stuffed
from newsletter.providers import (
    SendOptions,
    Status,
    UnsupportedFeature,
    make_provider,
)
from newsletter.providers.smtp import PASSWORD_ENV, SmtpProvider

USER, PASSWORD = "mailer", "s3cret-Pa55word"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trust(certificate, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the throwaway certificate the only CA the client trusts (OpenSSL reads the env)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


@pytest.fixture(params=[True, False], ids=["pipelined", "one-by-one"])
def server(request):
    """Each test against a server offering PIPELINING (MAIL, RCPT and DATA sent together) and
    one that does not (smtplib's sendmail): both paths must fail and succeed alike."""
    with SmtpServer(pipelining=request.param) as smtp:
        yield smtp


def smtp_config(workspace: Path, port: int, security: str = "none", **extra: str):
    env = {
        "NEWSLETTER_SEND_PROVIDER": "smtp",
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": security,
        "NEWSLETTER_SMTP_TIMEOUT": "5",
        **extra,
    }
    return load_config(workspace / "newsletter.toml", env=env)


def provider_for(workspace: Path, port: int, security: str = "none", password=None, **extra):
    config = smtp_config(workspace, port, security, **extra)
    env = {PASSWORD_ENV: password} if password else {}
    return make_provider("smtp", config, env=env), config


def fixture_messages(config, issue: str = "merge.md"):
    campaign = make_campaign(config, issue)
    return [
        message_for(campaign, row["email"], row["name"], company=row["company"])
        for row in subscribers()
    ]


def test_smtp_sends_each_message_over_one_reused_connection(workspace, server):
    provider, config = provider_for(workspace, server.port)
    messages = fixture_messages(config)
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert [r.key for r in results] == [m.key for m in messages]
    assert [r.provider_id for r in results] == [m.message_id for m in messages]
    assert server.connections == 1
    assert [m.rcpt_tos for m in server.messages] == [[m.to_email] for m in messages]
    assert {m.mail_from for m in server.messages} == {"news@example.org"}
    undated = lambda data: re.sub(rb"\r\nDate: [^\r]*", b"", data)  # noqa: E731
    assert [undated(m.data) for m in server.messages] == [
        undated(m.as_bytes()) for m in messages
    ]  # byte for byte what the message built, CRLF and all


def test_smtp_message_arrives_with_correct_headers_and_parts(workspace, server):
    provider, config = provider_for(workspace, server.port)
    campaign = make_campaign(config, "sample.md")
    with provider:
        provider.send_batch(
            [
                message_for(campaign, "ada@example.org", "Ada Lovelace"),
                message_for(campaign, "grace@example.net", "Grace Hopper"),
            ]
        )
    first, second = (m.message for m in server.messages)
    assert first["From"] == "Test Weekly <news@example.org>"
    assert first["From"].addresses[0].display_name == "Test Weekly"
    assert first["To"] == "Ada Lovelace <ada@example.org>"
    assert first["Reply-To"] == "editor@example.org"
    assert first["Subject"] == "NATO Weekly Roundup – Week of January 21st"
    raw = server.messages[0].data.decode("ascii")
    assert "Subject: =?utf-8?" in raw  # the en dash is RFC 2047-encoded
    assert email.utils.parsedate_to_datetime(first["Date"]) is not None
    ids = {first["Message-ID"], second["Message-ID"]}
    assert len(ids) == 2 and all(i.endswith("@example.org>") for i in ids)
    unsubscribe = first["List-Unsubscribe"]
    assert "<https://news.example.org/unsubscribe/main." in unsubscribe
    assert "<mailto:news@example.org?subject=unsubscribe%20main." in unsubscribe
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["List-Id"] == "Test Weekly <main.example.org>"
    assert first.get_content_type() == "multipart/alternative"
    text = first.get_body(("plain",)).get_content()
    html = first.get_body(("html",)).get_content()
    assert "“Statement by the NATO Secretary General" in text
    assert "NATO’s past support" in html
    for received in server.messages:
        assert max(len(line) for line in received.data.split(b"\r\n")) <= 998


def test_smtp_fills_merge_fields_and_escapes_html(workspace, server):
    provider, config = provider_for(workspace, server.port)
    with provider:
        provider.send_batch(fixture_messages(config))
    ada = server.messages[0].message
    assert ada["Subject"] == "News for Ada"
    text = ada.get_body(("plain",)).get_content()
    html = ada.get_body(("html",)).get_content()
    assert "Hi Ada from Engines & <Co>," in " ".join(text.split())
    assert "your address is ada@example.org." in " ".join(text.split())
    assert "Engines &amp; &lt;Co&gt;" in html
    assert "Engines & <Co>" not in html
    grace = server.messages[1].message
    assert "Hi Grace from ," in " ".join(grace.get_body(("plain",)).get_content().split())


def test_smtp_name_with_line_breaks_cannot_add_headers(workspace, server):
    provider, config = provider_for(workspace, server.port)
    campaign = make_campaign(config)
    evil = "Eve\r\nBcc: victim@example.com\r\nSubject: pwned"
    with provider:
        results = provider.send_batch([message_for(campaign, "eve@example.org", evil)])
    assert results[0].status is Status.ACCEPTED
    received = server.messages[0]
    message = received.message
    assert received.rcpt_tos == ["eve@example.org"]
    assert message["Bcc"] is None
    assert message.get_all("Subject") == ["News for Eve"]
    assert message["To"].addresses[0].addr_spec == "eve@example.org"
    assert message["To"].addresses[0].display_name == "Eve Bcc: victim@example.com Subject: pwned"


def test_smtp_4xx_for_a_recipient_is_temporary_and_5xx_rejected(workspace, server):
    server.script.rcpt_replies = {
        "grey@example.org": "451 4.7.1 Greylisted, try again later",
        "gone@example.org": "550 5.1.1 No such user",
        "blocked@example.org": "550 5.7.1 Blocked by policy",
        "moved@example.org": "551 5.1.6 User not local",
    }
    server.script.data_replies = {"spam@example.org": "554 5.7.1 Looks like spam"}
    provider, config = provider_for(workspace, server.port)
    campaign = make_campaign(config)
    addresses = [
        "ok1@example.org",
        "grey@example.org",
        "gone@example.org",
        "blocked@example.org",
        "moved@example.org",
        "spam@example.org",
        "ok2@example.org",
    ]
    with provider:
        results = provider.send_batch([message_for(campaign, a, "X") for a in addresses])
    by = {r.key: r for r in results}
    assert by["ok1@example.org"].status is Status.ACCEPTED
    assert by["ok2@example.org"].status is Status.ACCEPTED
    grey = by["grey@example.org"]
    assert (grey.status, grey.hard_bounce) == (Status.TEMPORARY, False)
    assert grey.reason == "451 4.7.1 Greylisted, try again later"
    gone = by["gone@example.org"]
    assert (gone.status, gone.hard_bounce) == (Status.REJECTED, True)
    assert gone.reason == "550 5.1.1 No such user"
    assert by["moved@example.org"].hard_bounce is True
    blocked = by["blocked@example.org"]
    assert (blocked.status, blocked.hard_bounce) == (Status.REJECTED, False)
    spam = by["spam@example.org"]
    assert (spam.status, spam.hard_bounce) == (Status.REJECTED, False)
    assert "Looks like spam" in spam.reason
    assert server.connections == 1  # refusals do not cost the connection


def test_smtp_rejects_a_non_ascii_local_part_without_smtputf8_and_goes_on(workspace):
    with SmtpServer(smtputf8=False) as server:
        provider, config = provider_for(workspace, server.port)
        campaign = make_campaign(config)
        messages = [
            message_for(campaign, "zoë@bücher.example"),
            message_for(campaign, "ok@bücher.example"),  # only the domain: IDNA is enough
        ]
        with provider:
            results = provider.send_batch(messages)
        assert [m.rcpt_tos for m in server.messages] == [["ok@xn--bcher-kva.example"]]
    assert [r.status for r in results] == [Status.REJECTED, Status.ACCEPTED]
    assert results[0].reason.endswith("does not offer SMTPUTF8")


def test_smtp_reconnects_when_the_server_closes_the_connection(workspace, server):
    server.script.close_after = 1  # hang up on the second MAIL of every connection
    provider, config = provider_for(workspace, server.port)
    campaign = make_campaign(config)
    addresses = [f"r{i}@example.org" for i in range(4)]
    with provider:
        results = provider.send_batch([message_for(campaign, a) for a in addresses])
    assert [r.status for r in results] == [Status.ACCEPTED] * 4
    assert [m.rcpt_tos[0] for m in server.messages] == addresses
    assert server.connections == 4


def test_smtp_connection_lost_after_data_is_unknown_and_next_message_reconnects(workspace, server):
    server.script.drop_on_data = {"lost@example.org"}
    provider, config = provider_for(workspace, server.port)
    campaign = make_campaign(config)
    addresses = ["a@example.org", "lost@example.org", "b@example.org"]
    with provider:
        results = provider.send_batch([message_for(campaign, a) for a in addresses])
    assert [r.status for r in results] == [Status.ACCEPTED, Status.UNKNOWN, Status.ACCEPTED]
    assert "after the message was sent" in results[1].reason
    assert server.dropped == ["lost@example.org"]  # it was not sent twice
    assert [m.rcpt_tos[0] for m in server.messages] == ["a@example.org", "b@example.org"]


def test_smtp_timeout_waiting_for_the_final_reply_is_unknown(workspace, server):
    server.script.data_delay = 2.0
    provider, config = provider_for(workspace, server.port, NEWSLETTER_SMTP_TIMEOUT="0.5")
    campaign = make_campaign(config)
    with provider:
        results = provider.send_batch([message_for(campaign, "slow@example.org")])
    assert results[0].status is Status.UNKNOWN


def test_smtp_421_before_data_is_retried_once_then_temporary(workspace, server):
    server.script.rcpt_replies = {"busy@example.org": "421 4.3.2 Service shutting down"}
    provider, config = provider_for(workspace, server.port)
    campaign = make_campaign(config)
    with provider:
        results = provider.send_batch(
            [message_for(campaign, "busy@example.org"), message_for(campaign, "ok@example.org")]
        )
    assert results[0].status is Status.TEMPORARY
    assert results[0].reason.startswith("421 ")
    assert results[1].status is Status.ACCEPTED


def test_smtp_connection_refused_is_temporary_for_the_whole_batch(workspace):
    from conftest import free_port

    port = free_port()  # nothing listens there
    provider, config = provider_for(workspace, port)
    campaign = make_campaign(config)
    with provider:
        results = provider.send_batch(
            [message_for(campaign, "a@example.org"), message_for(campaign, "b@example.org")]
        )
    assert [r.status for r in results] == [Status.TEMPORARY, Status.TEMPORARY]
    assert (
        results[0].reason == f"cannot connect to SMTP server 127.0.0.1:{port}: Connection refused"
    )


def test_smtp_starttls_with_auth_delivers_over_tls(workspace, certificate, trust):
    with SmtpServer("starttls", certificate, (USER, PASSWORD)) as server:
        provider, config = provider_for(
            workspace, server.port, "starttls", PASSWORD, NEWSLETTER_SMTP_USERNAME=USER
        )
        with provider:
            results = provider.send_batch(fixture_messages(config))
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert all(m.tls and m.login == USER for m in server.messages)
    assert server.connections == 1
    assert server.messages[0].message["Subject"] == "News for Ada"


def test_smtp_implicit_tls_with_auth_delivers(workspace, certificate, trust):
    with SmtpServer("ssl", certificate, (USER, PASSWORD)) as server:
        provider, config = provider_for(
            workspace, server.port, "ssl", PASSWORD, NEWSLETTER_SMTP_USERNAME=USER
        )
        with provider:
            results = provider.send_batch(fixture_messages(config)[:1])
    assert results[0].status is Status.ACCEPTED
    assert server.messages[0].login == USER


def test_smtp_wrong_password_raises_provider_error_without_the_secret(
    workspace, certificate, trust
):
    with SmtpServer("starttls", certificate, (USER, PASSWORD)) as server:
        provider, config = provider_for(
            workspace, server.port, "starttls", "not-the-password", NEWSLETTER_SMTP_USERNAME=USER
        )
        with provider, pytest.raises(ProviderError) as caught:
            provider.send_batch(fixture_messages(config)[:1])
    message = str(caught.value)
    assert "refused the login for 'mailer'" in message
    assert PASSWORD_ENV in message
    assert "not-the-password" not in message
    assert server.messages == []


def test_smtp_login_refused_on_reconnect_keeps_what_was_sent(workspace, certificate, trust):
    with SmtpServer("starttls", certificate, (USER, PASSWORD)) as server:
        server.script.close_after = 1
        server.script.refuse_logins_after = 1
        provider, config = provider_for(
            workspace, server.port, "starttls", PASSWORD, NEWSLETTER_SMTP_USERNAME=USER
        )
        with provider:
            results = provider.send_batch(fixture_messages(config))
            with pytest.raises(ProviderError, match="refused the login"):
                provider.send_batch(fixture_messages(config))
    assert [r.status for r in results] == [Status.ACCEPTED, Status.TEMPORARY, Status.TEMPORARY]
    assert "refused the login" in results[1].reason
    assert len(server.messages) == 1


def test_smtp_untrusted_certificate_raises_provider_error(workspace, certificate):
    with SmtpServer("starttls", certificate) as server:
        provider, config = provider_for(workspace, server.port, "starttls")
        with provider, pytest.raises(ProviderError, match="certificate of 127.0.0.1"):
            provider.send_batch(fixture_messages(config)[:1])


def test_smtp_starttls_required_but_not_offered_raises(workspace, server):
    provider, config = provider_for(workspace, server.port, "starttls")
    with provider, pytest.raises(ProviderError, match="does not offer STARTTLS"):
        provider.send_batch(fixture_messages(config)[:1])


def test_smtp_several_instances_send_in_parallel_on_their_own_connections(workspace, server):
    config = smtp_config(workspace, server.port)
    campaign = make_campaign(config)
    batches = [[message_for(campaign, f"w{w}-{i}@example.org") for i in range(5)] for w in range(3)]
    outcomes: list = []

    def work(batch):
        with make_provider("smtp", config, env={}) as provider:
            outcomes.extend(provider.send_batch(batch))

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 15 and all(r.status is Status.ACCEPTED for r in outcomes)
    assert server.connections == 3
    assert len(server.messages) == 15


def test_smtp_check_needs_the_password_env_when_a_username_is_set(workspace):
    config = smtp_config(workspace, 587, "starttls", NEWSLETTER_SMTP_USERNAME=USER)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        make_provider("smtp", config, env={})


def test_smtp_check_refuses_unknown_security(workspace):
    config = smtp_config(workspace, 587, "tls")
    with pytest.raises(ConfigError, match="security must be one of starttls, ssl, none"):
        make_provider("smtp", config, env={})


def test_smtp_check_refuses_a_password_over_an_unencrypted_remote_connection(workspace):
    config = smtp_config(
        workspace,
        25,
        "none",
        NEWSLETTER_SMTP_USERNAME=USER,
        NEWSLETTER_SMTP_HOST="mail.example.org",
    )
    with pytest.raises(ConfigError, match="unencrypted") as caught:
        make_provider("smtp", config, env={PASSWORD_ENV: PASSWORD})
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            SendOptions(send_at=2_000_000_000),
            "the smtp provider cannot schedule (--at); use sendgrid or mailgun, "
            "or run `newsletter send` from cron at that time",
        ),
        (
            SendOptions(sandbox=True),
            "the smtp provider has no sandbox mode (--sandbox); use sendgrid or postmark or mailgun, or drop --sandbox",
        ),
    ],
)
def test_smtp_check_refuses_send_options_it_cannot_honour(workspace, server, options, message):
    config = smtp_config(workspace, server.port)
    with pytest.raises(UnsupportedFeature) as caught:
        make_provider("smtp", config, env={}, options=options)
    assert str(caught.value) == message
    assert isinstance(caught.value, ConfigError)
    assert server.messages == []


def test_smtp_provider_is_registered_with_its_batch_and_worker_defaults():
    from newsletter.providers import get_provider_class

    assert get_provider_class("smtp") is SmtpProvider
    assert (SmtpProvider.max_batch, SmtpProvider.default_workers) == (50, 4)
    assert not SmtpProvider.supports_send_at and not SmtpProvider.supports_sandbox


class _RecordingProxy:
    """A TCP relay between the client and the server that keeps what the client wrote."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.chunks: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()
        self._pump(client, upstream, self.chunks)

    @staticmethod
    def _pump(source, sink, record) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if record is not None:
                    record.append(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_smtp_sends_mail_rcpt_and_data_in_one_write_when_the_server_pipelines(workspace):
    with SmtpServer(pipelining=True) as server:
        proxy = _RecordingProxy(server.port)
        provider, config = provider_for(workspace, proxy.port)
        with provider:
            results = provider.send_batch(fixture_messages(config))
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert len(server.messages) == 3
    together = [c for c in proxy.chunks if c.startswith(b"MAIL FROM:")]
    assert len(together) == 3  # one write per message for its three commands
    assert all(b"\r\nRCPT TO:<" in c and c.endswith(b"\r\nDATA\r\n") for c in together)


def test_smtp_lines_starting_with_a_dot_arrive_whole_on_both_paths(workspace, server):
    provider, config = provider_for(workspace, server.port)
    campaign = make_campaign(config, "merge.md")
    message = message_for(campaign, "ada@example.org", "Ada", company=".hidden\r\n.\r\n..dots")
    with provider:
        [result] = provider.send_batch([message])
    assert result.status is Status.ACCEPTED
    [received] = server.messages
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    text = parsed.get_body(("plain",)).get_content()
    # Lines of the message that start with a dot, stuffed on the wire, arrive as they were.
    assert b"\r\n.hidden\r\n" in received.data and b"\r\n..dots=\r\n" in received.data
    assert ".hidden" in text and "..dots" in text


@given(st.binary(max_size=40).map(lambda b: "".join(".\r\nx"[n % 4] for n in b)))
def test_dot_stuffing_is_smtplibs_to_the_byte(text):
    assert dot_stuffed(text).encode() == smtplib._quote_periods(text.encode())


@given(st.text(".\r\nxé", max_size=30))
def test_a_message_stuffed_piece_by_piece_is_the_whole_message_stuffed(value):
    campaign = make_campaign(load_config(FIXTURES / "workspace" / "newsletter.toml"), "merge.md")
    message = message_for(campaign, "ada@example.org", value or "Ada", company=value)
    whole = message.as_bytes()
    assert message.as_bytes(stuffed=True) == smtplib._quote_periods(whole)
