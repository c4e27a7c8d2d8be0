"""MJML -> HTML: what inlining must keep, and the widths Outlook reads from attributes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from newsletter import screenshots
from newsletter.emailhtml import compile_mjml, inline_css

FIXTURES = Path(__file__).parent / "fixtures" / "reference"

requires_chromium = pytest.mark.skipif(
    not Path(screenshots.CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="apt-get install chromium",
)


def test_inlined_html_keeps_doctype_xmlns_and_mso_conditional_comments():
    from mjml import mjml2html

    source = (FIXTURES / "image-story.mjml").read_text()
    compiled = mjml2html(source, disable_comments=True)
    html = compile_mjml(source)
    assert html.lower().startswith("<!doctype html>")
    for namespace in ('xmlns="http://www.w3.org/1999/xhtml"', "xmlns:v=", "xmlns:o="):
        assert namespace in html
    conditionals = re.findall(r"<!--\[if [^\]]+\]>|<!\[endif\]-->", compiled)
    assert conditionals
    assert re.findall(r"<!--\[if [^\]]+\]>|<!\[endif\]-->", html) == conditionals


@requires_chromium
def test_email_html_renders_in_standards_mode(workspace):
    from typer.testing import CliRunner

    from newsletter.cli import app

    result = CliRunner().invoke(app, ["preview", "issues/sample.md"])
    assert result.exit_code in (0, 1), result.output
    html_path = next((workspace / "build").glob("*/email.html"))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=screenshots.find_chromium(), args=["--no-sandbox"]
        )
        page = browser.new_page()
        page.goto(html_path.resolve().as_uri())
        mode = page.evaluate("document.compatMode")
        browser.close()
    assert mode == "CSS1Compat"


def test_full_width_image_in_padded_column_has_the_reference_width():
    html = compile_mjml((FIXTURES / "image-story.mjml").read_text())
    # npm mjml 5: 600 px body minus the image's 28 px left and right padding
    assert re.search(r'<td style="width:544px;">\s*<img[^>]*width="544"', html)


def test_images_floated_left_or_right_get_the_align_attribute_outlook_reads():
    html = (
        "<!doctype html><html><head></head><body>"
        '<img src="a.png" class="thumb">'
        '<img src="b.png" style="width:10px; float: right">'
        '<img src="c.png" style="float:left" align="center">'
        '<img src="d.png" style="display:block">'
        "</body></html>"
    )
    out = inline_css(html, [".thumb { float: left }"])
    assert re.search(r'<img align="left" src="a.png"[^>]*style="float:left"', out)
    assert re.search(r'<img align="right" src="b.png"', out)
    assert re.search(r'<img src="c.png" style="float:left" align="center">', out)  # kept
    assert re.search(r'<img src="d.png" style="display:block">', out)
    assert out.startswith("<!doctype html>")
