"""The built-in templates (default, letter, digest) with a [theme]: what a reader sees."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter import screenshots
from newsletter.cli import app
from newsletter.config import config_from_dict, load_config
from newsletter.errors import ConfigError
from newsletter.issue import load_issue
from newsletter.render import Renderer
from newsletter.theme import palette
from newsletter.workspace import TEMPLATES

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2022-01-21-nato-weekly-roundup-week-of-january-21st.md"
BASE = {"name": "T", "from_email": "t@example.org", "base_url": "https://t.example.org"}
THEME = {
    "accent": "#8a2be2",
    "background": "#fdf6e3",
    "text": "#222222",
    "logo_url": "https://t.example.org/logo.png",
    "logo_width": 64,
    "heading_font": "Avenir, Helvetica, sans-serif",
    "corners": "square",
}
EXAMPLE = {**BASE, "theme": THEME}


def render(config, template: str, issue_path: Path = SAMPLE, **changes):
    issue = dataclasses.replace(load_issue(issue_path), template=template, **changes)
    rendered = Renderer(config).render(issue)
    return rendered, rendered.personalize({"email": "r@example.org"}, "https://u.example/x")


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_builtin_template_uses_the_themes_colours_fonts_logo_and_corners(template):
    config = config_from_dict(EXAMPLE)
    _, out = render(config, template)
    html = out.html
    assert re.search(
        r'<img alt="T" height="auto" src="https://t.example.org/logo.png" width="64"', html
    )
    assert "color:#8a2be2" in html.replace(" ", "")  # the kicker
    assert "Avenir, Helvetica, sans-serif" in html
    assert "color:#222222" in html.replace(" ", "")
    assert "border-radius:8px" not in html  # square cards
    if template != "letter":  # the letter is the page itself: its canvas is the card colour
        assert "background-color:#fdf6e3" in html.replace(" ", "")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("accent", "blue", "theme.accent: expected a colour like #1a73e8, got 'blue'"),
        ("body_font", "Arial; } body { display:none", "theme.body_font: expected font names"),
        ("corners", "round", "theme.corners: expected rounded or square, got 'round'"),
        ("logo_url", "http://t.example.org/l.png", "theme.logo_url: expected an https:// image"),
        ("logo_width", 2000, "theme.logo_width: expected 16 to 600 (pixels), got 2000"),
    ],
)
def test_a_theme_value_a_template_cannot_use_is_a_one_line_error_naming_the_key(
    key, value, message
):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({**BASE, "theme": {key: value}}, source="newsletter.toml")
    assert str(caught.value).startswith(f"newsletter.toml: {message}")


def test_theme_keys_can_come_from_the_environment():
    config = config_from_dict(BASE, env={"NEWSLETTER_THEME_ACCENT": "#123456"})
    assert config.theme.accent == "#123456"


def test_the_preheader_is_followed_by_invisible_filler_so_nothing_else_reaches_the_preview():
    config = load_config(REPO / "newsletter.toml")
    for template in TEMPLATES:
        _, out = render(config, template)
        hidden = re.search(r'<div style="display:none;[^"]*">(.*?)</div>', out.html, re.S)
        assert hidden.group(1).startswith("Statement by the NATO Secretary General")
        assert hidden.group(1).count("\u034f\u200c\u00a0") >= 80


def test_byline_caption_and_story_button_when_the_issue_has_them(workspace):
    issue = workspace / "issues" / "captioned.md"
    issue.write_text(
        "---\ntitle: Harbours\nauthor: Ada Lovelace\ndate: 2024-03-05\n---\n\n"
        "## [Dawn](https://example.com/dawn)\n\n"
        '![A harbour at dawn](https://example.com/h.jpg "The harbour at 6 a.m.")\n\n'
        "Words.\n",
        encoding="utf-8",
    )
    config = load_config(workspace / "newsletter.toml")
    html = {t: render(config, t, issue)[1] for t in TEMPLATES}
    assert "March 5, 2024 · By Ada Lovelace · <a" in html["default"].html
    assert "By Ada Lovelace · March 5, 2024" in html["letter"].html
    assert "By Ada Lovelace\n" in html["default"].text
    for template in ("default", "letter"):
        assert "The harbour at 6 a.m.</div>" in html[template].html
    assert ">Read the full story</a>" in html["default"].html  # the button
    assert re.search(r'<a href="https://example.com/dawn"[^>]*>\s*<img alt="A harbour at dawn"',
                     html["digest"].html)  # fmt: skip


@pytest.mark.parametrize(
    ("template", "width"), [("default", 536), ("letter", 520), ("digest", 148)]
)
def test_story_images_keep_the_pixel_width_outlook_sizes_them_by(workspace, template, width):
    # The column's width minus the image's padding, as npm mjml writes it, even though the
    # templates style every <img> (alt text) through premailer.
    config = load_config(workspace / "newsletter.toml")
    _, out = render(config, template, workspace / "issues" / "elements.md")
    assert re.search(rf'<img alt="A harbour at dawn"[^>]*width="{width}"', out.html)


def test_init_with_a_template_writes_it_into_the_new_workspaces_config(tmp_path):
    result = CliRunner().invoke(app, ["init", str(tmp_path / "w"), "--template", "letter"])
    assert result.exit_code == 0, result.output
    assert load_config(tmp_path / "w" / "newsletter.toml").template == "letter"
    wrong = CliRunner().invoke(app, ["init", str(tmp_path / "x"), "--template", "fancy"])
    assert wrong.exit_code != 0
    assert "--template: expected one of default, letter, digest, got 'fancy'" in wrong.output


requires_chromium = pytest.mark.skipif(
    not Path(screenshots.CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="apt-get install chromium",
)

# In dark mode: (what, selector, CSS property, the palette's dark value it must have)
_DARK = """() => {
  const css = (el, p) => el ? getComputedStyle(el)[p] : null;
  const heads = [...document.querySelectorAll('.nl-headline h2')];
  return {
    body: css(document.querySelector('.nl-body'), 'backgroundColor'),
    kicker: css(document.querySelector('.nl-kicker div'), 'color'),
    rule: css(document.querySelector('.nl-rule p'), 'borderTopColor'),
    linked: css(heads.find(h => h.querySelector('a'))?.querySelector('a'), 'color'),
    unlinked: css(heads.find(h => !h.querySelector('a')), 'color'),
    text: css(document.querySelector('.nl-text p'), 'color'),
    link: css(document.querySelector('.nl-text p a'), 'color'),
    button: css(document.querySelector('.nl-button a'), 'backgroundColor'),
    footer: css(document.querySelector('.nl-footer a'), 'color'),
  };
}"""


def _rgb(colour: str) -> str:
    from newsletter.theme import rgb

    return "rgb({}, {}, {})".format(*rgb(colour))


@requires_chromium
@pytest.mark.parametrize("how", ["prefers-color-scheme", "outlook data-ogsc/ogsb"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_in_dark_mode_every_painted_colour_takes_its_dark_value(workspace, template, how):
    from playwright.sync_api import sync_playwright

    shutil.rmtree(workspace / "templates")  # the built-in masthead, not the fixture's
    config = load_config(workspace / "newsletter.toml")
    _, out = render(config, template, workspace / "issues" / "elements.md")
    page_file = workspace / "email.html"
    page_file.write_text(out.html, encoding="utf-8")
    dark = palette(config.theme)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=screenshots.find_chromium(), args=["--no-sandbox"]
        )
        outlook = how.startswith("outlook")
        page = browser.new_page(color_scheme="light" if outlook else "dark")
        page.route("http*://**", lambda route: route.abort())
        page.goto(page_file.resolve().as_uri())
        if outlook:  # what Outlook.com puts on the elements it recolours in dark mode
            page.evaluate("""() => ['data-ogsc', 'data-ogsb'].forEach(
                a => document.documentElement.setAttribute(a, ''))""")
        seen = page.evaluate(_DARK)
        browser.close()
    body = dark["dark_card"] if template == "letter" else dark["dark_background"]
    assert seen["body"] == _rgb(body)
    assert seen["kicker"] == _rgb(dark["dark_accent"])
    assert seen["rule"] == _rgb(dark["dark_rule"])  # no white rule on a dark card
    assert seen["linked"] == seen["unlinked"] == seen["text"] == _rgb(dark["dark_text"])
    assert seen["link"] == _rgb(dark["dark_accent"])
    assert seen["footer"] == _rgb(dark["dark_footer"])
    if template == "default":
        assert seen["button"] == _rgb(dark["dark_accent"])


def test_a_theme_with_low_contrast_pairs_warns_naming_mode_pair_ratio_and_key(workspace):
    from newsletter.sample import check_issue

    toml = workspace / "newsletter.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + '\n[theme]\naccent = "#7fb2e5"\ndark_text = "#3a3f44"\n',
        encoding="utf-8",
    )
    checked = check_issue(
        load_config(Path("newsletter.toml")), load_issue(Path("issues/sample.md"))
    )
    found = [str(p) for p in checked.problems if p.code == "contrast"]
    lines = toml.read_text(encoding="utf-8").split("\n")
    accent, dark_text = (
        lines.index(x) + 1 for x in ('accent = "#7fb2e5"', 'dark_text = "#3a3f44"')
    )
    assert found == [
        f"newsletter.toml:{accent}: warning contrast: links in light mode: #7fb2e5 on #ffffff "
        "(theme.accent on theme.card) has contrast 2.2:1, below WCAG AA 4.5:1",
        f"newsletter.toml:{accent}: warning contrast: the publication's name in light mode: "
        "#7fb2e5 on #f3f4f6 (theme.accent on theme.background) has contrast 2.0:1, "
        "below WCAG AA 4.5:1",
        f"newsletter.toml:{dark_text}: warning contrast: body text in dark mode: #3a3f44 on "
        "#1a2027 (theme.dark_text on theme.dark_card) has contrast 1.5:1, below WCAG AA 4.5:1",
        f"newsletter.toml:{dark_text}: warning contrast: muted text (date, captions, quotes) in "
        "dark mode: #31363c on #1a2027 (theme.dark_text mixed into theme.dark_card on "
        "theme.dark_card) has contrast 1.3:1, below WCAG AA 4.5:1",
        f"newsletter.toml:{dark_text}: warning contrast: the footer in dark mode: #2e3338 on "
        "#0f1419 (theme.dark_text mixed into theme.dark_background on theme.dark_background) "
        "has contrast 1.5:1, below WCAG AA 4.5:1",
    ]


def test_the_default_theme_passes_wcag_aa_in_light_and_dark_mode():
    from newsletter.checks.contrast import AA, pairs
    from newsletter.theme import ThemeConfig

    assert [(p.mode, p.what) for p in pairs(ThemeConfig()) if p.ratio < AA] == []
