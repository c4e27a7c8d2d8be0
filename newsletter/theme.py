"""`[theme]` in newsletter.toml -> the colours, fonts and logo every built-in template uses.

Only the colours a writer picks are keys; the quieter ones (muted text, dividers, code
backgrounds) are mixed from them, so a theme stays consistent in light and dark mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from newsletter.errors import ConfigError

# The platform's own UI fonts, then the colour emoji fonts of Apple and Windows by name. Not
# 'Noto Color Emoji': Chromium then draws spaces and digits with it; Linux and Android find it
# by fallback anyway.
EMOJI = "'Apple Color Emoji', 'Segoe UI Emoji', 'Segoe UI Symbol'"
SANS = f"-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif, {EMOJI}"
SERIF = f"Georgia, Cambria, 'Times New Roman', Times, serif, {EMOJI}"
MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace"
CORNERS = {"rounded": "8px", "square": "0px"}
_HEX = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
_FONT = re.compile(r"[\w\s,'.-]+")  # font names, commas, single quotes: nothing that ends CSS
COLOUR_KEYS = (
    "accent", "background", "card", "text",
    "dark_accent", "dark_background", "dark_card", "dark_text",
)  # fmt: skip


@dataclass(frozen=True)
class ThemeConfig:
    accent: str = "#0b5cad"  # links, buttons, the publication's name
    background: str = "#f3f4f6"  # the canvas around the cards
    card: str = "#ffffff"  # the cards (and, in `letter`, the page itself)
    text: str = "#1f2933"
    dark_accent: str = "#7cb8f5"
    dark_background: str = "#0f1419"
    dark_card: str = "#1a2027"
    dark_text: str = "#e6edf3"
    logo_url: str | None = None  # an https image shown above the publication's name
    logo_width: int = 48  # px
    heading_font: str | None = None  # a CSS font stack; None: the template's own
    body_font: str | None = None
    corners: str = "rounded"  # rounded | square


def check_theme(theme: ThemeConfig, source: str) -> None:
    """One ConfigError naming the first key that a template could not use."""

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{source}: theme.{key}: {message}")

    for key in COLOUR_KEYS:
        value = getattr(theme, key)
        if not _HEX.fullmatch(value):
            fail(key, f"expected a colour like #1a73e8, got {value!r}")
    for key in ("heading_font", "body_font"):
        value = getattr(theme, key)
        if value is not None and not _FONT.fullmatch(value):
            fail(key, f"expected font names separated by commas, got {value!r}")
    if theme.corners not in CORNERS:
        fail("corners", f"expected rounded or square, got {theme.corners!r}")
    if not 16 <= theme.logo_width <= 600:
        fail("logo_width", f"expected 16 to 600 (pixels), got {theme.logo_width}")
    if theme.logo_url is not None:
        parts = urlsplit(theme.logo_url)
        if parts.scheme != "https" or not parts.netloc or '"' in theme.logo_url:
            fail("logo_url", f"expected an https:// image URL, got {theme.logo_url!r}")


def rgb(colour: str) -> tuple[int, int, int]:
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def mix(a: str, b: str, share_of_a: float) -> str:
    """The colour `share_of_a` of the way from b to a (0.0 = b, 1.0 = a)."""
    mixed = (
        round(x * share_of_a + y * (1 - share_of_a)) for x, y in zip(rgb(a), rgb(b), strict=True)
    )
    return "#" + "".join(f"{v:02x}" for v in mixed)


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio, 1.0 to 21.0."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def on(background: str) -> str:
    """Black or white, whichever reads better on the background (a button's label)."""
    return (
        "#ffffff"
        if contrast("#ffffff", background) >= contrast("#111111", background)
        else "#111111"
    )


def palette(theme: ThemeConfig) -> dict[str, str]:
    """Every value the templates use: the theme's keys plus the mixed ones, light and dark."""
    body_font = theme.body_font or SANS
    return {
        "accent": theme.accent,
        "background": theme.background,
        "card": theme.card,
        "text": theme.text,
        # Muted text stays readable (see checks/contrast.py); rules and code boxes stay quiet.
        "muted": mix(theme.text, theme.card, 0.78),
        "rule": mix(theme.text, theme.card, 0.14),
        "code_bg": mix(theme.text, theme.card, 0.06),
        "footer": mix(theme.text, theme.background, 0.8),  # on the canvas, not a card
        "button_text": on(theme.accent),
        "dark_accent": theme.dark_accent,
        "dark_background": theme.dark_background,
        "dark_card": theme.dark_card,
        "dark_text": theme.dark_text,
        "dark_muted": mix(theme.dark_text, theme.dark_card, 0.72),
        "dark_rule": mix(theme.dark_text, theme.dark_card, 0.18),
        "dark_code_bg": mix(theme.dark_text, theme.dark_card, 0.08),
        "dark_button_text": on(theme.dark_accent),
        "dark_footer": mix(theme.dark_text, theme.dark_background, 0.72),
        "body_font": body_font,
        "heading_font": theme.heading_font or body_font,
        "mono_font": MONO,
        # `letter` is set in a serif unless the theme names its fonts.
        "serif_font": theme.body_font or SERIF,
        "serif_heading_font": theme.heading_font or theme.body_font or SERIF,
        "radius": CORNERS[theme.corners],
        "logo_url": theme.logo_url or "",
        "logo_width": f"{theme.logo_width}px",
    }
