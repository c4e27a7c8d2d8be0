"""The plain-text part of an issue with every Markdown element (issues/elements.md)."""

from __future__ import annotations

import re

import lxml.html
import pytest

from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.render import Renderer

URL = re.compile(r"https?://\S+")


@pytest.fixture
def rendered(workspace):
    # the built-in templates, not the fixture workspace's own masthead
    (workspace / "templates" / "partials" / "masthead.mjml.j2").unlink()
    config = load_config(workspace / "newsletter.toml")
    return Renderer(config).render(load_issue(workspace / "issues/elements.md"))


def code_block(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.startswith("    ")]


def test_images_appear_as_their_alt_text_and_link(rendered):
    assert "\n[A harbour at dawn] (https://example.com/images/harbour.jpg)\n" in rendered.text
    flowing = " ".join(rendered.text.split())  # an inline image wraps with its sentence
    assert "image [a small chart] (https://example.com/images/chart.png) in the" in flowing


def test_lists_quotes_and_code_read_well(rendered):
    text = rendered.text
    assert (
        "\n- First point of a bulleted list, long enough to wrap in the plain-text\n  part" in text
    )
    assert "\n- Second point\n  - A nested point\n" in text
    assert "\n1. Step one\n2. Step two\n" in text
    assert (
        "\n> A quotation from someone important, long enough that it wraps onto a\n> second" in text
    )
    assert "\n>\n> Its second paragraph.\n" in text
    assert code_block(text) == [
        "    def hello():",
        '        return "a code block keeps its lines, even this one that is wider than seventy-eight characters"',
    ]


def test_lines_wrap_between_72_and_78_characters_except_urls_and_code(rendered):
    lines = rendered.text.split("\n")
    prose = [line for line in lines if line not in code_block(rendered.text)]
    too_long = [line for line in prose if len(line) > 78 and not URL.search(line)]
    assert too_long == []
    long_url = "https://example.com/a/very/long/path/that/is/longer/than/the/line/width/of/a/plain/text/email/part.html"
    assert long_url in lines  # a URL is never broken
    assert max(len(line) for line in prose if not URL.search(line)) >= 66  # wrapped, not chopped


def test_the_text_part_says_everything_the_html_says(rendered):
    doc = lxml.html.document_fromstring(rendered.html)
    for hidden in doc.xpath('//div[contains(@style, "display:none")]'):
        hidden.drop_tree()  # the preheader: shown by inboxes beside the subject, not in the body
    html_words = set(re.findall(r"\w+", " ".join(doc.body.itertext()).lower()))
    html_words |= {w for alt in doc.xpath("//img/@alt") for w in re.findall(r"\w+", alt.lower())}
    text_words = set(re.findall(r"\w+", rendered.text.lower()))
    assert html_words - text_words == set()
    for src in doc.xpath("//img/@src"):
        assert src in rendered.text
