"""The HTML report in headless Chromium: offline, every chart present and drawn.

`UPDATE_SCREENSHOTS=1 pytest tests/test_report_browser.py` also refreshes
docs/screenshots/report.png (the README shows it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_report import reported  # noqa: F401 - the module's send and replayed events

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).parent.parent / "docs" / "screenshots" / "report.png"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="no system chromium")


def test_html_report_draws_its_charts_offline(reported, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    *_, page_result, html = reported
    assert page_result.exit_code == 0, page_result.output
    text = html.read_text(encoding="utf-8")
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text.replace("https://example.com/", "").replace(
        "https://data.example.com/", ""
    )  # the only addresses are the links, shown as text
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri())
            charts = page.locator("svg.chart")
            assert charts.count() == 3
            labels = [charts.nth(i).get_attribute("aria-label") for i in range(3)]
            assert labels == [
                "Delivery funnel",
                "Opens and clicks per hour since the send",
                "Clicks per link (readers, then automated)",
            ]
            for i in range(3):
                box = charts.nth(i).bounding_box()
                assert box["width"] > 300 and box["height"] > 100, labels[i]
            # drawn: bars with a width, lines with points
            widths = page.eval_on_selector_all(
                "svg.chart rect.bar", "els => els.map(e => e.getBBox().width)"
            )
            assert len(widths) >= 10 and all(w > 0 for w in widths)
            lines = page.eval_on_selector_all(
                "svg.chart polyline.series", "els => els.map(e => e.getTotalLength())"
            )
            assert len(lines) == 4 and all(length > 0 for length in lines)
            assert page.get_by_role("heading", name="Clicks per link").is_visible()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("UPDATE_SCREENSHOTS"):
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)
        finally:
            browser.close()
    assert [url for url in requests if not url.startswith("file://")] == []
