"""Rendering the sample issue and merge fields through the real pipeline."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import load_config
from newsletter.errors import TemplateError
from newsletter.issue import load_issue
from newsletter.render import Renderer

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2022-01-21-nato-weekly-roundup-week-of-january-21st.md"
SAMPLE_TEXT = (
    REPO / "tests" / "fixtures" / "samples" / "nato-weekly-roundup-week-of-january-21st.txt"
)


def sample_stories() -> list[tuple[str, str]]:
    """(headline, summary) pairs straight from the shared plain-text sample."""
    lines = [
        " ".join(line.replace("\u00a0", " ").split())
        for line in SAMPLE_TEXT.read_text(encoding="utf-8").splitlines()
    ]
    lines = [line for line in lines if line]
    headlines = [re.sub(r"\s+”$", "”", line) for line in lines if line.startswith("“")]
    summaries = [line.removeprefix("• ") for line in lines if line.startswith("•")]
    assert len(headlines) == len(summaries) == 7
    return list(zip(headlines, summaries, strict=True))


@pytest.fixture(scope="module")
def rendered_sample():
    config = load_config(REPO / "newsletter.toml")
    rendered = Renderer(config).render(load_issue(SAMPLE))
    return rendered, rendered.personalize({"email": "reader@example.com"}, "https://u.example/x")


def test_sample_has_every_headline_and_summary_verbatim_in_html_and_text(rendered_sample):
    import html as htmllib

    rendered, sample = rendered_sample
    page_text = htmllib.unescape(re.sub(r"<[^>]+>", "", sample.html))
    flat_text = " ".join(sample.text.split())
    for headline, summary in sample_stories():
        assert headline in page_text
        assert summary in page_text
        assert headline in flat_text
        assert summary in flat_text
    assert "“We have run out of patience”" in page_text
    assert "China’s Xi" in flat_text


def test_sample_title_keeps_the_en_dash_and_subject_defaults_to_it(rendered_sample):
    rendered, sample = rendered_sample
    assert sample.subject == "NATO Weekly Roundup – Week of January 21st"
    assert "<title>NATO Weekly Roundup – Week of January 21st</title>" in sample.html


def test_css_is_inlined_and_media_queries_kept_in_a_style_block(rendered_sample):
    _, sample = rendered_sample
    # The template's inline rule for footer links (the theme's text colour mixed into the
    # canvas) ends up on the anchors themselves.
    assert re.search(r'<a href="https://u.example/x" style="[^"]*color:#49525a', sample.html)
    styles = "".join(re.findall(r"<style[^>]*>(.*?)</style>", sample.html, re.S))
    assert "@media (prefers-color-scheme: dark)" in styles
    assert "@media only screen and (max-width: 480px)" in styles
    assert "data-premailer" not in sample.html


def test_no_mjml_or_jinja_is_left_in_the_output(rendered_sample):
    rendered, sample = rendered_sample
    for leftover in ("<mj-", "</mj-", "{{", "}}", "{%", "%}", "zzm"):
        assert leftover not in sample.html
        assert leftover not in sample.text


def test_preheader_is_hidden_in_the_html(rendered_sample):
    rendered, sample = rendered_sample
    match = re.search(r'<div style="([^"]*)">\s*Statement by the NATO', sample.html)
    assert match and "display:none" in match.group(1)


def test_text_part_is_wrapped_and_shows_the_unsubscribe_url(rendered_sample):
    _, sample = rendered_sample
    prose = [line for line in sample.text.splitlines() if "http" not in line]
    assert max(len(line) for line in prose) <= 72
    assert "Unsubscribe: https://u.example/x" in sample.text
    assert "Example Policy Institute" in sample.text


def test_merge_fields_are_filled_per_recipient_and_escaped_in_html(workspace):
    config = load_config(workspace / "newsletter.toml")
    rendered = Renderer(config).render(load_issue(workspace / "issues" / "merge.md"))
    ada = rendered.personalize(
        {"email": "ada@example.org", "first_name": "Ada", "company": "Engines & <Co>"},
        "https://u/1",
    )
    anon = rendered.personalize({"email": "x@example.org"}, "https://u/2")
    assert ada.subject == "News for Ada"
    assert anon.subject == "News for you"
    assert "Hi Ada from Engines &amp; &lt;Co&gt;," in ada.html
    assert "<Co>" not in ada.html
    assert "Hi Ada from Engines & <Co>," in ada.text
    assert "Hi there from nowhere," in anon.html
    assert "https://u/2" in anon.html and "https://u/1" not in anon.html


def test_personalizing_does_not_rerun_the_pipeline(workspace, monkeypatch):
    import newsletter.emailhtml as emailhtml
    import newsletter.render as render

    config = load_config(workspace / "newsletter.toml")
    rendered = Renderer(config).render(load_issue(workspace / "issues" / "merge.md"))

    def boom(*args, **kwargs):
        raise AssertionError("the pipeline ran again")

    monkeypatch.setattr(render, "compile_mjml", boom)
    monkeypatch.setattr(emailhtml, "inline_css", boom)
    for n in range(50):
        out = rendered.personalize({"email": f"r{n}@example.org", "first_name": f"R{n}"}, "u")
        assert f"Hi R{n} from" in out.html


def test_a_missing_field_without_default_names_the_field_and_where_it_is(workspace):
    issue = workspace / "issues" / "strict.md"
    issue.write_text("---\ntitle: T\n---\n\nHello {{ subscriber.nickname }}!\n", encoding="utf-8")
    config = load_config(workspace / "newsletter.toml")
    rendered = Renderer(config).render(load_issue(issue))
    with pytest.raises(TemplateError) as caught:
        rendered.personalize({"email": "a@example.org"}, "u")
    assert str(caught.value).startswith(f"{Path('issues/strict.md')}:5: merge field")
    assert "subscriber.nickname" in str(caught.value)
    assert "a@example.org" in str(caught.value)


def test_workspace_partial_overrides_the_builtin_one(workspace):
    config = load_config(workspace / "newsletter.toml")
    rendered = Renderer(config).render(load_issue(workspace / "issues" / "sample.md"))
    assert "WORKSPACE MASTHEAD Test Weekly" in rendered.html


def test_render_of_the_sample_is_deterministic(rendered_sample):
    rendered, _ = rendered_sample
    config = load_config(REPO / "newsletter.toml")
    again = Renderer(config).render(load_issue(SAMPLE))
    assert again.html == rendered.html
    assert again.text == rendered.text


@given(
    fields=st.dictionaries(
        st.sampled_from(["first_name", "company", "email", "city"]),
        st.text(min_size=1, max_size=20),
    )
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_direct_lookup_of_simple_fields_agrees_with_jinja(workspace_rendered, fields):
    rendered = workspace_rendered
    assert rendered._simple is not None  # merge.md uses only simple fields
    fields = {"email": "x@example.org", **fields}
    direct = rendered.values(fields, "https://u/1")
    slow = dataclasses.replace(rendered, env=rendered.env)
    slow._simple = None
    assert direct == slow.values(fields, "https://u/1")


@pytest.fixture(scope="module")
def workspace_rendered():
    root = Path(__file__).parent / "fixtures" / "workspace"
    config = load_config(root / "newsletter.toml", env={})
    return Renderer(config).render(load_issue(root / "issues" / "merge.md"))
