"""PostmarkProvider, through postmarker, against a loopback Postmark batch Email API."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from conftest import free_port
from loopback import make_campaign, message_for, subscribers
from loopback_postmark import PostmarkServer
from test_send import write_list
from test_send_e2e import assert_exactly_once, kill_and_resume, ledger_states

from newsletter import sending
from newsletter.config import load_config
from newsletter.errors import ConfigError, ExitCode, ProviderError
from newsletter.message import header_safe
from newsletter.providers import SendOptions, Status, check, make_provider
from newsletter.providers.postmark.api import TOKEN_ENV
from newsletter.providers.postmark.mail import PostmarkProvider
from newsletter.tokens import address_id

TOKEN = "pm-loopback-token-0123"


@pytest.fixture
def server():
    with PostmarkServer(token=TOKEN) as postmark:
        yield postmark


def postmark_env(server: PostmarkServer, **extra: str) -> dict[str, str]:
    return {
        "NEWSLETTER_SEND_PROVIDER": "postmark",
        "NEWSLETTER_POSTMARK_HOST": server.url,
        "NEWSLETTER_POSTMARK_TIMEOUT": "5",
        TOKEN_ENV: TOKEN,
        **extra,
    }


def provider_for(workspace: Path, server, options=None, **extra):
    env = postmark_env(server, **extra)
    config = load_config(workspace / "newsletter.toml", env=env)
    return make_provider("postmark", config, env=env, options=options), config


def fixture_messages(config):
    campaign = make_campaign(config)
    return [
        message_for(campaign, row["email"], row["name"], company=row["company"])
        for row in subscribers()
    ]


def many(config, count: int):
    campaign = make_campaign(config)
    return [message_for(campaign, f"reader{i}@example.org", f"Reader {i}") for i in range(count)]


def headers_of(message: dict) -> dict[str, str]:
    return {h["Name"]: h["Value"] for h in message["Headers"]}


# --- accepted ----------------------------------------------------------------------------


def test_postmark_batch_goes_to_the_broadcast_stream_with_unsubscribe_headers(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_SEND_FEEDBACK_ID="a:b:c")
    messages = fixture_messages(config)
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert len({r.provider_id for r in results}) == 3 and None not in {
        r.provider_id for r in results
    }
    [request] = server.requests
    assert server.headers[0]["X-Postmark-Server-Token"] == TOKEN
    ada = request[0]
    assert ada["MessageStream"] == "broadcast"
    assert ada["From"] == "Test Weekly <news@example.org>"
    assert ada["To"] == "Ada Lovelace <ada@example.org>"
    assert ada["ReplyTo"] == "editor@example.org"
    assert (ada["TrackOpens"], ada["TrackLinks"]) == (False, "None")
    assert ada["Tag"] == "merge"
    assert ada["Metadata"] == {
        "issue": "merge",
        "list": "main",
        "recipient": address_id(b"s" * 32, "main", "ada@example.org"),
    }
    headers = headers_of(ada)
    assert headers["List-Unsubscribe"] == messages[0].list_unsubscribe
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == "Test Weekly <main.example.org>"
    assert headers["Feedback-ID"] == "a:b:c"
    for sent, message in zip(request, messages, strict=True):
        expected = message.personalized()
        assert sent["Subject"] == header_safe(message.subject)
        assert (sent["HtmlBody"], sent["TextBody"]) == (expected.html, expected.text)
    assert "Engines &amp; &lt;Co&gt;" in ada["HtmlBody"]


def test_postmark_message_stream_is_overridable_from_the_environment(workspace, server):
    server.streams.add("weekly-news")
    provider, config = provider_for(
        workspace, server, NEWSLETTER_POSTMARK_MESSAGE_STREAM="weekly-news"
    )
    with provider:
        assert provider.send_batch(many(config, 2))[0].status is Status.ACCEPTED
    assert {m["MessageStream"] for m in server.messages} == {"weekly-news"}


def test_postmark_sends_at_most_500_messages_per_request(workspace, server):
    provider, config = provider_for(workspace, server)
    assert provider.max_batch == 500
    with provider:
        results = provider.send_batch(many(config, 500))
        results += provider.send_batch(many(config, 1200))  # more than max_batch is split too
    assert all(r.status is Status.ACCEPTED for r in results) and len(results) == 1700
    assert [len(body) for body in server.requests] == [500, 500, 500, 200]


def test_postmark_keeps_each_request_under_the_size_limit_by_construction(workspace, server):
    class SmallRequests(PostmarkProvider):
        max_request_bytes = 200_000

    server.payload_limit = SmallRequests.max_request_bytes
    env = postmark_env(server)
    config = load_config(workspace / "newsletter.toml", env=env)
    with SmallRequests(config, env) as provider:
        results = provider.send_batch(many(config, 120))
    assert all(r.status is Status.ACCEPTED for r in results)
    sizes = [size for status, size in server.attempts]
    assert len(sizes) > 1 and max(sizes) <= SmallRequests.max_request_bytes
    assert {status for status, _ in server.attempts} == {200}
    # The planned size is the body postmarker sends (plus the ", " counted for the first).
    steps, _ = SmallRequests(config, env).plan(many(config, 3))
    planned = steps[0].payload
    body = json.dumps(
        [
            {
                **i.payload,
                "Headers": [{"Name": k, "Value": v} for k, v in i.payload["Headers"].items()],
                "Attachments": [],
            }
            for i in planned.items
        ]
    )
    assert planned.size == len(body) + 2


def test_postmark_413_splits_the_request_until_it_fits(workspace, server):
    provider, config = provider_for(workspace, server)
    server.payload_limit = 150_000  # smaller than the provider believes
    with provider:
        results = provider.send_batch(many(config, 40))
    assert all(r.status is Status.ACCEPTED for r in results)
    assert 413 in {s for s, _ in server.attempts}
    assert sorted(server.recipients()) == sorted(f"reader{i}@example.org" for i in range(40))


# --- rejected and partial ----------------------------------------------------------------


def test_postmark_200_with_some_messages_refused_is_a_partial_result(workspace, server):
    provider, config = provider_for(workspace, server)
    messages = many(config, 5)
    server.inactive.add("reader1@example.org")
    server.refuse_once["reader3@example.org"] = (300, "Invalid 'To' address: 'reader3'.")
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [
        Status.ACCEPTED,
        Status.REJECTED,
        Status.ACCEPTED,
        Status.REJECTED,
        Status.ACCEPTED,
    ]
    inactive, invalid = results[1], results[3]
    assert inactive.hard_bounce and "(406)" in inactive.reason
    assert "marked as inactive" in inactive.reason
    assert not invalid.hard_bounce and "(300)" in invalid.reason
    assert len(server.requests) == 1
    assert sorted(server.recipients()) == [f"reader{i}@example.org" for i in (0, 2, 4)]


def test_postmark_inactive_recipient_is_suppressed_and_the_rest_of_the_send_goes_on(
    workspace, server
):
    emails = write_list(workspace, 30)
    server.inactive.add(emails[7])
    env = postmark_env(server)
    config = load_config(workspace / "newsletter.toml", env=env)
    prepared = sending.prepare(config, workspace / "issues/merge.md")
    with sending.open_ledger(config, prepared) as ledger:
        summary = sending.run(
            prepared, ledger, lambda: make_provider("postmark", config, env=env), sending.Settings()
        )
    assert (summary.sent, summary.failed, summary.unknown) == (29, 1, 0)
    suppressions = (workspace / "subscribers" / "suppressions.csv").read_text()
    assert emails[7] in suppressions and "hard bounce" in suppressions


def test_postmark_message_refused_per_message_for_throttling_is_retried_later(workspace, server):
    provider, config = provider_for(workspace, server)
    server.refuse_once["reader0@example.org"] = (429, "Rate limit exceeded.")
    with provider:
        [first, second] = provider.send_batch(many(config, 2))
    assert first.status is Status.TEMPORARY and first.retry_after == 1.0
    assert second.status is Status.ACCEPTED


def test_postmark_422_for_the_whole_request_rejects_its_messages(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(422, {"ErrorCode": 300, "Message": "Invalid email request."})
    with provider:
        results = provider.send_batch(many(config, 3))
    assert {r.status for r in results} == {Status.REJECTED}
    assert "(422, 300: Invalid email request.)" in results[0].reason
    assert not any(r.hard_bounce for r in results)


def test_postmark_sender_signature_missing_stops_the_send_with_postmarks_words(workspace, server):
    server.senders = {"someone@else.example"}
    provider, config = provider_for(workspace, server)
    with provider, pytest.raises(ProviderError) as caught:
        provider.send_batch(many(config, 3))
    assert "from_email is not a Sender Signature on this Postmark server (400:" in str(caught.value)
    assert server.messages == []


def test_postmark_account_error_after_some_were_accepted_keeps_those_and_stops(workspace, server):
    provider, config = provider_for(workspace, server)
    server.refuse_once["reader1@example.org"] = (405, "Not allowed to send: out of credits.")
    with provider:
        results = provider.send_batch(many(config, 3))
    assert [r.status for r in results] == [Status.ACCEPTED, Status.TEMPORARY, Status.ACCEPTED]
    assert "may not send" in results[1].reason


def test_postmark_wrong_token_stops_at_once_and_never_shows_the_token(workspace, server):
    provider, config = provider_for(workspace, server, **{TOKEN_ENV: "pm-wrong-token"})
    with provider, pytest.raises(ProviderError) as caught:
        provider.send_batch(many(config, 2))
    assert str(caught.value) == f"Postmark refused the server token (401): check {TOKEN_ENV}"
    assert "pm-wrong-token" not in repr(provider._client)


def test_postmark_host_answering_404_names_the_setting(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(404, {"ErrorCode": 404, "Message": "Not found."})
    with provider, pytest.raises(ProviderError, match=r"check \[postmark\] host$"):
        provider.send_batch(many(config, 1))


def test_postmark_host_with_a_path_is_refused_before_sending(workspace, server):
    env = postmark_env(server, NEWSLETTER_POSTMARK_HOST=server.url + "/v9")
    config = load_config(workspace / "newsletter.toml", env=env)
    with pytest.raises(ConfigError, match=r"^\[postmark\] host '.*/v9' has a path"):
        check("postmark", config, env=env)


# --- throttled, 5xx, unknown ---------------------------------------------------------------


def test_postmark_429_is_throttling_with_its_wait(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(429, {"ErrorCode": 429, "Message": "Rate limit exceeded."}, {"Retry-After": "3"})
    server.script(429, {"ErrorCode": 429, "Message": "Rate limit exceeded."})
    with provider:
        first = provider.send_batch(many(config, 2))
        second = provider.send_batch(many(config, 2))
    assert {(r.status, r.retry_after) for r in first} == {(Status.TEMPORARY, 3.0)}
    assert {(r.status, r.retry_after) for r in second} == {(Status.TEMPORARY, 1.0)}
    assert "rate limit (429): 429: Rate limit exceeded." in first[0].reason
    assert server.messages == []


@pytest.mark.parametrize("status", [500, 503])
def test_postmark_server_error_is_temporary_and_counts_as_a_failure(workspace, server, status):
    provider, config = provider_for(workspace, server)
    server.script(status, {"ErrorCode": 0, "Message": "Internal Server Error"})
    server.script(status, None)  # without a JSON body
    with provider:
        first = provider.send_batch(many(config, 2))
        second = provider.send_batch(many(config, 2))
    for results in (first, second):
        assert {(r.status, r.retry_after) for r in results} == {(Status.TEMPORARY, None)}
    assert f"server error ({status})" in first[0].reason


def test_postmark_connection_dropped_after_the_request_is_unknown(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(accept_then_drop=True)
    server.script(drop=True)
    with provider:
        delivered = provider.send_batch(many(config, 2))
        lost = provider.send_batch(many(config, 2))
    for results in (delivered, lost):
        assert {r.status for r in results} == {Status.UNKNOWN}
        assert "no answer from Postmark" in results[0].reason
    assert len(server.messages) == 2  # the first request went through, the second did not


def test_postmark_timeout_waiting_for_the_answer_is_unknown(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_POSTMARK_TIMEOUT="0.3")
    server.script(delay=2.0)
    with provider:
        results = provider.send_batch(many(config, 2))
    assert {r.status for r in results} == {Status.UNKNOWN}


def test_postmark_refused_connection_is_temporary(workspace):
    port = free_port()
    env = {TOKEN_ENV: TOKEN, "NEWSLETTER_POSTMARK_HOST": f"http://127.0.0.1:{port}"}
    config = load_config(workspace / "newsletter.toml", env=env)
    with make_provider("postmark", config, env=env) as provider:
        results = provider.send_batch(many(config, 2))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert results[0].reason.startswith(f"cannot reach Postmark at http://127.0.0.1:{port}")


# --- settings, --at, --sandbox -------------------------------------------------------------


def test_postmark_check_needs_the_token_and_a_url(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    with pytest.raises(ConfigError, match=f"^{TOKEN_ENV} is not set: copy the Server API token"):
        check("postmark", config, env={})
    bad = load_config(workspace / "newsletter.toml", env={"NEWSLETTER_POSTMARK_HOST": "api"})
    with pytest.raises(ConfigError, match=r"\[postmark\] host 'api' is not a URL"):
        check("postmark", bad, env={TOKEN_ENV: TOKEN})


def test_postmark_token_in_the_config_file_is_refused(workspace):
    path = workspace / "newsletter.toml"
    path.write_text(path.read_text() + '\n[postmark]\nserver_token = "pm-secret"\n')
    with pytest.raises(ConfigError, match=f"set {TOKEN_ENV} in the environment"):
        load_config(path, env={})


def test_postmark_cannot_schedule_and_says_so(workspace, server):
    config = load_config(workspace / "newsletter.toml", env=postmark_env(server))
    with pytest.raises(ConfigError, match=r"^the postmark provider cannot schedule \(--at\); use"):
        check("postmark", config, env=postmark_env(server), options=SendOptions(send_at=1))


def test_postmark_sandbox_uses_the_test_token_and_delivers_nothing(workspace, server):
    provider, config = provider_for(workspace, server, options=SendOptions(sandbox=True))
    with provider:
        results = provider.send_batch(many(config, 3))
    assert {r.status for r in results} == {Status.ACCEPTED}
    assert "validated by Postmark, not delivered" in results[0].reason
    assert server.headers[0]["X-Postmark-Server-Token"] == "POSTMARK_API_TEST"
    assert server.messages == [] and len(server.tested) == 3


# --- killed and resumed --------------------------------------------------------------------


def test_postmark_send_killed_at_several_points_resumes_without_loss_or_duplicates(workspace):
    emails = write_list(workspace, 4000)

    def slow():
        from loopback_postmark import PmAction

        return PmAction(delay=0.03)  # a request takes a while: kills land mid-request

    with PostmarkServer(token=TOKEN, faults=slow) as server:
        env = {**postmark_env(server), "NEWSLETTER_SEND_BATCH_SIZE": "100"}
        kills = [500, 1500, 2600, 3400]
        done = kill_and_resume(workspace, env, lambda: len(server.messages), kills, 2 * 100)
        received = server.recipients()
    assert done.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), done.stderr
    counts = collections.Counter(received)
    assert max(counts.values()) == 1
    unknown = assert_exactly_once(emails, received, ledger_states(workspace))
    assert len(unknown) <= len(kills) * 2 * 100
