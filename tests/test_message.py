"""OutgoingMessage.as_bytes(): a correct RFC 5322 / MIME message, read back with the email package."""

from __future__ import annotations

import dataclasses
import email
import email.header
import email.policy
import email.utils
import functools
import re

import pytest
from conftest import FIXTURES
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from loopback import make_campaign, message_for

from newsletter.config import load_config
from newsletter.message import header_safe

EXPECTED_HEADERS = [
    "From",
    "Reply-To",
    "List-Id",
    "MIME-Version",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Content-Type",
]


@pytest.fixture(scope="module")
def config():
    return load_config(FIXTURES / "workspace" / "newsletter.toml", env={})


@functools.cache
def merge_campaign():
    return make_campaign(load_config(FIXTURES / "workspace" / "newsletter.toml", env={}))


@pytest.fixture(scope="module")
def merge():
    return merge_campaign()


@pytest.fixture(scope="module")
def sample(config):
    return make_campaign(config, "sample.md")


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def display_name(data: bytes) -> str:
    """The To header's display name as RFC 2047 reads it.

    RFC 2047 (6.2) says the space between two encoded-words is not part of the text, but
    Python's address parser keeps it: a name folded into several encoded-words is read
    with email.header, which follows the RFC.
    """
    raw = email.message_from_bytes(data, policy=email.policy.compat32)["To"]
    phrase = re.sub(r"\r\n([ \t])", r"\1", raw).rpartition(" <")[0]
    if phrase.startswith("=?"):
        return str(email.header.make_header(email.header.decode_header(phrase)))
    return parse(data)["To"].addresses[0].display_name


def lines_of(text: str) -> str:
    """Line ends as a reader sees them: CRLF, CR and LF are all one line break."""
    return re.sub(r"\r\n?", "\n", text)


def content(message, kind: str) -> str:
    """A part's text, decoded, with line ends normalised."""
    return lines_of(message.get_body((kind,)).get_content())


def test_message_is_ascii_crlf_with_no_line_over_998_octets(merge, sample):
    for campaign in (merge, sample):
        data = message_for(campaign, "ada@example.org", "Ada Lovelace").as_bytes()
        data.decode("ascii")
        assert b"\n" not in data.replace(b"\r\n", b"")
        assert b"\r" not in data.replace(b"\r\n", b"")
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        assert data.endswith(b"--\r\n")


def test_message_headers_are_present_and_correct(sample):
    ada = message_for(sample, "ada@example.org", "Ada Lovelace")
    data = ada.as_bytes()
    message = parse(data)
    assert list(message.keys()) == EXPECTED_HEADERS
    assert message["From"].addresses[0].display_name == "Test Weekly"
    assert message["From"].addresses[0].addr_spec == "news@example.org"
    assert message["To"] == "Ada Lovelace <ada@example.org>"
    assert message["Reply-To"] == "editor@example.org"
    assert message["Subject"] == "NATO Weekly Roundup – Week of January 21st"
    raw_subject = data.split(b"\r\nSubject: ")[1].split(b"\r\nDate:")[0]
    assert raw_subject.startswith(b"=?utf-8?")  # RFC 2047 for the en dash
    assert email.utils.parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert message["Message-ID"] == ada.message_id
    assert message["Message-ID"].endswith("@example.org>")
    assert message["MIME-Version"] == "1.0"
    assert message["List-Id"] == "Test Weekly <main.example.org>"
    links = [part.strip() for part in str(message["List-Unsubscribe"]).split(",")]
    assert links == [f"<{ada.unsubscribe_url}>", f"<{ada.unsubscribe_mailto}>"]
    assert ada.unsubscribe_url.startswith("https://news.example.org/unsubscribe/main.")
    assert ada.unsubscribe_mailto.startswith("mailto:news@example.org?subject=unsubscribe%20")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.defects == []
    assert all(not message[name].defects for name in message)


def test_message_ids_are_unique_per_message(merge):
    ids = {message_for(merge, f"r{i}@example.org").message_id for i in range(500)}
    assert len(ids) == 500


