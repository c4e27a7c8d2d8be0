"""SesProvider, through boto3's sesv2 client, against a loopback SES v2 SendEmail server."""

from __future__ import annotations

import collections
import email
from pathlib import Path

import pytest
from conftest import free_port
from loopback import make_campaign, message_for, subscribers
from loopback_ses import SesAction, SesServer
from test_send import write_list
from test_send_e2e import assert_exactly_once, cli, kill_and_resume, ledger_states

from newsletter.config import load_config
from newsletter.errors import ConfigError, ExitCode, ProviderError
from newsletter.providers import SendOptions, Status, check, make_provider

KEY_ID = "AKIALOOPBACK0000TEST"
SECRET = "loopback-secret-access-key-0123456789"


@pytest.fixture
def server():
    with SesServer(key_id=KEY_ID) as ses:
        yield ses


def ses_env(server: SesServer, **extra: str) -> dict[str, str]:
    return {
        "NEWSLETTER_SEND_PROVIDER": "ses",
        "NEWSLETTER_SES_REGION": "eu-west-1",
        "NEWSLETTER_SES_ENDPOINT_URL": server.url,
        "NEWSLETTER_SES_TIMEOUT": "5",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        **extra,
    }


def provider_for(workspace: Path, server, options=None, **extra):
    env = ses_env(server, **extra)
    config = load_config(workspace / "newsletter.toml", env=env)
    return make_provider("ses", config, env=env, options=options), config


def many(config, count: int):
    campaign = make_campaign(config)
    return [message_for(campaign, f"reader{i}@example.org", f"Reader {i}") for i in range(count)]


# --- accepted, rejected ----------------------------------------------------------------------


def test_ses_sends_our_exact_message_with_its_unsubscribe_headers_and_configuration_set(
    workspace, server
):
    provider, config = provider_for(
        workspace, server, NEWSLETTER_SES_CONFIGURATION_SET="newsletters"
    )
    campaign = make_campaign(config)
    messages = [
        message_for(campaign, r["email"], r["name"], company=r["company"]) for r in subscribers()
    ]
    with provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * len(messages)
    assert None not in {r.provider_id for r in results}
    assert [m.to for m in server.messages] == [[m.to_email] for m in messages]
    sent = server.messages[0]
    assert sent.configuration_set == "newsletters" and sent.sender == config.from_email
    parsed = email.message_from_bytes(sent.raw)
    assert parsed["List-Unsubscribe"].replace("\r\n", "").replace(" ", "") == messages[
        0
    ].list_unsubscribe.replace(" ", "")
    assert parsed["List-Unsubscribe-Post"] == messages[0].personal_headers().get(
        "List-Unsubscribe-Post"
    )
    assert parsed["Message-ID"] == messages[0].message_id
    assert set(sent.tags) == {"issue", "list"}


def test_ses_message_rejected_is_rejected_and_the_rest_go_on(workspace, server):
    provider, config = provider_for(workspace, server)
    server.rejected["reader1@example.org"] = "Address blacklisted."
    with provider:
        results = provider.send_batch(many(config, 3))
    assert [r.status for r in results] == [Status.ACCEPTED, Status.REJECTED, Status.ACCEPTED]
    assert results[1].reason == "SES refused this message (MessageRejected: Address blacklisted.)"
    assert server.recipients() == ["reader0@example.org", "reader2@example.org"]


def test_ses_unverified_sender_refused_for_every_message_is_rejected_per_message(workspace, server):
    server.identities = {"elsewhere.org"}
    provider, config = provider_for(workspace, server)
    with provider:
        results = provider.send_batch(many(config, 2))
    assert {r.status for r in results} == {Status.REJECTED}
    assert "Email address is not verified" in results[0].reason


def test_ses_account_suspended_after_some_were_accepted_keeps_those_and_stops(workspace, server):
    provider, config = provider_for(workspace, server)
    server.actions.extend([SesAction(), SesAction(400, "AccountSuspendedException")])
    with provider:
        results = provider.send_batch(many(config, 4))
    assert [r.status for r in results] == [Status.ACCEPTED] + [Status.TEMPORARY] * 3
    assert "the SES account is suspended" in results[1].reason
    assert len(server.messages) == 1 and len(server.attempts) == 2


def test_ses_unknown_configuration_set_stops_at_once_naming_the_setting(workspace, server):
    provider, config = provider_for(workspace, server, NEWSLETTER_SES_CONFIGURATION_SET="nope")
    with provider, pytest.raises(ProviderError, match=r"check \[ses\] configuration_set"):
        provider.send_batch(many(config, 2))


def test_ses_wrong_credentials_stop_at_once_and_never_show_the_secret(workspace, server):
    provider, config = provider_for(workspace, server, AWS_ACCESS_KEY_ID="AKIAWRONGWRONGWRONG0")
    with provider, pytest.raises(ProviderError) as caught:
        provider.send_batch(many(config, 2))
    assert "check AWS_ACCESS_KEY_ID" in str(caught.value) and SECRET not in str(caught.value)
    assert server.messages == []


def test_ses_smtputf8_address_is_refused_before_sending(workspace, server):
    provider, config = provider_for(workspace, server)
    campaign = make_campaign(config)
    utf8 = message_for(campaign, "jörg@example.org", "Jörg")
    with provider:
        [result] = provider.send_batch([utf8])
    assert result.status == Status.REJECTED and "SMTPUTF8" in result.reason
    assert server.attempts == []


