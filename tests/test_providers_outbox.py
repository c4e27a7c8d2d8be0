"""OutboxProvider: one .eml file per recipient under outbox/<issue-slug>/, written atomically."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from loopback import make_campaign, message_for, subscribers

from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.providers import (
    SendOptions,
    Status,
    UnsupportedFeature,
    get_provider_class,
    make_provider,
)
from newsletter.providers.outbox import OutboxProvider


def undated(data: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"", data)


def test_outbox_writes_one_eml_per_recipient_with_the_exact_message(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    campaign = make_campaign(config)
    messages = [
        message_for(campaign, row["email"], row["name"], company=row["company"])
        for row in subscribers()
    ]
    with make_provider("outbox", config, env={}) as provider:
        results = provider.send_batch(messages)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    folder = workspace / "outbox" / "merge"
    files = sorted(folder.iterdir())
    assert len(files) == 3 and all(f.suffix == ".eml" for f in files)
    for message, result in zip(messages, results, strict=True):
        path = folder / result.provider_id.rpartition("/")[2]
        assert result.provider_id == str(path)
        data = path.read_bytes()
        assert undated(data) == undated(message.as_bytes())
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["To"].addresses[0].addr_spec == message.to_email


def test_outbox_file_names_are_unique_and_safe(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    campaign = make_campaign(config)
    addresses = ["ada@example.org", "ada@example.net", "../../etc/passwd@example.org"]
    with make_provider("outbox", config, env={}) as provider:
        results = provider.send_batch([message_for(campaign, a) for a in addresses])
    names = [r.provider_id.rpartition("/")[2] for r in results]
    assert len(set(names)) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+-[A-Za-z0-9_-]+\.eml", n) for n in names)
    assert {p.parent for p in (workspace / "outbox").rglob("*.eml")} == {
        workspace / "outbox" / "merge"
    }


def test_outbox_sending_again_replaces_files_and_leaves_no_temporaries(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    campaign = make_campaign(config)
    messages = [message_for(campaign, "ada@example.org", "Ada")]
    with make_provider("outbox", config, env={}) as provider:
        provider.send_batch(messages)
        provider.send_batch(messages)
    assert [p.name.endswith(".eml") for p in (workspace / "outbox" / "merge").iterdir()] == [True]


def test_outbox_keeps_every_message_to_the_same_recipient(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    campaign = make_campaign(config)
    messages = [message_for(campaign, "ada@example.org", "Ada") for _ in range(3)]
    with make_provider("outbox", config, env={}) as provider:
        provider.send_batch(messages[:1])
        provider.send_batch(messages[1:])
    files = list((workspace / "outbox" / "merge").iterdir())
    assert len(files) == 3
    kept = {email.message_from_bytes(f.read_bytes())["Message-ID"] for f in files}
    assert kept == {m.message_id for m in messages}


def test_outbox_is_the_default_provider(workspace):
    config = load_config(workspace / "newsletter.toml", env={})
    assert config.send.provider == "outbox"
    assert get_provider_class(config.send.provider) is OutboxProvider


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            SendOptions(send_at=2_000_000_000),
            "the outbox provider cannot schedule (--at); use sendgrid or mailgun, "
            "or run `newsletter send` from cron at that time",
        ),
        (
            SendOptions(sandbox=True),
            "the outbox provider has no sandbox mode (--sandbox); use sendgrid or postmark or mailgun, or drop --sandbox",
        ),
    ],
)
def test_outbox_refuses_send_options_it_cannot_honour(workspace, options, message):
    config = load_config(workspace / "newsletter.toml", env={})
    with pytest.raises(UnsupportedFeature) as caught:
        make_provider("outbox", config, env={}, options=options)
    assert str(caught.value) == message
    assert isinstance(caught.value, ConfigError)
    assert not (workspace / "outbox").exists()
    assert not OutboxProvider.supports_send_at and not OutboxProvider.supports_sandbox
