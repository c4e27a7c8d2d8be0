"""MailgunProvider, through the official SDK, against a loopback Mailgun Messages API."""

from __future__ import annotations

import collections
import email.utils
import json
import time
from pathlib import Path

import pytest
from conftest import free_port
from loopback import make_campaign, message_for, sent_both_ways, subscribers
from loopback_mailgun import MailgunServer
from test_send import write_list
from test_send_e2e import assert_exactly_once, kill_and_resume, ledger_states

from newsletter import sending
from newsletter.config import load_config
from newsletter.errors import ConfigError, ExitCode, ProviderError
from newsletter.message import header_safe
from newsletter.providers import SendOptions, Status, check, make_provider
from newsletter.providers.mailgun.api import API_KEY_ENV
from newsletter.providers.mailgun.mail import MailgunProvider

KEY = "mg-loopback-key-0123"
DOMAIN = "mg.example.org"


@pytest.fixture
def server():
    with MailgunServer(api_key=KEY, domain=DOMAIN) as mailgun:
        yield mailgun


def mailgun_env(server: MailgunServer, **extra: str) -> dict[str, str]:
    return {
        "NEWSLETTER_SEND_PROVIDER": "mailgun",
        "NEWSLETTER_MAILGUN_BASE_URL": server.url,
        "NEWSLETTER_MAILGUN_DOMAIN": DOMAIN,
        "NEWSLETTER_MAILGUN_TIMEOUT": "5",
        API_KEY_ENV: KEY,
        **extra,
    }


def provider_for(workspace: Path, server, options=None, **extra):
    env = mailgun_env(server, **extra)
    config = load_config(workspace / "newsletter.toml", env=env)
    return make_provider("mailgun", config, env=env, options=options), config


def fixture_messages(config):
    campaign = make_campaign(config)
    return [
        message_for(campaign, row["email"], row["name"], company=row["company"])
        for row in subscribers()
    ]


def many(config, count: int):
    campaign = make_campaign(config)
    return [message_for(campaign, f"reader{i}@example.org", f"Reader {i}") for i in range(count)]


# --- accepted ----------------------------------------------------------------------------


def test_mailgun_batch_fills_each_recipient_from_recipient_variables(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_SEND_FEEDBACK_ID="a:b:c")
    messages = fixture_messages(config)
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert len({r.provider_id for r in results}) == 1 and results[0].provider_id
    [request] = server.requests
    assert [v for k, v in request if k == "to"][0] == "Ada Lovelace <ada@example.org>"
    assert server.headers[0]["Content-Type"].startswith("multipart/form-data")
    fields = dict(request)
    assert fields["o:tag"] == "merge"
    assert (fields["v:issue"], fields["v:list"]) == ("merge", "main")
    assert fields["o:tracking"] == "no" and "o:testmode" not in fields
    assert fields["h:List-Unsubscribe"] == "%recipient.unsubscribe%"
    # Content travels once, with placeholders; each recipient's values in the variables.
    assert "%recipient." in fields["html"] and "Engines" not in fields["html"]
    assert list(json.loads(fields["recipient-variables"])) == [m.to_email for m in messages]
    for got, message in zip(server.messages, messages, strict=True):
        expected = message.personalized()
        assert got["address"] == message.to_email
        assert got["subject"] == header_safe(message.subject)
        assert (got["html"], got["text"]) == (expected.html, expected.text)
        assert got["headers"]["List-Unsubscribe"] == message.list_unsubscribe
        assert got["headers"]["List-Id"] == "Test Weekly <main.example.org>"
        assert got["headers"]["Feedback-ID"] == "a:b:c"
        assert got["headers"]["Reply-To"] == "editor@example.org"
        assert got["from"] == "Test Weekly <news@example.org>"
    assert "Engines &amp; &lt;Co&gt;" in server.messages[0]["html"]


