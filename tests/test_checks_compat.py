"""Email-client support: features of the final HTML against the shipped caniemail data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO
from typer.testing import CliRunner

from newsletter.checks import compat
from newsletter.cli import app
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.render import Renderer

COMPAT = FIXTURES / "compat"
SAMPLE = REPO / "issues" / "2022-01-21-nato-weekly-roundup-week-of-january-21st.md"


def warnings_for(name: str) -> dict[str, str]:
    """{feature title: message} of the client-support warnings for a fixture page."""
    html = (COMPAT / name).read_text(encoding="utf-8")
    problems = compat.check_compat(html)
    assert all(p.code == "client-support" and p.severity == "warning" for p in problems)
    return {p.message.split(" (`")[0]: p.message for p in problems}


def test_shipped_data_has_caniemails_shape_and_says_what_it_is():
    raw = json.loads(compat.DATA.read_text(encoding="utf-8"))
    about = raw["_about"]
    assert about["curated_subset"] is True
    assert "pending a refresh" in about["note"]
    assert about["source"] == "https://www.caniemail.com/api/data.json"
    assert about["licence"] == "MIT" and "HTeuMeuLeu" in about["copyright"]
    for feature in raw["data"]:
        assert {"slug", "title", "category", "stats", "notes_by_num"} <= feature.keys()
        for platforms in feature["stats"].values():
            for versions in platforms.values():
                for value in versions.values():
                    assert value.split()[0] in {"y", "n", "a", "u"}
                    assert all(
                        n.lstrip("#") in (feature["notes_by_num"] or {}) for n in value.split()[1:]
                    )


def test_shipped_data_covers_the_features_the_checks_look_for():
    data = compat.load_data()
    wanted = set(compat.DETECTED)
    assert len(wanted) == 19
    assert wanted <= data.features.keys()
    for slug in wanted:
        families = {family for family, _ in data.features[slug].support}
        assert set(compat.CLIENTS) <= families, slug


def test_features_every_client_must_understand_warn_once_each_with_the_clients():
    found = warnings_for("relies.html")
    assert sorted(found) == [
        "<form> element", "<video> element", "@import", "Embedded <svg> image",
        "background-image", "display:flex", "position",
    ]  # fmt: skip
    # Gmail's apps only lack flexbox for non-Gmail accounts ("a"), so only Outlook is named.
    assert "not supported by Outlook (Windows, Windows Mail);" in found["display:flex"]
    assert "Gmail" not in found["display:flex"]
    assert found["@import"].startswith(
        "@import (`@import url(https://fonts.example.org/brand.css)`) is not supported by Gmail"
    )
    assert found["Embedded <svg> image"].endswith(
        "see https://www.caniemail.com/features/html-svg/"
    )


def test_decoration_is_listed_with_the_clients_that_drop_it_but_does_not_warn():
    reports = {r.feature.slug: r for r in compat.report((COMPAT / "relies.html").read_text())}
    for slug in ("css-box-shadow", "css-pseudo-class-hover"):
        assert reports[slug].enhancement == compat.GRACEFUL[slug] and not reports[slug].warns
    assert ("outlook", "windows") in reports["css-box-shadow"].unsupported


def test_dark_mode_css_outlook_conditionals_and_dark_mode_hooks_never_warn():
    assert warnings_for("enhancements.html") == {}
    reports = compat.report((COMPAT / "enhancements.html").read_text(encoding="utf-8"))
    dark = next(r for r in reports if r.feature.slug == compat.DARK_MEDIA)
    assert dark.enhancement == compat.DARK_REASON and not dark.warns
    assert any(family == "gmail" for family, _ in dark.unsupported)  # listed, for information


def test_a_rule_inside_a_media_query_spares_clients_that_ignore_media_queries():
    message = warnings_for("media-only.html")["display:grid"]
    assert "Gmail (Desktop Webmail, iOS, Android)" in message
    assert "Outlook (iOS, Android)" in message
    assert "Windows" not in message  # Outlook for Windows and Windows Mail skip the whole block


def test_markup_inside_not_mso_comments_is_not_held_against_outlook_for_windows():
    message = warnings_for("not-mso.html")["display:flex"]
    assert "Outlook (Windows Mail)" in message


def test_the_sample_issue_with_the_default_template_relies_on_nothing_clients_lack():
    config = load_config(REPO / "newsletter.toml", env={})
    rendered = Renderer(config).render(load_issue(SAMPLE))
    html = rendered.personalize({"email": "reader@example.com"}, "https://u.example/x").html
    assert compat.check_compat(html) == []
    reports = {r.feature.slug: r for r in compat.report(html)}
    assert reports["css-at-media"].enhancement == compat.MEDIA_REASON
    assert reports[compat.DARK_MEDIA].enhancement == compat.DARK_REASON
    # No web font is imported behind the reader's back (MJML adds one for "Roboto").
    assert "css-at-import" not in reports and "html-link" not in reports


def test_preview_prints_client_support_warnings_from_a_template(workspace, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SPAMASSASSIN", "off")
    shutil.copy(COMPAT / "flex.mjml.j2", workspace / "templates" / "flex.mjml.j2")
    shutil.copy(COMPAT / "flex.md", workspace / "issues" / "flex.md")
    result = CliRunner().invoke(app, ["preview", "issues/flex.md", "--strict"])
    assert result.exit_code == 1, result.output
    assert "Checks:    0 errors, 1 warning" in result.output
    line = next(x for x in result.output.splitlines() if "client-support" in x)
    assert line.startswith("  email.html:")
    assert "warning client-support: display:flex (`display: flex`) is not supported by " in line
    assert "Outlook (Windows, Windows Mail)" in line


@pytest.mark.parametrize(
    ("declaration", "slug"),
    [
        ("display: inline-flex", "css-display-flex"),
        ("display:grid", "css-display-grid"),
        ("position: relative", "css-position"),
        ("background: #fff url(a.png) no-repeat", "css-background-image"),
        ("border-top-left-radius: 4px", "css-border-radius"),
        ("max-width: 600px", "css-max-width"),
        ("margin-left: 0", "css-margin"),
        ("padding: 0 28px", "css-padding"),
    ],
)
def test_inline_declarations_map_to_caniemail_features(declaration, slug):
    html = f'<html><body><div style="{declaration}">x</div></body></html>'
    assert slug in {r.feature.slug for r in compat.report(html)}


@pytest.mark.parametrize("declaration", ["position: static", "box-shadow: none", "display: block"])
def test_harmless_values_are_not_features(declaration):
    html = f'<html><body><div style="{declaration}">x</div></body></html>'
    assert compat.report(html) == []


def test_refresh_script_keeps_the_caniemail_shape(tmp_path):
    """The refresh script writes what compat reads (here from a local copy of the data)."""
    import subprocess
    import sys

    source = tmp_path / "data.json"
    raw = json.loads(compat.DATA.read_text(encoding="utf-8"))
    raw.pop("_about")
    source.write_text(json.dumps(raw), encoding="utf-8")
    out = tmp_path / "caniemail.json"
    script = REPO / "scripts" / "refresh_caniemail.py"
    done = subprocess.run(
        [sys.executable, str(script), "--url", source.as_uri(), "--output", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["_about"]["curated_subset"] is False
    assert written["_about"]["source"] == source.as_uri()
    data = compat.load_data(Path(out))
    assert data.features.keys() == compat.load_data().features.keys()
