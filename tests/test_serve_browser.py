"""A person in a real browser (headless Chromium): open the link from a message, press the button."""

from __future__ import annotations

import shutil

import pytest
from test_serve import (
    LiveServer,
    configure,
    confirmations,
    send_issue,
    statuses,
    unsubscribe_url,
    wait_for,
)
from typer.testing import CliRunner

from newsletter.cli import app

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="no system chromium")


def launch(p):
    """Chromium that finds the service under base_url's name, as it would behind a proxy."""
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--host-resolver-rules=MAP news.example.org 127.0.0.1"],
    )


def test_unsubscribe_from_a_message_in_the_browser(workspace):
    from playwright.sync_api import expect, sync_playwright

    message = send_issue(workspace)["grace@example.net"]
    with LiveServer(configure(workspace)) as live, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(live.public_url + live.local(unsubscribe_url(message)))
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


def test_subscribe_and_confirm_in_the_browser(workspace):
    from playwright.sync_api import expect, sync_playwright

    with LiveServer(configure(workspace)) as live, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(live.public_url + "/subscribe")
            page.get_by_label("Email").fill("lin@example.com")
            page.get_by_role("button", name="Subscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
            [message] = wait_for(lambda: confirmations(workspace))
            text = message.get_body(("plain",)).get_content()
            link = next(w for w in text.split() if "/confirm/" in w)
            page.goto(live.public_url + live.local(link))
            assert statuses(workspace)["lin@example.com"] == "pending"  # opening is not consent
            page.get_by_role("button", name="Yes, subscribe me").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
        finally:
            browser.close()
    assert statuses(workspace)["lin@example.com"] == "subscribed"
