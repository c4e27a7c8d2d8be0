"""The theme's colour pairs -> a warning for each that falls short of WCAG AA (4.5:1).

Checked in light and dark mode, for what the built-in templates paint: body text, muted
text (date, captions, quotes), links, buttons, the publication's name and the footer.
A workspace's own template may ignore [theme], so its pairs are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from newsletter.checks.content import config_line
from newsletter.checks.context import Context
from newsletter.checks.model import WARNING, Problem
from newsletter.theme import ThemeConfig, contrast, palette

AA = 4.5
# (what, foreground, background): names in theme.palette.
PAIRS = (
    ("body text", "text", "card"),
    ("muted text (date, captions, quotes)", "muted", "card"),
    ("links", "accent", "card"),
    ("button labels", "button_text", "accent"),
    ("the publication's name", "accent", "background"),
    ("the footer", "footer", "background"),
)
# The colours the theme does not name, and how theme.py makes them.
_MIXED = {
    "muted": "theme.{p}text mixed into theme.{p}card",
    "footer": "theme.{p}text mixed into theme.{p}background",
    "button_text": "white or black, whichever suits theme.{p}accent",
}


@dataclass(frozen=True)
class Pair:
    mode: str  # light | dark
    what: str
    foreground: str  # #rrggbb
    background: str
    names: str  # "theme.accent on theme.card"
    key: str  # the [theme] key to change: the foreground's, or the one it is mixed from
    ratio: float


def pairs(theme: ThemeConfig) -> list[Pair]:
    values = palette(theme)
    found = []
    for mode, p in (("light", ""), ("dark", "dark_")):
        for what, fg, bg in PAIRS:
            front, back = values[p + fg], values[p + bg]
            names = " on ".join(_MIXED.get(k, "theme.{p}" + k).format(p=p) for k in (fg, bg))
            key = p + {"muted": "text", "footer": "text", "button_text": "accent"}.get(fg, fg)
            found.append(Pair(mode, what, front, back, names, key, contrast(front, back)))
    return found


def theme_contrast(c: Context) -> Iterator[Problem]:
    """A warning per colour pair of the theme below 4.5:1, naming mode, pair and ratio."""
    name = (c.rendered.issue.template if c.rendered.issue else None) or c.config.template
    if (c.config.templates_dir / f"{name}.mjml.j2").exists():
        return
    for pair in pairs(c.config.theme):
        if pair.ratio < AA:
            yield Problem(
                "contrast",
                WARNING,
                config_line(c, pair.key),
                f"{pair.what} in {pair.mode} mode: {pair.foreground} on {pair.background} "
                f"({pair.names}) has contrast {pair.ratio:.1f}:1, below WCAG AA {AA}:1",
            )
