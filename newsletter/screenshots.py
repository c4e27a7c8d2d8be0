"""email.html -> desktop.png, mobile.png and dark.png beside it, taken in headless Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import ExitCode, NewsletterError

CHROMIUM = "/usr/bin/chromium"  # Debian's `chromium` package; Playwright never downloads one
INSTALL_HINT = "apt-get install chromium"
LOAD_TIMEOUT_MS = 15_000  # remote images that do not arrive by then are shown missing


@dataclass(frozen=True)
class Shot:
    name: str
    width: int
    dark: bool = False

    @property
    def mobile(self) -> bool:
        return self.width < 600


DESKTOP = Shot("desktop.png", 1024)  # a 600 px email in a desktop client's reading pane
MOBILE = Shot("mobile.png", 375)  # an iPhone-sized phone
DARK = Shot("dark.png", 375, dark=True)  # the phone with the system in dark mode
SHOTS = (DESKTOP, MOBILE, DARK)


class ScreenshotError(NewsletterError):
    """Chromium or Playwright is missing, or the browser failed."""

    exit_code = ExitCode.CONFIG


def find_chromium() -> str:
    """The system Chromium, or ScreenshotError saying how to install it."""
    for candidate in (CHROMIUM, "chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found and os.access(found, os.X_OK):
            return found
    raise ScreenshotError(f"screenshots need Chromium, which is not installed: {INSTALL_HINT}")


def take_screenshots(
    html_path: Path,
    folder: Path | None = None,
    shots: tuple[Shot, ...] = SHOTS,
    chromium: str | None = None,
) -> list[Path]:
    """Full-page PNGs of the email, one per shot, written into `folder` (default: beside it)."""
    executable = chromium or find_chromium()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ScreenshotError(
            "screenshots need Playwright for Python: pip install 'newsletter-publisher[screenshots]'"
        ) from None
    folder = folder or html_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    url = html_path.resolve().as_uri()
    written = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            try:
                for shot in shots:
                    context = browser.new_context(
                        viewport={"width": shot.width, "height": 800},
                        device_scale_factor=1,
                        is_mobile=shot.mobile,
                        has_touch=shot.mobile,
                        color_scheme="dark" if shot.dark else "light",
                    )
                    page = context.new_page()
                    with contextlib.suppress(PlaywrightTimeout):  # slow images: take what came
                        page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
                    path = folder / shot.name
                    tmp = path.with_name(path.name + ".tmp.png")
                    page.screenshot(path=str(tmp), full_page=True)
                    os.replace(tmp, path)
                    written.append(path)
                    context.close()
            finally:
                browser.close()
    except PlaywrightError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScreenshotError(f"Chromium failed ({executable}): {message}") from None
    return written
