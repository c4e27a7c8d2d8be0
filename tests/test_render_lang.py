"""`lang` and `dir` of the email come from the front matter, else newsletter.toml."""

from __future__ import annotations

import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError, IssueError
from newsletter.issue import load_issue
from newsletter.render import Renderer


def html_tag(html: str) -> str:
    return html[html.index("<html") : html.index(">", html.index("<html")) + 1]


def test_front_matter_lang_and_dir_reach_the_html_element(workspace):
    config = load_config(workspace / "newsletter.toml")
    rendered = Renderer(config).render(load_issue(workspace / "issues/lang/arabic.md"))
    tag = html_tag(rendered.html)
    assert 'lang="ar"' in tag
    assert 'dir="rtl"' in tag


def test_config_lang_is_the_default_and_front_matter_overrides_it(workspace):
    toml = workspace / "newsletter.toml"
    toml.write_text('lang = "de-CH"\n' + toml.read_text(encoding="utf-8"), encoding="utf-8")
    config = load_config(toml)
    assert (config.lang, config.dir) == ("de-CH", "auto")
    sample = Renderer(config).render(load_issue(workspace / "issues/sample.md"))
    assert 'lang="de-CH"' in html_tag(sample.html)
    arabic = Renderer(config).render(load_issue(workspace / "issues/lang/arabic.md"))
    assert 'lang="ar"' in html_tag(arabic.html)


def test_without_lang_anywhere_the_email_is_english(workspace):
    config = load_config(workspace / "newsletter.toml")
    assert 'lang="en"' in html_tag(
        Renderer(config).render(load_issue(workspace / "issues/sample.md")).html
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "bad-lang.md",
            "bad-lang.md:3: lang: expected a language tag such as en or pt-BR, got 'english please'",
        ),
        ("bad-dir.md", "bad-dir.md:4: dir: expected ltr, rtl or auto, got 'right-to-left'"),
    ],
)
def test_invalid_lang_or_dir_in_front_matter_names_the_line(workspace, name, message):
    with pytest.raises(IssueError) as failed:
        load_issue(workspace / "issues/lang" / name)
    assert str(failed.value).endswith(message)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('lang = "en_US"', "lang: expected a language tag such as en or pt-BR, got 'en_US'"),
        ('dir = "up"', "dir: expected ltr, rtl or auto, got 'up'"),
    ],
)
def test_invalid_lang_or_dir_in_config_is_one_line(workspace, line, message):
    toml = workspace / "newsletter.toml"
    toml.write_text(line + "\n" + toml.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConfigError) as failed:
        load_config(toml)
    assert message in str(failed.value)
    assert "newsletter.toml" in str(failed.value)


def test_an_unknown_front_matter_key_is_still_an_error(workspace):
    with pytest.raises(IssueError):
        load_issue(workspace / "issues/bad/unknown-key.md")
