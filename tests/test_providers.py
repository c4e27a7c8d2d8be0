"""The provider base and registry: check() connects to nothing; each step reaches the Handover."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence

import pytest
from loopback import SendgridServer, make_campaign, message_for

from newsletter import providers
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.message import OutgoingMessage
from newsletter.providers import Result, Status, make_provider

KEY = "SG.loopback-test-key.abcdef"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port that takes connections and keeps them waiting: any attempt shows up in accept()."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        yield sock


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def config_at(workspace, provider: str, port: int, **extra: str):
    env = {
        "NEWSLETTER_SEND_PROVIDER": provider,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_SENDGRID_HOST": f"http://127.0.0.1:{port}",
        **extra,
    }
    return load_config(workspace / "newsletter.toml", env=env)


@pytest.mark.parametrize(
    ("provider", "env"), [("smtp", {}), ("sendgrid", {"SENDGRID_API_KEY": KEY}), ("outbox", {})]
)
def test_check_passes_a_working_configuration_without_connecting(
    workspace, listener, provider, env
):
    config = config_at(workspace, provider, listener.getsockname()[1])
    providers.check(provider, config, env)
    assert connections(listener) == 0


def test_check_names_the_missing_secret_without_connecting(workspace, listener):
    config = config_at(workspace, "sendgrid", listener.getsockname()[1])
    with pytest.raises(ConfigError, match="^SENDGRID_API_KEY is not set: .*Mail Send permission"):
        providers.check("sendgrid", config, {})
    assert connections(listener) == 0


def test_check_refuses_an_unknown_provider_naming_the_known_ones(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    with pytest.raises(ConfigError, match="unknown provider 'carrier-pigeon' .*outbox, smtp"):
        providers.check("carrier-pigeon", config, {})


class Steps:
    """A Handover that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.told: list[tuple[str, list[str]]] = []

    def before(self, messages: Sequence[OutgoingMessage]) -> None:
        self.told.append(("before", [m.to_email for m in messages]))

    def after(self, results: Sequence[Result]) -> None:
        self.told.append(("after", [f"{r.key} {r.status.value}" for r in results]))


def test_a_refusal_after_an_accepted_request_reports_the_refused_step_and_spares_the_rest(
    workspace,
):
    with SendgridServer(api_key=KEY) as server:
        config = config_at(workspace, "sendgrid", 0, NEWSLETTER_SENDGRID_HOST=server.url)
        campaign = make_campaign(config)
        messages = [
            message_for(campaign, "ada@example.org"),
            message_for(campaign, "ñandú@example.org"),  # refused while the requests are packed
            message_for(campaign, "ADA@example.org"),  # one request never holds it twice
        ]
        server.script(202)
        server.script(401, {"errors": [{"message": "revoked"}]})
        steps = Steps()
        with make_provider("sendgrid", config, env={"SENDGRID_API_KEY": KEY}) as provider:
            results = provider.send_batch(messages, steps)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.REJECTED, Status.TEMPORARY]
    assert steps.told == [
        ("before", ["ñandú@example.org"]),
        ("after", ["ñandú@example.org rejected"]),
        ("before", ["ada@example.org"]),
        ("after", ["ada@example.org accepted"]),
        ("before", ["ADA@example.org"]),
        ("after", ["ada@example.org temporary"]),  # results name the key
    ]
