"""ResendProvider, through the official SDK, against a loopback Resend batch API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from loopback import make_campaign, message_for, subscribers
from loopback_resend import ResendServer

from newsletter import sending
from newsletter.config import load_config
from newsletter.errors import ConfigError, ProviderError
from newsletter.providers import SendOptions, Status, make_provider
from newsletter.providers.resend.api import API_KEY_ENV
from newsletter.providers.resend.mail import idempotency_key

KEY = "re_loopback_test_key"


@pytest.fixture
def server():
    with ResendServer(api_key=KEY) as resend:
        yield resend


def resend_config(workspace: Path, host: str, **extra: str):
    env = {
        "NEWSLETTER_SEND_PROVIDER": "resend",
        "NEWSLETTER_RESEND_HOST": host,
        "NEWSLETTER_RESEND_TIMEOUT": "5",
        **extra,
    }
    return load_config(workspace / "newsletter.toml", env=env)


def provider_for(workspace, server, key=KEY, options=None):
    config = resend_config(workspace, server.url)
    env = {API_KEY_ENV: key} if key else {}
    return make_provider("resend", config, env=env, options=options), config


def many(config, count: int):
    campaign = make_campaign(config)
    return [message_for(campaign, f"reader{i}@example.org", f"Reader {i}") for i in range(count)]


def test_accepted_batch_carries_unsubscribe_headers_per_recipient_and_an_idempotency_key(
    workspace, server
):
    provider, config = provider_for(workspace, server)
    campaign = make_campaign(config)
    messages = [
        message_for(campaign, row["email"], row["name"], company=row["company"])
        for row in subscribers()
    ]
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert all(r.provider_id for r in results)
    (request,) = server.requests
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["headers"]["Idempotency-Key"] == idempotency_key(
        campaign, [m.key for m in messages]
    )
    first = request["emails"][0]
    assert first["from"] == "Test Weekly <news@example.org>"
    assert first["to"] == ["Ada Lovelace <ada@example.org>"]
    assert first["reply_to"] == ["editor@example.org"]
    for email, message in zip(request["emails"], messages, strict=True):
        headers = email["headers"]
        assert headers["List-Unsubscribe"] == message.list_unsubscribe
        assert headers["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.unsubscribe_url in email["html"]
    assert server.received() == [m.key for m in messages]


def test_key_differs_between_recipient_sets_and_issues_but_not_between_runs(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    first, again = make_campaign(config), make_campaign(config)
    assert idempotency_key(first, ["a@x.org", "b@x.org"]) == idempotency_key(
        again, ["b@x.org", "a@x.org"]
    )
    assert idempotency_key(first, ["a@x.org"]) != idempotency_key(first, ["a@x.org", "b@x.org"])
    other_issue = make_campaign(config, "sample.md")
    assert idempotency_key(first, ["a@x.org"]) != idempotency_key(other_issue, ["a@x.org"])


def test_a_batch_of_100_is_one_request_and_101_are_two(workspace, server):
    config = resend_config(workspace, server.url)
    settings = sending.settings_for(config, "resend")
    assert settings.batch_size == 100
    provider, config = provider_for(workspace, server)
    with provider:
        assert all(r.status is Status.ACCEPTED for r in provider.send_batch(many(config, 100)))
    assert len(server.requests) == 1 and len(server.received()) == 100


def test_an_invalid_address_is_rejected_alone_and_the_rest_are_sent(workspace, server):
    provider, config = provider_for(workspace, server)
    messages = many(config, 3)
    campaign = messages[0].campaign
    messages[1] = message_for(campaign, "not-an-address@", "Broken")
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.REJECTED, Status.ACCEPTED]
    assert "Resend rejected this email (422)" in results[1].reason
    assert "`to`" in results[1].reason
    assert server.received() == ["reader0@example.org", "reader2@example.org"]
    assert results[0].provider_id != results[2].provider_id


def test_a_422_for_the_request_rejects_its_recipients(workspace, server):
    provider, config = provider_for(workspace, server)
    body = {"statusCode": 422, "name": "validation_error", "message": "Invalid `from` field."}
    server.script(status=422, body=body)
    with provider:
        results = provider.send_batch(many(config, 2))
    assert [r.status for r in results] == [Status.REJECTED] * 2
    assert results[0].reason == "Resend rejected the request (422): Invalid `from` field."
    assert server.received() == []


def test_429_is_waited_out_with_its_ratelimit_headers(workspace, server):
    provider, config = provider_for(workspace, server)
    body = {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests."}
    headers = {"ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "1"}
    server.script(status=429, body=body, headers={**headers, "retry-after": "0.3"})
    server.script(status=429, body=body, headers=headers)
    with provider:
        first = provider.send_batch(many(config, 2))
        second = provider.send_batch(many(config, 2))
    assert [r.status for r in first] == [Status.TEMPORARY] * 2
    assert first[0].retry_after == pytest.approx(0.3)
    assert second[0].retry_after == pytest.approx(1.0)
    assert "rate limit (429)" in first[0].reason


def test_send_waits_out_429_and_5xx_and_sends_everyone_once(workspace, server):
    from test_send import write_list

    emails = write_list(workspace, 250)
    rate = {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests."}
    server.script(status=429, body=rate, headers={"retry-after": "0.2"})
    server.script(status=500)
    server.script(status=503)
    env = {API_KEY_ENV: KEY}
    config = resend_config(workspace, server.url)
    prepared = sending.prepare(config, workspace / "issues" / "merge.md")
    settings = sending.Settings(workers=2, batch_size=100, backoff=0.02, backoff_max=0.1)
    with sending.open_ledger(config, prepared) as ledger:
        summary = sending.run(
            prepared, ledger, lambda: make_provider("resend", config, env=env), settings
        )
    assert (summary.sent, summary.failed, summary.unknown) == (250, 0, 0)
    assert sorted(server.received()) == sorted(emails)
    assert {429, 500, 503} <= set(server.answers)


def test_5xx_is_temporary(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(status=502)
    with provider:
        results = provider.send_batch(many(config, 2))
    assert [r.status for r in results] == [Status.TEMPORARY] * 2
    assert "server error (502)" in results[0].reason
    assert server.received() == []


def test_answer_lost_after_sending_is_retried_with_the_same_key_and_mails_nobody_twice(
    workspace, server
):
    provider, config = provider_for(workspace, server)
    server.script(accept_then_drop=True)  # delivered, then the connection drops unanswered
    server.script(drop=True)  # the first retry is lost too (nothing sent: same key in flight)
    messages = many(config, 5)
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 5
    keys = {r["headers"]["Idempotency-Key"] for r in server.requests}
    assert len(server.requests) == 2 and len(keys) == 1  # the dropped read is not recorded
    assert server.answers == [0, 0, 200]
    assert sorted(server.received()) == sorted(m.key for m in messages)  # once each


def test_answer_never_comes_then_the_batch_is_unknown_not_temporary(workspace, server):
    provider, config = provider_for(workspace, server)
    for _ in range(4):
        server.script(accept_then_drop=True)
    with provider:
        results = provider.send_batch(many(config, 2))
    assert [r.status for r in results] == [Status.UNKNOWN] * 2
    assert "no answer from Resend" in results[0].reason
    assert len(server.received()) == 2  # four tries, one delivery


def test_nobody_listening_is_temporary(workspace, server):
    from conftest import free_port

    config = resend_config(workspace, f"http://127.0.0.1:{free_port()}")
    provider = make_provider("resend", config, env={API_KEY_ENV: KEY})
    started = time.monotonic()
    with provider:
        results = provider.send_batch(many(config, 1))
    assert results[0].status is Status.TEMPORARY
    assert "cannot reach Resend" in results[0].reason
    assert time.monotonic() - started < 10


def test_bad_key_stops_the_send_with_the_providers_message(workspace, server):
    provider, config = provider_for(workspace, server, key="re_wrong")
    with provider, pytest.raises(ProviderError, match="Resend refused the API key \\(403\\)"):
        provider.send_batch(many(config, 1))
    assert KEY not in str(server.requests)  # and the wrong key never shows in our errors


def test_missing_key_is_a_config_error(workspace, server):
    config = resend_config(workspace, server.url)
    with pytest.raises(ConfigError, match=f"{API_KEY_ENV} is not set"):
        make_provider("resend", config, env={})


def test_scheduling_and_sandbox_are_refused(workspace, server):
    config = resend_config(workspace, server.url)
    env = {API_KEY_ENV: KEY}
    with pytest.raises(ConfigError, match="the resend provider cannot schedule"):
        make_provider("resend", config, env=env, options=SendOptions(send_at=int(time.time())))
    with pytest.raises(ConfigError, match="the resend provider has no sandbox mode"):
        make_provider("resend", config, env=env, options=SendOptions(sandbox=True))