def test_mailgun_one_click_header_goes_with_an_https_unsubscribe_url(workspace, server):
    provider, config = provider_for(
        workspace, server, NEWSLETTER_BASE_URL="https://news.example.org"
    )
    messages = many(config, 2)
    with provider:
        provider.send_batch(messages)
    for got, message in zip(server.messages, messages, strict=True):
        assert got["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert got["headers"]["List-Unsubscribe"] == message.list_unsubscribe
        assert message.list_unsubscribe.startswith("<https://news.example.org/unsubscribe/")


def test_mailgun_sends_at_most_1000_recipients_per_request(workspace, server):
    provider, config = provider_for(workspace, server)
    assert provider.max_batch == 1000
    with provider:
        results = provider.send_batch(many(config, 1000))
        results += provider.send_batch(many(config, 2500))  # more than max_batch is split too
    assert all(r.status is Status.ACCEPTED for r in results) and len(results) == 3500
    assert [sum(k == "to" for k, _ in r) for r in server.requests] == [1000, 1000, 1000, 500]
    assert len(server.messages) == 3500


def test_mailgun_planned_size_is_the_multipart_body_sent(workspace, server):
    class Small(MailgunProvider):
        max_request_bytes = 120_000

    server.payload_limit = Small.max_request_bytes
    env = mailgun_env(server)
    config = load_config(workspace / "newsletter.toml", env=env)
    with Small(config, env) as provider:
        three = fixture_messages(config)
        [step], _ = provider.plan(three)
        provider.send_batch(three)
        results = provider.send_batch(many(config, 300))
    assert step.payload.size == server.attempts[0][1]  # planned to the byte
    assert all(r.status is Status.ACCEPTED for r in results)
    sizes = [size for status, size in server.attempts[1:]]
    assert len(sizes) > 1 and max(sizes) <= Small.max_request_bytes
    assert {status for status, _ in server.attempts} == {200}


def test_mailgun_same_address_twice_goes_in_separate_requests(workspace, server):
    provider, config = provider_for(workspace, server)
    campaign = make_campaign(config)
    messages = [message_for(campaign, "dup@example.org"), message_for(campaign, "DUP@example.org")]
    with provider:
        results = provider.send_batch(messages)
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert len(server.requests) == 2


def test_mailgun_eu_and_us_base_urls_are_the_api_roots(workspace):
    env = {API_KEY_ENV: KEY, "NEWSLETTER_MAILGUN_DOMAIN": DOMAIN}
    us = load_config(workspace / "newsletter.toml", env=env)
    eu_env = {**env, "NEWSLETTER_MAILGUN_BASE_URL": "https://api.eu.mailgun.net"}
    eu = load_config(workspace / "newsletter.toml", env=eu_env)
    assert MailgunProvider(us, env).where == f"https://api.mailgun.net/v3/{DOMAIN}/messages"
    assert MailgunProvider(eu, eu_env).where == f"https://api.eu.mailgun.net/v3/{DOMAIN}/messages"
    check("mailgun", eu, env=eu_env)
    bad_env = {**env, "NEWSLETTER_MAILGUN_BASE_URL": "https://api.eu.mailgun.net/v3"}
    bad = load_config(workspace / "newsletter.toml", env=bad_env)
    with pytest.raises(ConfigError, match=r"^\[mailgun\] base_url '.*/v3' has a path"):
        check("mailgun", bad, env=bad_env)


def test_mailgun_domain_of_another_region_names_the_settings(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_MAILGUN_DOMAIN="mg.other.org")
    with provider, pytest.raises(ProviderError, match=r"check \[mailgun\] domain and base_url"):
        provider.send_batch(many(config, 1))


# --- rejected ------------------------------------------------------------------------------


def test_mailgun_400_rejects_the_requests_recipients(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(400, {"message": "'to' parameter is not a valid address. please check"})
    with provider:
        results = provider.send_batch(many(config, 3))
    assert {r.status for r in results} == {Status.REJECTED}
    assert "rejected the request (400): 'to' parameter is not a valid address" in results[0].reason
    assert server.messages == []


def test_mailgun_sender_mismatch_with_loopbacks_400_is_a_rejection(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_FROM_EMAIL="not-an@address")
    with provider:
        results = provider.send_batch(many(config, 1))
    assert results[0].status is Status.REJECTED


def test_mailgun_wrong_key_stops_at_once_and_never_shows_the_key(workspace, server):
    provider, config = provider_for(workspace, server, **{API_KEY_ENV: "mg-wrong-key"})
    with provider, pytest.raises(ProviderError) as caught:
        provider.send_batch(many(config, 2))
    assert str(caught.value) == f"Mailgun refused the API key (401): check {API_KEY_ENV}"
    assert "mg-wrong-key" not in repr(provider._client)


def test_mailgun_403_stops_the_send(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(403, {"message": "Domain mg.example.org is not allowed to send"})
    with provider, pytest.raises(ProviderError, match=r"refused the request \(403\): Domain"):
        provider.send_batch(many(config, 2))


# --- throttled, 5xx, unknown ---------------------------------------------------------------


def test_mailgun_429_is_throttling_with_its_wait(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(429, {"message": "Too many requests"}, {"Retry-After": "3"})
    reset = str(int((time.time() + 60) * 1000))  # X-RateLimit-Reset in milliseconds
    server.script(429, {"message": "Too many requests"}, {"X-RateLimit-Reset": reset})
    server.script(429, {"message": "Too many requests"})
    with provider:
        first = provider.send_batch(many(config, 2))
        second = provider.send_batch(many(config, 2))
        third = provider.send_batch(many(config, 2))
    assert {(r.status, r.retry_after) for r in first} == {(Status.TEMPORARY, 3.0)}
    assert 55 < second[0].retry_after <= 60
    assert {(r.status, r.retry_after) for r in third} == {(Status.TEMPORARY, 1.0)}
    assert "rate limit (429): Too many requests" in first[0].reason
    assert server.messages == [] and len(server.attempts) == 3  # the SDK retried nothing


def test_mailgun_throttled_send_is_waited_out_and_everyone_gets_it_once(workspace, server):
    emails = write_list(workspace, 30)
    server.script(429, {"message": "Too many requests"}, {"Retry-After": "0.2"})
    server.script(429, {"message": "Too many requests"}, {"Retry-After": "0.2"})
    env = mailgun_env(server)
    config = load_config(workspace / "newsletter.toml", env=env)
    prepared = sending.prepare(config, workspace / "issues/merge.md")
    with sending.open_ledger(config, prepared) as ledger:
        summary = sending.run(
            prepared, ledger, lambda: make_provider("mailgun", config, env=env), sending.Settings()
        )
    assert (summary.sent, summary.failed, summary.unknown) == (30, 0, 0)
    assert sorted(server.recipients()) == sorted(emails)


@pytest.mark.parametrize("status", [500, 503])
def test_mailgun_server_error_is_temporary_and_counts_as_a_failure(workspace, server, status):
    provider, config = provider_for(workspace, server)
    server.script(status, {"message": "Internal Server Error"})
    server.script(status, None)
    with provider:
        first = provider.send_batch(many(config, 2))
        second = provider.send_batch(many(config, 2))
    for results in (first, second):
        assert {(r.status, r.retry_after) for r in results} == {(Status.TEMPORARY, None)}
    assert f"server error ({status})" in first[0].reason
    assert len(server.attempts) == 2  # the SDK's own retries are off


def test_mailgun_connection_dropped_after_the_request_is_unknown(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(accept_then_drop=True)
    server.script(drop=True)
    with provider:
        delivered = provider.send_batch(many(config, 2))
        lost = provider.send_batch(many(config, 2))
    for results in (delivered, lost):
        assert {r.status for r in results} == {Status.UNKNOWN}
        assert "no answer from Mailgun" in results[0].reason
    assert len(server.messages) == 2 and len(server.attempts) == 2  # never sent again


def test_mailgun_timeout_waiting_for_the_answer_is_unknown(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_MAILGUN_TIMEOUT="0.3")
    server.script(delay=2.0)
    with provider:
        results = provider.send_batch(many(config, 2))
    assert {r.status for r in results} == {Status.UNKNOWN}


def test_mailgun_refused_connection_is_temporary(workspace):
    port = free_port()
    env = {
        API_KEY_ENV: KEY,
        "NEWSLETTER_MAILGUN_DOMAIN": DOMAIN,
        "NEWSLETTER_MAILGUN_BASE_URL": f"http://127.0.0.1:{port}",
    }
    config = load_config(workspace / "newsletter.toml", env=env)
    with make_provider("mailgun", config, env=env) as provider:
        results = provider.send_batch(many(config, 2))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert results[0].reason.startswith(f"cannot reach Mailgun at http://127.0.0.1:{port}/v3/")


# --- settings, --at, --sandbox -------------------------------------------------------------


def test_mailgun_check_needs_the_key_and_the_domain(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    with pytest.raises(ConfigError, match=f"^{API_KEY_ENV} is not set"):
        check("mailgun", config, env={})
    with pytest.raises(ConfigError, match=r"^\[mailgun\] domain is not set"):
        check("mailgun", config, env={API_KEY_ENV: KEY})


def test_mailgun_key_in_the_config_file_is_refused(workspace):
    path = workspace / "newsletter.toml"
    path.write_text(path.read_text() + '\n[mailgun]\napi_key = "mg-secret"\n')
    with pytest.raises(ConfigError, match=f"set {API_KEY_ENV} in the environment"):
        load_config(path, env={})


def test_mailgun_schedules_with_deliverytime(workspace, server):
    at = int(time.time()) + 3600
    provider, config = provider_for(workspace, server, options=SendOptions(send_at=at))
    with provider:
        results = provider.send_batch(many(config, 2))
    assert {r.status for r in results} == {Status.ACCEPTED}
    when = dict(server.requests[0])["o:deliverytime"]
    assert email.utils.parsedate_to_datetime(when).timestamp() == at
    assert MailgunProvider.max_schedule_ahead == 72 * 3600


def test_mailgun_test_mode_is_accepted_and_delivers_nothing(workspace, server):
    provider, config = provider_for(workspace, server, options=SendOptions(sandbox=True))
    with provider:
        results = provider.send_batch(many(config, 3))
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert "test mode: accepted by Mailgun, not delivered" in results[0].reason
    assert dict(server.requests[0])["o:testmode"] == "yes"
    assert server.messages == [] and len(server.tested) == 3


def test_send_with_provider_mailgun_and_sandbox_from_the_command_line(
    workspace, server, monkeypatch
):
    from typer.testing import CliRunner

    from newsletter.cli import app

    for name, value in mailgun_env(server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NEWSLETTER_SEND_PROVIDER")  # chosen by --provider alone
    args = ["send", "issues/merge.md", "--provider", "mailgun", "--sandbox", "--yes"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == ExitCode.OK, result.output
    assert KEY not in result.output
    assert server.messages == [] and len(server.tested) == 2  # the list's subscribed two
    assert {dict(r)["o:testmode"] for r in server.requests} == {"yes"}


def test_mailgun_413_splits_the_request_until_it_fits(workspace, server):
    provider, config = provider_for(workspace, server)
    server.payload_limit = 40_000  # smaller than the provider believes
    with provider:
        results = provider.send_batch(many(config, 400))
    assert all(r.status is Status.ACCEPTED for r in results)
    assert 413 in {s for s, _ in server.attempts}
    assert sorted(server.recipients()) == sorted(f"reader{i}@example.org" for i in range(400))


# --- killed and resumed --------------------------------------------------------------------


def test_mailgun_send_killed_at_several_points_resumes_without_loss_or_duplicates(workspace):
    emails = write_list(workspace, 4000)

    def slow():
        from loopback_mailgun import MgAction

        return MgAction(delay=0.03)  # a request takes a while: kills land mid-request

    with MailgunServer(api_key=KEY, domain=DOMAIN, faults=slow) as server:
        env = {**mailgun_env(server), "NEWSLETTER_SEND_BATCH_SIZE": "100"}
        kills = [500, 1500, 2600, 3400]
        done = kill_and_resume(workspace, env, lambda: len(server.messages), kills, 2 * 100)
        received = server.recipients()
    assert done.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), done.stderr
    counts = collections.Counter(received)
    assert max(counts.values()) == 1
    unknown = assert_exactly_once(emails, received, ledger_states(workspace))
    assert len(unknown) <= len(kills) * 2 * 100


def test_mailgun_sends_the_same_request_when_the_read_ahead_encoded_the_recipients(
    workspace, server
):
    provider, config = provider_for(workspace, server)
    sent_both_ways(provider, make_campaign(config))
    assert server.requests[0] == server.requests[1]
