"""newsletter.toml loading: defaults, env overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import config_from_dict, find_config, load_config
from newsletter.errors import ConfigError

BASE = {"name": "N", "from_email": "n@example.org"}


def test_environment_overrides_top_level_and_section_keys_with_types():
    env = {
        "NEWSLETTER_BASE_URL": "https://env.example",
        "NEWSLETTER_SMTP_PORT": "2525",
        "NEWSLETTER_SEND_TEST_TO": "a@example.org, b@example.org",
        "NEWSLETTER_SENDGRID_SANDBOX": "yes",
        "NEWSLETTER_SEND_RATE": "12.5",
    }
    config = config_from_dict({**BASE, "smtp": {"port": 25}}, env=env)
    assert config.base_url == "https://env.example"
    assert config.smtp.port == 2525
    assert config.send.test_to == ["a@example.org", "b@example.org"]
    assert config.sendgrid.sandbox is True
    assert config.send.rate == 12.5


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({"name": "N"}, {}, "newsletter.toml: missing required key from_email"),
        ({**BASE, "colour": "red"}, {}, "newsletter.toml: unknown key colour (known: name, from_email, from_name, reply_to, postal_address, base_url, template, list, lang, dir)"),
        ({**BASE, "smtp": {"prot": 1}}, {}, "newsletter.toml: unknown key smtp.prot (known: host, port, security, username, timeout)"),
        ({**BASE, "smtp": {"port": "25"}}, {}, "newsletter.toml: smtp.port: expected a number, got a string"),
        ({**BASE, "smtp": {"port": 2.5}}, {}, "newsletter.toml: smtp.port: expected a whole number, got 2.5"),
        ({**BASE, "send": {"test_to": 3}}, {}, "newsletter.toml: send.test_to: expected a list of strings, got int"),
        ({**BASE, "smtp": {"password": "hunter2"}}, {}, "newsletter.toml: smtp.password: secrets are not read from the config file; set NEWSLETTER_SMTP_PASSWORD in the environment"),
        ({**BASE, "sendgrid": {"api_key": "SG.x"}}, {}, "newsletter.toml: sendgrid.api_key: secrets are not read from the config file; set SENDGRID_API_KEY in the environment"),
        (BASE, {"NEWSLETTER_SMTP_PORT": "abc"}, "NEWSLETTER_SMTP_PORT: expected a number, got 'abc'"),
        (BASE, {"NEWSLETTER_SENDGRID_SANDBOX": "maybe"}, "NEWSLETTER_SENDGRID_SANDBOX: expected true or false, got 'maybe'"),
        ({**BASE, "smtp": 1}, {}, "newsletter.toml: [smtp] must be a table"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(data, env, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env=env)
    assert str(caught.value) == message
    assert "hunter2" not in str(caught.value) and "SG.x" not in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text('name = "unterminated\n')
    with pytest.raises(ConfigError, match=r"newsletter.toml: invalid TOML: .*line 1"):
        load_config(path, env={})


def test_config_is_found_by_walking_up_and_paths_resolve_next_to_it(tmp_path):
    (tmp_path / "newsletter.toml").write_text('name = "N"\nfrom_email = "n@example.org"\n')
    deep = tmp_path / "issues" / "2024"
    deep.mkdir(parents=True)
    found = find_config(deep)
    assert found == tmp_path / "newsletter.toml"
    config = load_config(found, env={})
    assert config.subscribers_dir == tmp_path / "subscribers"
    assert config.state_dir == tmp_path / ".newsletter"


def test_repository_example_config_loads():
    config = load_config(Path(__file__).resolve().parent.parent / "newsletter.toml", env={})
    assert config.send.provider == "outbox"
    assert config.postal_address


@pytest.mark.parametrize(
    ("base_url", "env", "message"),
    [
        ("javascript:alert(1)", {}, "newsletter.toml: base_url: 'javascript:alert(1)' is not an https:// URL (http:// is allowed only for localhost)"),
        ("ftp://news.example.org", {}, "newsletter.toml: base_url: 'ftp://news.example.org' is not an https:// URL (http:// is allowed only for localhost)"),
        ("http://news.example.org", {}, "newsletter.toml: base_url: 'http://news.example.org' uses http://, which is allowed only for localhost; use https://"),
        ("https://", {}, "newsletter.toml: base_url: 'https://' has no host name"),
        ("https://news.example.org/?a=1", {}, "newsletter.toml: base_url: 'https://news.example.org/?a=1' must be a plain address without user, query or fragment"),
        ("https://news.example.org/a b", {}, "newsletter.toml: base_url: 'https://news.example.org/a b' has characters a URL cannot hold here (spaces, quotes, <, >, or non-ASCII; write an IDN host as xn--…)"),
        ("https://ok.example", {"NEWSLETTER_BASE_URL": "javascript:x"}, "NEWSLETTER_BASE_URL: 'javascript:x' is not an https:// URL (http:// is allowed only for localhost)"),
    ],
)  # fmt: skip
def test_base_url_must_be_https_or_http_on_loopback(base_url, env, message):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({**BASE, "base_url": base_url}, env=env)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "base_url",
    [
        "https://news.example.org",
        "https://news.example.org/letters/",
        "HTTPS://News.Example.org:8443",
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "http://127.9.9.9",
        "http://[::1]:8000",
    ],
)
def test_https_and_loopback_http_base_urls_are_accepted(base_url):
    assert config_from_dict({**BASE, "base_url": base_url}).base_url == base_url
