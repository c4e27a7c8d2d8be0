"""Our HTML and npm mjml 5's HTML of the same MJML look the same in Chromium.

The reference renderer is installed by .ci/run (npm ci --prefix tools/mjml-reference);
without it these tests skip.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from newsletter import screenshots
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.render import BUILTIN_TEMPLATES, Renderer

REPO = Path(__file__).resolve().parent.parent
MJML_BIN = REPO / "tools" / "mjml-reference" / "node_modules" / ".bin" / "mjml"
MAX_DIFFERENT = 0.005  # share of pixels allowed to differ
WIDTHS = (600, 375)
ISSUES = ("issues/sample.md", "issues/elements.md")
TEMPLATES = sorted(
    path.name.removesuffix(".mjml.j2")
    for path in BUILTIN_TEMPLATES.glob("*.mjml.j2")
    if path.name != "base.mjml.j2"
)

pytestmark = [
    pytest.mark.skipif(
        not MJML_BIN.exists(),
        reason="npm mjml 5 is not installed: npm ci --prefix tools/mjml-reference",
    ),
    pytest.mark.skipif(
        not Path(screenshots.CHROMIUM).exists() and shutil.which("chromium") is None,
        reason="apt-get install chromium",
    ),
]

# Both screenshots are decoded and compared by the browser itself: no imaging library needed.
_COMPARE = """async ([a, b]) => {
  const load = (src) => new Promise((ok) => { const i = new Image(); i.onload = () => ok(i); i.src = src; });
  const [x, y] = await Promise.all([load(a), load(b)]);
  const w = Math.max(x.width, y.width), h = Math.max(x.height, y.height);
  const pixels = (img) => {
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const g = c.getContext('2d'); g.fillStyle = '#ff00ff'; g.fillRect(0, 0, w, h); g.drawImage(img, 0, 0);
    return g.getImageData(0, 0, w, h).data;
  };
  const p = pixels(x), q = pixels(y);
  let differ = 0;
  for (let i = 0; i < p.length; i += 4) {
    if (p[i] !== q[i] || p[i + 1] !== q[i + 1] || p[i + 2] !== q[i + 2]) differ++;
  }
  return [differ, w * h];
}"""


def reference_html(mjml: str) -> str:
    done = subprocess.run(
        [str(MJML_BIN), "-i", "-s", "--config.validationLevel", "skip"],
        input=mjml,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=screenshots.find_chromium(), args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


def shoot(browser, html_path: Path, width: int) -> bytes:
    context = browser.new_context(viewport={"width": width, "height": 800}, device_scale_factor=1)
    page = context.new_page()
    # Remote images fail at once in both renders alike, instead of depending on a network.
    page.route("http*://**", lambda route: route.abort())
    page.goto(html_path.resolve().as_uri(), wait_until="load")
    png = page.screenshot(full_page=True)
    context.close()
    return png


def different_share(browser, a: bytes, b: bytes) -> float:
    context = browser.new_context()
    page = context.new_page()
    urls = [f"data:image/png;base64,{base64.b64encode(png).decode()}" for png in (a, b)]
    differ, total = page.evaluate(_COMPARE, urls)
    context.close()
    return differ / total


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("issue_file", ISSUES)
def test_our_html_renders_like_npm_mjml_at_desktop_and_phone_widths(
    workspace, browser, template, issue_file
):
    issue = load_issue(workspace / issue_file)
    config = load_config(workspace / "newsletter.toml")
    rendered = Renderer(config).render(dataclasses.replace(issue, template=template))
    ours = workspace / "ours.html"
    theirs = workspace / "reference.html"
    ours.write_text(rendered.html, encoding="utf-8")
    theirs.write_text(reference_html(rendered.mjml), encoding="utf-8")
    for width in WIDTHS:
        share = different_share(browser, shoot(browser, ours, width), shoot(browser, theirs, width))
        assert share <= MAX_DIFFERENT, f"{template} {issue_file} at {width}px: {share:.2%} differ"
