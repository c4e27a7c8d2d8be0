"""--screenshot: desktop.png, mobile.png and dark.png from the system Chromium, checked by pixels."""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter import screenshots
from newsletter.cli import app

requires_chromium = pytest.mark.skipif(
    not Path(screenshots.CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="apt-get install chromium",
)

# Luminance statistics of a PNG, computed by the browser's own decoder.
_STATS = """async (url) => {
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, img.width, img.height).data;
  let n = 0, sum = 0, squares = 0;
  for (let i = 0; i < d.length; i += 4) {
    const y = 0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2];
    sum += y; squares += y * y; n += 1;
  }
  const mean = sum / n;
  return { width: img.width, height: img.height, mean, variance: squares / n - mean * mean };
}"""


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def pixel_stats(paths: list[Path]) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=screenshots.find_chromium(), args=["--no-sandbox"]
        )
        page = browser.new_page()
        stats = {}
        for path in paths:
            url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            stats[path.name] = page.evaluate(_STATS, url)
        browser.close()
    return stats


@requires_chromium
def test_preview_screenshot_writes_three_pngs_of_the_right_widths_that_are_not_blank(
    workspace, monkeypatch
):
    monkeypatch.setenv("NEWSLETTER_SPAMASSASSIN", "off")
    result = CliRunner().invoke(app, ["preview", "issues/sample.md", "--screenshot"])
    assert result.exit_code == 0, result.output
    folder = workspace / "build" / "sample"
    for name in ("desktop.png", "mobile.png", "dark.png"):
        assert f"Wrote      {Path('build/sample') / name}" in result.output
    sizes = {name: png_size(folder / name) for name in ("desktop.png", "mobile.png", "dark.png")}
    assert sizes["desktop.png"][0] == 1024
    assert sizes["mobile.png"][0] == sizes["dark.png"][0] == 375
    # Full-page shots: the phone's narrow column makes the email taller than on the desktop.
    assert sizes["mobile.png"][1] > sizes["desktop.png"][1] > 800
    stats = pixel_stats([folder / n for n in sizes])
    for name, values in stats.items():
        assert (values["width"], values["height"]) == sizes[name]
        assert values["variance"] > 200, (name, values)  # text on a page, not a blank frame
    assert stats["dark.png"]["mean"] < 80 < stats["mobile.png"]["mean"]  # dark CSS applied
    assert not list(folder.glob("*.tmp*"))


def test_missing_chromium_is_one_line_that_says_how_to_install_it(workspace, monkeypatch, tmp_path):
    monkeypatch.setattr(screenshots, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(app, ["preview", "issues/sample.md", "--screenshot"])
    assert result.exit_code == 3
    assert result.output.endswith(
        "Error: screenshots need Chromium, which is not installed: apt-get install chromium\n"
    )
    assert "Traceback" not in result.output