# --- throttled, 5xx, unknown -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["TooManyRequestsException", "Throttling", "LimitExceededException"]
)
def test_ses_throttling_is_temporary_with_a_wait(workspace, server, code):
    provider, config = provider_for(workspace, server)
    server.script(429 if code == "TooManyRequestsException" else 400, code, {"Retry-After": "2"})
    with provider:
        [result] = provider.send_batch(many(config, 1))
    assert (result.status, result.retry_after) == (Status.TEMPORARY, 2.0)
    assert f"SES throttled ({code}" in result.reason
    assert server.attempts == [429 if code == "TooManyRequestsException" else 400]  # not retried


def test_ses_send_waits_out_throttling_and_delivers_everyone_once(workspace):
    emails = write_list(workspace, 60)
    throttled = iter([SesAction(429, "TooManyRequestsException", {"Retry-After": "0.2"})] * 5)

    with SesServer(key_id=KEY_ID, faults=lambda: next(throttled, None)) as server:
        process = cli(workspace, ses_env(server))
        out, err = process.communicate(timeout=120)
        received = server.recipients()
        attempts = list(server.attempts)
    assert process.returncode == ExitCode.OK, out + err
    assert sorted(received) == sorted(emails)
    assert attempts.count(429) == 5


@pytest.mark.parametrize("status", [500, 503])
def test_ses_server_error_is_temporary(workspace, server, status):
    provider, config = provider_for(workspace, server)
    server.script(status, "InternalFailure")
    with provider:
        results = provider.send_batch(many(config, 2))
    assert results[0].status == Status.TEMPORARY and results[0].retry_after is None
    assert f"SES server error ({status}" in results[0].reason
    assert results[1].status == Status.ACCEPTED
    assert server.attempts == [status, 200]  # boto3 did not retry on its own


def test_ses_connection_dropped_after_the_request_is_unknown_and_not_sent_again(workspace, server):
    provider, config = provider_for(workspace, server)
    server.script(accept_then_drop=True)
    server.script(drop=True)
    with provider:
        results = provider.send_batch(many(config, 3))
    assert [r.status for r in results] == [Status.UNKNOWN, Status.UNKNOWN, Status.ACCEPTED]
    assert "no answer from http://127.0.0.1" in results[0].reason
    assert server.attempts == [0, 0, 200]  # one attempt each: boto3's retries are off
    assert len(server.messages) == 2


def test_ses_refused_connection_is_temporary_for_the_whole_batch(workspace):
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "NEWSLETTER_SES_REGION": "eu-west-1",
           "NEWSLETTER_SES_ENDPOINT_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    config = load_config(workspace / "newsletter.toml", env=env)
    with make_provider("ses", config, env=env) as provider:
        results = provider.send_batch(many(config, 3))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert results[0].reason.startswith(f"cannot reach http://127.0.0.1:{port}")


# --- settings, --at, --sandbox ---------------------------------------------------------------


def test_ses_check_needs_a_region_and_both_keys(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    with pytest.raises(ConfigError, match=r"^\[ses\] region is not set"):
        check("ses", config, env={})
    env = {"NEWSLETTER_SES_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": KEY_ID}
    config = load_config(workspace / "newsletter.toml", env=env)
    with pytest.raises(ConfigError, match="set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        check("ses", config, env=env)


def test_ses_secret_key_in_the_config_file_is_refused(workspace):
    path = workspace / "newsletter.toml"
    path.write_text(path.read_text() + '\n[ses]\naws_secret_access_key = "x"\n')
    with pytest.raises(ConfigError, match="set AWS_SECRET_ACCESS_KEY in the environment"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SendOptions(send_at=1), r"^the ses provider cannot schedule \(--at\)"),
        (SendOptions(sandbox=True), r"^the ses provider has no sandbox mode \(--sandbox\)"),
    ],
)
def test_ses_refuses_at_and_sandbox(workspace, server, options, message):
    config = load_config(workspace / "newsletter.toml", env=ses_env(server))
    with pytest.raises(ConfigError, match=message):
        check("ses", config, env=ses_env(server), options=options)


# --- killed and resumed ----------------------------------------------------------------------


def test_ses_send_killed_at_several_points_resumes_without_loss_or_duplicates(workspace):
    emails = write_list(workspace, 1500)
    with SesServer(key_id=KEY_ID, faults=lambda: SesAction(delay=0.002)) as server:
        env = {**ses_env(server), "NEWSLETTER_SEND_BATCH_SIZE": "50"}
        kills = [200, 600, 1000]
        workers = 4
        done = kill_and_resume(workspace, env, lambda: len(server.messages), kills, workers)
        received = server.recipients()
    assert done.returncode in (ExitCode.OK, ExitCode.INCOMPLETE), done.stderr
    assert max(collections.Counter(received).values()) == 1
    unknown = assert_exactly_once(emails, received, ledger_states(workspace))
    assert len(unknown) <= len(kills) * workers


def test_ses_without_any_aws_credentials_stops_before_sending(
    workspace, server, tmp_path, monkeypatch
):
    # boto3's chain reads the process environment: point it at nothing.
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    env = {k: v for k, v in ses_env(server).items() if not k.startswith("AWS_")}
    config = load_config(workspace / "newsletter.toml", env=env)
    with (
        make_provider("ses", config, env=env) as provider,
        pytest.raises(ProviderError, match="^no AWS credentials found: set AWS_ACCESS_KEY_ID"),
    ):
        provider.send_batch(many(config, 2))
    assert server.attempts == []
