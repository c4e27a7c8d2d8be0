"""Compiled templates are kept between processes, and an edited template is never served
from the cache."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from newsletter.render import BUILTIN_TEMPLATES


def preview(tmpdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEWSLETTER_SPAMASSASSIN": "off", "TMPDIR": str(tmpdir)}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/sample.md"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_a_second_preview_uses_the_compiled_templates_and_writes_the_same_files(
    workspace, tmp_path
):
    first = preview(tmp_path)
    assert first.returncode == 0, first.stderr
    html = (workspace / "build" / "sample" / "email.html").read_bytes()
    text = (workspace / "build" / "sample" / "email.txt").read_bytes()
    folder = next(tmp_path.glob("_jinja2-cache-*"))
    cached = sorted(folder.glob("__newsletter_*.cache"))
    assert len(cached) >= 3  # the template, its partials, the text part
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    times = [path.stat().st_mtime_ns for path in cached]
    second = preview(tmp_path)
    assert second.returncode == 0, second.stderr
    assert (workspace / "build" / "sample" / "email.html").read_bytes() == html
    assert (workspace / "build" / "sample" / "email.txt").read_bytes() == text
    assert [path.stat().st_mtime_ns for path in cached] == times  # read, not compiled again


def test_an_edited_template_renders_as_edited_after_a_cached_preview(workspace, tmp_path):
    footer = workspace / "templates" / "partials" / "footer.mjml.j2"
    footer.parent.mkdir(parents=True, exist_ok=True)
    source = (BUILTIN_TEMPLATES / "partials" / "footer.mjml.j2").read_text(encoding="utf-8")
    built = workspace / "build" / "sample" / "email.html"
    for words in ("Printed on paper.", "Printed on recycled electrons."):
        footer.write_text(source.replace("</mj-text>", f"{words}</mj-text>", 1), "utf-8")
        done = preview(tmp_path)  # the first compiles and caches the footer
        assert done.returncode == 0, done.stderr
    html = built.read_text(encoding="utf-8")
    assert "Printed on recycled electrons." in html
    assert "Printed on paper." not in html
