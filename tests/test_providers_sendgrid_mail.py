"""SendgridProvider, through the official client, against a loopback SendGrid v3 Mail Send."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from conftest import free_port
from loopback import (
    RESERVED_HEADERS,
    SendgridServer,
    make_campaign,
    message_for,
    sent_both_ways,
    subscribers,
)

from newsletter import sending
from newsletter.config import load_config
from newsletter.errors import ConfigError, ProviderError
from newsletter.message import header_safe
from newsletter.providers import SendOptions, Status, get_provider_class, make_provider
from newsletter.providers.sendgrid.api import API_KEY_ENV
from newsletter.providers.sendgrid.mail import SendgridProvider
from newsletter.tokens import address_id

KEY = "SG.loopback-test-key.abcdef"


@pytest.fixture
def server():
    with SendgridServer(api_key=KEY) as sendgrid:
        yield sendgrid


def sendgrid_config(workspace: Path, host: str, **extra: str):
    env = {
        "NEWSLETTER_SEND_PROVIDER": "sendgrid",
        "NEWSLETTER_SENDGRID_HOST": host,
        "NEWSLETTER_SENDGRID_TIMEOUT": "5",
        **extra,
    }
    return load_config(workspace / "newsletter.toml", env=env)


def provider_for(workspace, server, key=KEY, options=None, **extra):
    config = sendgrid_config(workspace, server.url, **extra)
    env = {API_KEY_ENV: key} if key else {}
    return make_provider("sendgrid", config, env=env, options=options), config


def fixture_messages(config, issue="merge.md"):
    campaign = make_campaign(config, issue)
    return [
        message_for(campaign, row["email"], row["name"], company=row["company"])
        for row in subscribers()
    ]


def many(config, count: int, issue="merge.md"):
    campaign = make_campaign(config, issue)
    return [message_for(campaign, f"reader{i}@example.org", f"Reader {i}") for i in range(count)]


def test_sendgrid_request_has_the_mail_send_shape(workspace, server):
    provider, config = provider_for(
        workspace,
        server,
        NEWSLETTER_SENDGRID_CATEGORIES="weekly,test",
        NEWSLETTER_SENDGRID_ASM_GROUP_ID="42",
        NEWSLETTER_SEND_FEEDBACK_ID="issue:main:test-weekly",
    )
    messages = fixture_messages(config)
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert len(server.requests) == 1
    assert server.headers[0]["Authorization"] == f"Bearer {KEY}"
    body = server.requests[0]
    assert body["from"] == {"email": "news@example.org", "name": "Test Weekly"}
    assert body["reply_to"] == {"email": "editor@example.org"}
    assert body["headers"] == {
        "List-Id": "Test Weekly <main.example.org>",
        "Feedback-ID": "issue:main:test-weekly",
    }
    assert body["categories"] == ["weekly", "test"]
    assert body["asm"] == {"group_id": 42}
    assert body["tracking_settings"]["click_tracking"] == {"enable": False, "enable_text": False}
    assert body["tracking_settings"]["open_tracking"] == {"enable": False}
    assert "send_at" not in body and "mail_settings" not in body
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "-nlh1-" in body["content"][1]["value"] and "-nlt1-" in body["content"][0]["value"]
    ada = body["personalizations"][0]
    assert ada["to"] == [{"email": "ada@example.org", "name": "Ada Lovelace"}]
    assert ada["subject"] == "News for Ada"
    assert ada["substitutions"]["-nlh1-"] == "Engines &amp; &lt;Co&gt;"
    assert ada["substitutions"]["-nlt1-"] == "Engines & <Co>"
    assert ada["headers"] == messages[0].personal_headers()
    assert ada["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ada["custom_args"] == {
        "issue": "merge",
        "list": "main",
        "recipient": address_id(b"s" * 32, "main", "ada@example.org"),
    }
    every_header = [*body["headers"], *(h for p in body["personalizations"] for h in p["headers"])]
    assert not {h.lower() for h in every_header} & RESERVED_HEADERS


def test_sendgrid_each_recipient_gets_what_smtp_would_send(workspace, server):
    provider, config = provider_for(workspace, server)
    messages = fixture_messages(config)
    with provider:
        provider.send_batch(messages)
    deliveries = server.deliveries()
    assert [d.to_email for d in deliveries] == [m.to_email for m in messages]
    for delivery, message in zip(deliveries, messages, strict=True):
        expected = message.personalized()
        assert delivery.subject == header_safe(message.subject)  # as SMTP's Subject: header
        assert delivery.html == expected.html
        assert delivery.text == expected.text
        assert delivery.headers["List-Unsubscribe"] == message.list_unsubscribe
    assert "Hi Ada from Engines & <Co>," in " ".join(deliveries[0].text.split())
    assert "Engines &amp; &lt;Co&gt;" in deliveries[0].html


def test_sendgrid_accepted_results_carry_the_x_message_id(workspace, server):
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(fixture_messages(config))
    ids = {r.provider_id for r in results}
    assert len(ids) == 1 and None not in ids


def test_sendgrid_batches_at_most_1000_recipients_per_request(workspace, server):
    provider, config = provider_for(workspace, server)
    assert provider.max_batch == 1000
    messages = many(config, 2500)
    results = []
    with provider:
        for start in range(0, len(messages), provider.max_batch):
            results += provider.send_batch(messages[start : start + provider.max_batch])
        results += provider.send_batch(many(config, 1500))  # more than max_batch is split too
    assert all(r.status is Status.ACCEPTED for r in results) and len(results) == 4000
    sizes = [len(body["personalizations"]) for body in server.requests]
    assert sizes == [1000, 1000, 500, 1000, 500]
    assert len(server.deliveries()) == 4000


def test_sendgrid_never_puts_one_address_twice_in_a_request(workspace, server):
    provider, config = provider_for(workspace, server)
    campaign = make_campaign(config)
    messages = [
        message_for(campaign, "ada@example.org", "Ada"),
        message_for(campaign, "grace@example.net", "Grace"),
        message_for(campaign, "ADA@example.org", "Ada again"),
    ]
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert [[p["to"][0]["email"] for p in b["personalizations"]] for b in server.requests] == [
        ["ada@example.org", "grace@example.net"],
        ["ADA@example.org"],
    ]


def test_sendgrid_recipient_over_the_substitution_limit_gets_a_request_of_their_own(
    workspace, server
):
    provider, config = provider_for(workspace, server)
    campaign = make_campaign(config)
    huge = "Big & Co " * 1500  # about 13 KB in each of the HTML and text values
    messages = [
        message_for(campaign, "ada@example.org", "Ada", company="Engines & <Co>"),
        message_for(campaign, "big@example.org", "Bea", company=huge),
        message_for(campaign, "grace@example.net", "Grace"),
    ]
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert len(server.requests) == 2
    alone = next(b for b in server.requests if len(b["personalizations"]) == 1)
    assert "substitutions" not in alone["personalizations"][0]
    by_address = {d.to_email: d for d in server.deliveries()}
    for message in messages:
        expected = message.personalized()
        assert by_address[message.to_email].html == expected.html
        assert by_address[message.to_email].text == expected.text
    assert "Big &amp; Co" in by_address["big@example.org"].html


def test_sendgrid_keeps_each_request_under_the_size_limit_by_construction(workspace, server):
    class SmallRequests(SendgridProvider):
        max_request_bytes = 120_000

    server.payload_limit = SmallRequests.max_request_bytes
    config = sendgrid_config(workspace, server.url)
    SmallRequests.check(config, {API_KEY_ENV: KEY}, SendOptions())
    provider = SmallRequests(config, {API_KEY_ENV: KEY})
    with provider:
        results = provider.send_batch(many(config, 300))
    assert all(r.status is Status.ACCEPTED for r in results)
    assert len(server.requests) > 1
    assert all(0 < size <= 120_000 for status, size in server.attempts)
    assert all(status == 202 for status, size in server.attempts)  # never a 413
    assert len(server.deliveries()) == 300


def test_sendgrid_413_splits_the_batch_and_retries_the_halves(workspace, server):
    provider, config = provider_for(workspace, server)
    messages = many(config, 40)
    with provider:
        provider.send_batch(messages)  # once as it is, to learn the size of the request
        full_size = server.attempts[-1][1]
        server.requests.clear()
        server.payload_limit = int(full_size * 0.8)  # now the whole request is too large
        results = provider.send_batch(messages)
    assert all(r.status is Status.ACCEPTED for r in results)
    assert [status for status, size in server.attempts[1:]] == [413, 202, 202]
    assert sorted(d.to_email for d in server.deliveries()) == sorted(m.to_email for m in messages)


def test_sendgrid_key_refused_for_the_second_half_keeps_the_first_half(workspace, server):
    server.script(413, {"errors": [{"message": "too large"}]})
    server.script(202, headers={"X-Message-Id": "half"})
    server.script(401, {"errors": [{"message": "revoked"}]})
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(many(config, 4))
    assert [r.status for r in results] == [Status.ACCEPTED] * 2 + [Status.TEMPORARY] * 2
    assert {r.provider_id for r in results[:2]} == {"half"}


def test_sendgrid_429_is_temporary_with_retry_after_from_the_reset_header(workspace, server):
    reset = int(time.time()) + 30
    server.script(
        429,
        {"errors": [{"message": "too many requests", "field": None, "help": None}]},
        {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(fixture_messages(config))
        again = provider.send_batch(fixture_messages(config))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert all(25 <= r.retry_after <= 30 for r in results)
    assert results[0].reason == "SendGrid rate limit (429): too many requests"
    assert {r.status for r in again} == {Status.ACCEPTED}


def test_sendgrid_429_without_rate_limit_headers_still_asks_for_a_pause(workspace, server):
    server.script(429, {"errors": [{"message": "too many requests"}]})
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(fixture_messages(config))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert {r.retry_after for r in results} == {1.0}
    assert results[0].reason == "SendGrid rate limit (429): too many requests"


def test_sendgrid_429s_without_headers_never_fail_a_send(workspace, server):
    for _ in range(2):
        server.script(429, {"errors": [{"message": "too many requests"}]})
    config = sendgrid_config(workspace, server.url)
    prepared = sending.prepare(config, workspace / "issues" / "merge.md")
    # One unthrottled failure would end it: every attempt but the last is a bare 429.
    settings = sending.Settings(batch_size=100, max_attempts=1, max_consecutive_failures=1)
    factory = lambda: make_provider("sendgrid", config, env={API_KEY_ENV: KEY})  # noqa: E731
    with sending.open_ledger(config, prepared) as ledger:
        summary = sending.run(prepared, ledger, factory, settings)
    assert [status for status, _ in server.attempts] == [429, 429, 202]
    assert (summary.sent, summary.failed, summary.retry, summary.stopped) == (2, 0, 0, None)
    assert len(server.deliveries()) == 2


# A bare 5xx is an outage, not throttling: it counts towards the attempts that stop a send.
@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(503, {"Retry-After": "7"}, 7.0), (503, {}, None), (500, {}, None), (502, {}, None)],
)
def test_sendgrid_5xx_is_temporary(workspace, server, status, headers, retry_after):
    server.script(status, {"errors": [{"message": "oops", "field": None}]}, headers)
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(fixture_messages(config))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert {r.retry_after for r in results} == {retry_after}
    assert results[0].reason == f"SendGrid server error ({status}): oops"


def test_sendgrid_400_rejects_the_batch_with_sendgrids_error_fields(workspace, server):
    server.script(
        400,
        {"errors": [{"message": "The from email does not contain a valid address.",
                     "field": "from.email", "help": "http://sendgrid.com/docs"}]},
    )  # fmt: skip
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(fixture_messages(config))
    assert {r.status for r in results} == {Status.REJECTED}
    assert results[0].reason == (
        "SendGrid rejected the request (400): "
        "The from email does not contain a valid address. (field from.email)"
    )


def test_sendgrid_400_for_one_recipient_rejects_only_them(workspace, server):
    provider, config = provider_for(workspace, server)
    campaign = make_campaign(config)
    messages = [
        message_for(campaign, "ada@example.org", "Ada"),
        message_for(campaign, "not-an-address", "Nobody"),
        message_for(campaign, "grace@example.net", "Grace"),
    ]
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.REJECTED, Status.ACCEPTED]
    assert "personalizations.1.to.0.email" in results[1].reason
    assert [d.to_email for d in server.deliveries()] == ["ada@example.org", "grace@example.net"]


def test_sendgrid_401_raises_provider_error_naming_the_variable_not_the_key(workspace, server):
    provider, config = provider_for(workspace, server, key="SG.wrong-key-123")
    with provider, pytest.raises(ProviderError) as caught:
        provider.send_batch(fixture_messages(config))
    assert str(caught.value) == "SendGrid refused the API key (401): check SENDGRID_API_KEY"
    assert server.requests == []


def test_sendgrid_403_raises_provider_error_with_sendgrids_reason(workspace, server):
    server.script(
        403,
        {"errors": [{"message": "The from address does not match a verified Sender Identity."}]},
    )
    provider, config = provider_for(workspace, server)
    with provider, pytest.raises(ProviderError) as caught:
        provider.send_batch(fixture_messages(config))
    message = str(caught.value)
    assert message.startswith("SendGrid refused the request (403): The from address does not")
    assert API_KEY_ENV in message and KEY not in message


def test_sendgrid_refused_key_after_an_accepted_request_keeps_the_accepted(workspace, server):
    campaign = make_campaign(sendgrid_config(workspace, server.url))
    messages = [
        message_for(campaign, "ada@example.org", "Ada"),
        message_for(campaign, "grace@example.net", "Grace"),
        message_for(campaign, "ADA@example.org", "Ada again"),  # goes in a second request
    ]
    server.script(202, headers={"X-Message-Id": "first"})
    server.script(401, {"errors": [{"message": "revoked"}]})
    provider, _ = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.ACCEPTED, Status.TEMPORARY]
    assert results[2].reason == "SendGrid refused the API key (401): check SENDGRID_API_KEY"


def test_sendgrid_dropped_connection_after_the_request_is_unknown(workspace, server):
    server.script(drop=True)
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(fixture_messages(config))
    assert {r.status for r in results} == {Status.UNKNOWN}
    assert "after sending" in results[0].reason


def test_sendgrid_timeout_waiting_for_the_answer_is_unknown(workspace, server):
    server.script(202, delay=3.0)
    provider, config = provider_for(workspace, server, NEWSLETTER_SENDGRID_TIMEOUT="0.5")
    with provider:
        results = provider.send_batch(fixture_messages(config))
    assert {r.status for r in results} == {Status.UNKNOWN}


def test_sendgrid_unreachable_host_is_temporary(workspace):
    config = sendgrid_config(workspace, f"http://127.0.0.1:{free_port()}")
    provider = make_provider("sendgrid", config, env={API_KEY_ENV: KEY})
    with provider:
        results = provider.send_batch(fixture_messages(config))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert "cannot reach SendGrid at http://127.0.0.1:" in results[0].reason
    assert "Connection refused" in results[0].reason


def test_sendgrid_sandbox_mode_is_validated_not_delivered(workspace, server):
    provider, config = provider_for(workspace, server, options=SendOptions(sandbox=True))
    with provider:
        results = provider.send_batch(fixture_messages(config))
    assert server.requests[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert "sandbox" in results[0].reason


def test_sendgrid_sandbox_can_come_from_config(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_SENDGRID_SANDBOX="true")
    with provider:
        provider.send_batch(fixture_messages(config))
    assert server.requests[0]["mail_settings"]["sandbox_mode"]["enable"] is True


def test_sendgrid_send_at_schedules_the_request(workspace, server):
    when = int(time.time()) + 3600
    provider, config = provider_for(workspace, server, options=SendOptions(send_at=when))
    with provider:
        provider.send_batch(fixture_messages(config))
    assert server.requests[0]["send_at"] == when


def test_sendgrid_check_refuses_send_at_beyond_72_hours(workspace, server):
    config = sendgrid_config(workspace, server.url)
    options = SendOptions(send_at=int(time.time()) + 73 * 3600)
    with pytest.raises(ConfigError, match="72 hours"):
        make_provider("sendgrid", config, env={API_KEY_ENV: KEY}, options=options)


def test_sendgrid_check_needs_the_api_key(workspace, server):
    config = sendgrid_config(workspace, server.url)
    with pytest.raises(ConfigError, match=API_KEY_ENV):
        make_provider("sendgrid", config, env={})


def test_sendgrid_check_refuses_a_host_that_is_not_a_url(workspace):
    config = sendgrid_config(workspace, "api.eu.sendgrid.com")
    with pytest.raises(ConfigError, match="https://api.eu.sendgrid.com"):
        make_provider("sendgrid", config, env={API_KEY_ENV: KEY})


def test_sendgrid_check_refuses_more_than_ten_categories(workspace, server):
    categories = ",".join(f"c{i}" for i in range(11))
    config = sendgrid_config(workspace, server.url, NEWSLETTER_SENDGRID_CATEGORIES=categories)
    with pytest.raises(ConfigError, match="at most 10"):
        make_provider("sendgrid", config, env={API_KEY_ENV: KEY})


def test_sendgrid_names_are_single_line_and_quoted_when_needed(workspace, server):
    provider, config = provider_for(workspace, server)
    campaign = make_campaign(config)
    messages = [
        message_for(campaign, "eve@example.org", "Eve\r\nBcc: victim@example.com"),
        message_for(campaign, "lee@example.org", "Lee, Ann; Jr."),
    ]
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 2
    eve, lee = (p["to"][0] for p in server.requests[0]["personalizations"])
    assert eve == {"email": "eve@example.org", "name": "Eve Bcc: victim@example.com"}
    assert lee == {"email": "lee@example.org", "name": '"Lee, Ann; Jr."'}
    assert server.requests[0]["personalizations"][0]["subject"] == "News for Eve"


def test_sendgrid_provider_is_registered():
    assert get_provider_class("sendgrid") is SendgridProvider
    assert SendgridProvider.supports_send_at and SendgridProvider.supports_sandbox


def test_sendgrid_posts_the_same_bytes_when_the_read_ahead_encoded_the_recipients(
    workspace, server
):
    provider, config = provider_for(workspace, server)
    sent_both_ways(provider, make_campaign(config))
    assert server.requests[0] == server.requests[1]
    assert server.attempts[0] == server.attempts[1]  # the same number of bytes posted


def test_sendgrid_ignores_what_another_provider_encoded_ahead(workspace, server):
    provider, config = provider_for(workspace, server)
    plain = fixture_messages(config)
    foreign = [dataclasses.replace(m, ahead=("mailgun", ("to", "x@y", '"x@y": {}'))) for m in plain]
    with provider:
        provider.send_batch(plain)
        provider.send_batch(foreign)
    assert server.requests[0] == server.requests[1]