def test_both_parts_decode_to_the_personalised_render(sample, merge):
    for campaign in (sample, merge):
        message = message_for(campaign, "ada@example.org", "Ada", company="Engines & <Co>")
        parsed = parse(message.as_bytes())
        assert parsed.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        expected = message.personalized()
        assert content(parsed, "plain") == expected.text
        assert content(parsed, "html") == expected.html


def test_sample_curly_quotes_survive_in_both_parts(sample):
    parsed = parse(message_for(sample, "ada@example.org", "Ada").as_bytes())
    text = " ".join(content(parsed, "plain").split())  # the text part is wrapped
    html = content(parsed, "html")
    assert "“Statement by the NATO Secretary General on cyber attacks against Ukraine”" in text
    assert "NATO’s past support" in text and "NATO’s past support" in html


def test_merge_fields_are_filled_and_escaped_in_html_only(merge):
    message = message_for(
        merge, "ada@example.org", "Ada Lovelace", first_name="Ada", company="Engines & <Co>"
    )
    parsed = parse(message.as_bytes())
    assert parsed["Subject"] == "News for Ada"
    text = " ".join(content(parsed, "plain").split())
    html = content(parsed, "html")
    assert "Hi Ada from Engines & <Co>, your address is ada@example.org." in text
    assert "Engines &amp; &lt;Co&gt;" in html
    assert "<Co>" not in html
    assert message.unsubscribe_url in text and message.unsubscribe_url in html


def test_a_name_with_line_breaks_cannot_add_headers(merge):
    evil = "Eve\r\nBcc: victim@example.com\nX-Evil: 1"
    parsed = parse(message_for(merge, "eve@example.org", evil, first_name=evil).as_bytes())
    assert list(parsed.keys()) == EXPECTED_HEADERS
    assert parsed["To"].addresses[0].display_name == "Eve Bcc: victim@example.com X-Evil: 1"
    assert parsed["Subject"] == "News for Eve Bcc: victim@example.com X-Evil: 1"


def test_without_base_url_the_only_unsubscribe_link_is_mailto(config):
    campaign = make_campaign(dataclasses.replace(config, base_url=None))
    message = message_for(campaign, "ada@example.org", "Ada")
    parsed = parse(message.as_bytes())
    assert message.unsubscribe_url is None
    assert parsed["List-Unsubscribe"] == f"<{message.unsubscribe_mailto}>"
    assert parsed["List-Unsubscribe-Post"] is None


def test_an_http_unsubscribe_link_is_never_offered_as_one_click(config):
    campaign = make_campaign(dataclasses.replace(config, base_url="http://localhost:8000"))
    message = message_for(campaign, "ada@example.org", "Ada")
    parsed = parse(message.as_bytes())
    assert parsed["List-Unsubscribe"].startswith("<http://localhost:8000/unsubscribe/")
    assert parsed["List-Unsubscribe-Post"] is None
    assert "List-Unsubscribe-Post" not in message.personal_headers()


def test_list_id_encodes_only_the_name(config):
    campaign = make_campaign(dataclasses.replace(config, name="Wöchentliche Post"))
    data = message_for(campaign, "ada@example.org", "Ada").as_bytes()
    raw = data.split(b"\r\nList-Id: ")[1].split(b"\r\n")[0]
    assert raw.endswith(b" <main.example.org>") and raw.startswith(b"=?utf-8?")
    assert parse(data)["List-Id"] == "Wöchentliche Post <main.example.org>"


def test_subject_prefix_is_part_of_the_subject(merge):
    campaign = dataclasses.replace(merge, subject_prefix="[TEST] ")
    parsed = parse(message_for(campaign, "ada@example.org", "Ada").as_bytes())
    assert parsed["Subject"] == "[TEST] News for Ada"


def test_a_non_ascii_display_name_is_encoded(merge):
    data = message_for(merge, "zoe@example.org", "Zoë Ångström").as_bytes()
    raw_to = data.split(b"\r\nTo: ")[1].split(b"\r\n")[0]
    assert raw_to.startswith(b"=?utf-8?")
    assert parse(data)["To"] == "Zoë Ångström <zoe@example.org>"


