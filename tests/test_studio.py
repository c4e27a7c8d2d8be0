"""The preview studio in a real browser: frames, live reload on edit, render errors, send test."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from newsletter import screenshots
from newsletter.config import load_config
from newsletter.studio import Studio, bind, make_server

pytestmark = pytest.mark.skipif(
    not Path(screenshots.CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="apt-get install chromium",
)
WAIT_MS = 10_000  # generous for a loaded CI machine; the reload itself takes well under a second


class Running:
    """A studio served on a free loopback port from a thread, as `preview --serve` runs it."""

    def __init__(self, root: Path, issue: str) -> None:
        self.studio = Studio(load_config(root / "newsletter.toml"), Path("issues") / issue)
        sock = bind(0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = make_server(self.studio, sock)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the studio did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve(workspace, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SPAMASSASSIN", "off")  # the spam score has its own tests
    running: list[Running] = []

    def start(issue: str = "sample.md") -> Running:
        running.append(Running(workspace, issue))
        return running[-1]

    yield start
    for server in running:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=screenshots.find_chromium(), args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")


def test_phone_frame_live_reload_on_edit_and_send_test_through_the_outbox(serve, page, workspace):
    from playwright.sync_api import expect

    studio = serve()
    page.goto(studio.url)
    phone = page.frame_locator("#phone-frame")
    desktop = page.frame_locator("#desktop-frame")
    expect(page.locator("#subject")).to_have_text("NATO Weekly Roundup – Week of January 21st")
    expect(desktop.locator("h2").first).to_contain_text("Statement by the NATO Secretary General")
    expect(page.locator("#live")).to_have_text("live")

    page.get_by_role("button", name="Phone", exact=True).click()
    expect(page.locator("#desktop")).to_be_hidden()
    expect(page.locator("#phone")).to_be_visible()
    width = page.locator("#phone-frame").evaluate("f => f.contentWindow.innerWidth")
    assert width <= 375

    edit(
        workspace / "issues" / "sample.md",
        "## “Germany and NATO urge Russia",
        "## “Edited while the page was open”\n\nA new story.\n\n## “Germany and NATO urge Russia",
    )
    edit(workspace / "issues" / "sample.md", "title: NATO Weekly Roundup", "title: Live Roundup")
    expect(page.locator("#subject")).to_have_text("Live Roundup – Week of January 21st")
    expect(phone.get_by_text("“Edited while the page was open”")).to_be_visible()

    page.get_by_role("button", name="Send test").click()
    expect(page.locator("#message")).to_have_text("Sent a test to editor@example.org via outbox")
    sent = list((workspace / "outbox" / "sample").glob("*.eml"))
    assert len(sent) == 1
    message = email.message_from_bytes(sent[0].read_bytes(), policy=email.policy.default)
    assert message["To"] == "editor@example.org"
    assert message["Subject"] == "[TEST] Live Roundup – Week of January 21st"


def test_a_render_error_shows_in_the_page_and_clears_when_fixed(serve, page, workspace):
    from playwright.sync_api import expect

    studio = serve()
    page.goto(studio.url)
    expect(page.locator("#subject")).to_contain_text("NATO Weekly Roundup")
    issue = workspace / "issues" / "sample.md"
    good = issue.read_text(encoding="utf-8")
    edit(issue, "date: 2022-01-21", "date: [2022-01-21")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_contain_text("invalid front matter")
    # The last good render stays in the frames meanwhile.
    expect(page.frame_locator("#desktop-frame").locator("h2").first).to_contain_text("Statement")
    issue.write_text(good, encoding="utf-8")
    expect(page.locator("#error")).to_be_hidden()


def test_a_template_change_reloads_and_dark_mode_applies_the_emails_dark_css(
    serve, page, workspace
):
    from playwright.sync_api import expect

    studio = serve()
    page.goto(studio.url)
    desktop = page.frame_locator("#desktop-frame")
    expect(desktop.get_by_text("WORKSPACE MASTHEAD")).to_be_visible()
    edit(
        workspace / "templates" / "partials" / "masthead.mjml.j2", "WORKSPACE MASTHEAD", "NEW MAST"
    )
    expect(desktop.get_by_text("NEW MAST")).to_be_visible()

    page.get_by_label("Dark mode").check()
    # #0f1419 comes from the email's own @media (prefers-color-scheme: dark) rules.
    expect(desktop.locator(".nl-body")).to_have_css("background-color", "rgb(15, 20, 25)")
    expect(page.frame_locator("#phone-frame").locator(".nl-body")).to_have_css(
        "background-color", "rgb(15, 20, 25)"
    )


def test_preview_as_a_subscriber_and_the_checks_tab(serve, page):
    from playwright.sync_api import expect

    studio = serve("merge.md")
    page.goto(studio.url)
    desktop = page.frame_locator("#desktop-frame")
    expect(page.locator("#subject")).to_have_text("News for you")
    page.locator("#as").fill("ada@example.org")
    page.locator("#as").press("Enter")
    expect(page.locator("#subject")).to_have_text("News for Ada")
    expect(desktop.get_by_text("Hi Ada from Engines & <Co>,")).to_be_visible()

    page.get_by_role("tab", name=re.compile("Checks")).click()
    expect(page.locator("#problems")).to_contain_text("All checks passed.")
    expect(page.locator("#spam")).to_contain_text("turned off")
    expect(page.locator("#support")).to_contain_text("@media (prefers-color-scheme)")
    page.get_by_role("tab", name="Plain text").click()
    expect(page.locator("#text")).to_contain_text("Hi Ada")
