"""docs/screenshots/: the sample issue in every built-in template, desktop and phone, light and dark.

Run from the repository root: python tools/template_screenshots.py [OUT_FOLDER]
Needs Chromium and a colour emoji font (apt-get install chromium fonts-noto-color-emoji).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2022-01-21-nato-weekly-roundup-week-of-january-21st.md"
TEMPLATES = ("default", "letter", "digest")


def main(out: Path) -> None:
    from newsletter.config import load_config
    from newsletter.issue import load_issue
    from newsletter.render import BUILTIN_TEMPLATES, Renderer
    from newsletter.screenshots import Shot, take_screenshots

    config = load_config(REPO / "newsletter.toml")
    renderer = Renderer(config)
    issue = load_issue(SAMPLE)
    with tempfile.TemporaryDirectory() as tmp:
        for name in TEMPLATES:
            if not (BUILTIN_TEMPLATES / f"{name}.mjml.j2").exists():
                continue
            rendered = renderer.render(dataclasses.replace(issue, template=name))
            html = rendered.fill_values(rendered.values({"email": "reader@example.org"}, "#")).html
            page = Path(tmp) / f"{name}.html"
            page.write_text(html, encoding="utf-8")
            shots = tuple(
                Shot(f"{name}-{label}-{scheme}.png", width, dark=scheme == "dark")
                for label, width in (("desktop", 600), ("phone", 375))
                for scheme in ("light", "dark")
            )
            for path in take_screenshots(page, out, shots):
                print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "screenshots")