# Pieces that have broken mail software: line breaks, header syntax, encoded-word markers.
TRICKY = ["\r", "\n", "\r\n", ":", "<", ">", '"', ",", ";", "\\", "\t", "\x00", "\x1b", "=?", "?="]
tricky_text = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), st.sampled_from(TRICKY)
    ),
    max_size=12,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=tricky_text, first_name=tricky_text)
@example(name="=?utf-8?q?Admin?=", first_name="=?utf-8?b?QWRtaW4=?=")  # look like encoded words
@example(name="Eve\r\nBcc: victim@example.com", first_name="x\r\nBcc: victim@example.com")
def test_any_name_or_subject_round_trips_without_adding_headers(name, first_name):
    message = message_for(merge_campaign(), "reader@example.org", name, first_name=first_name)
    data = message.as_bytes()
    lines = data.split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines)  # no bare CR or LF
    assert max(len(line) for line in lines) <= 998
    parsed = parse(data)
    assert list(parsed.keys()) == EXPECTED_HEADERS
    to = parsed["To"].addresses
    assert len(to) == 1 and to[0].addr_spec == "reader@example.org"
    assert display_name(data) == header_safe(name)
    assert parsed["Subject"] == header_safe(f"News for {first_name}")
    expected = message.personalized()
    assert content(parsed, "plain") == lines_of(expected.text)
    assert content(parsed, "html") == lines_of(expected.html)


long_text = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
        st.sampled_from([" ", "=?", "?=", '"', "\\", "é", "😀"]),
        st.integers(1, 3000).map(lambda n: "x" * n),  # a run with no space to fold at
        st.integers(1, 600).map(lambda n: "word " * n),
        st.integers(1, 600).map(lambda n: "ü" * n),
    ),
    max_size=8,
).map("".join)


def header_lines(data: bytes, name: bytes) -> list[bytes]:
    """The physical lines of one header: its first line and the folded ones after it."""
    lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(name + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return lines[start:end]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=long_text, first_name=long_text)
@example(name="N" * 5000, first_name="F" * 5000)
@example(name="Ñ" * 5000, first_name="word " * 1000)
@example(name="=?utf-8?q?" + "A" * 300 + "?=", first_name="=?" * 800)
def test_long_names_and_subjects_fold_under_78_columns_and_read_back(name, first_name):
    message = message_for(merge_campaign(), "reader@example.org", name, first_name=first_name)
    data = message.as_bytes()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    for header in (b"To", b"Subject"):
        assert max(len(line) for line in header_lines(data, header)) <= 78
    parsed = parse(data)
    assert list(parsed.keys()) == EXPECTED_HEADERS
    to = parsed["To"].addresses
    assert len(to) == 1 and to[0].addr_spec == "reader@example.org"
    assert display_name(data) == header_safe(name)[:200].strip()
    assert parsed["Subject"] == header_safe(f"News for {first_name}")


def test_a_single_message_has_the_headers_and_unsubscribe_links_of_an_issue(config, merge):
    from newsletter.message import single_message

    message = single_message(
        config,
        b"s" * 32,
        to_email="Ada@Example.org",
        subject="Confirm your subscription",
        html="<p>Click {here}</p>",
        text="Click {here}",
        list_name="main",
        slug="_notices",
    )
    parsed = parse(message.as_bytes())
    issue = parse(message_for(merge, "ada@example.org", "Ada").as_bytes())
    assert list(parsed.keys()) == EXPECTED_HEADERS
    for name in ("From", "Reply-To", "List-Id", "List-Unsubscribe"):
        assert parsed[name] == issue[name]
    assert parsed["Subject"] == "Confirm your subscription"
    assert content(parsed, "plain").rstrip() == "Click {here}"
    assert message.key == "ada@example.org" and message.campaign.issue_slug == "_notices"


@given(st.text())
def test_header_safe_collapses_every_kind_of_whitespace_and_control_of_any_text(value):
    # Its quick path for text with nothing to collapse gives what the full collapse gives.
    from newsletter.message import _CONTROL

    assert header_safe(value) == " ".join(_CONTROL.sub(" ", value).split())
