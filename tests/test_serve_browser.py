"""A person in a real browser (headless Chromium): open the link from a message, press the button."""

from __future__ import annotations

import shutil

import pytest
from test_serve import LiveServer, configure, send_issue, statuses, unsubscribe_url
from typer.testing import CliRunner

from newsletter.cli import app

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="no system chromium")


def test_unsubscribe_from_a_message_in_the_browser(workspace):
    from playwright.sync_api import expect, sync_playwright

    message = send_issue(workspace)["grace@example.net"]
    with LiveServer(configure(workspace)) as live, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(live.url + live.local(unsubscribe_url(message)))
            expect(page).to_have_title("Unsubscribe · Test Weekly")
            assert statuses(workspace)["grace@example.net"] == "subscribed"
            page.get_by_role("button", name="Unsubscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
            assert statuses(workspace)["grace@example.net"] == "unsubscribed"
            assert "grace@example.net" not in page.content()
            expect(page.get_by_role("button", name="Resubscribe")).to_be_visible()
        finally:
            browser.close()
    listing = CliRunner().invoke(app, ["subscribers", "list", "main", "--status", "unsubscribed"])
    assert listing.exit_code == 0, listing.output
    assert "grace@example.net" in listing.output
