"""Inlining without cssutils' validation (newsletter/emailhtml.py's _premailer) writes the
same HTML, byte for byte, as premailer as shipped, and does not import `requests`."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.emailhtml import compile_mjml
from newsletter.issue import load_issue
from newsletter.render import Renderer

# premailer as shipped, in a process of its own: merge_styles validates every inline style.
SHIPPED = """
import sys
from premailer import Premailer
from newsletter import emailhtml
emailhtml._premailer = lambda: Premailer
sys.stdout.buffer.write(emailhtml.compile_mjml(sys.stdin.buffer.read().decode()).encode())
"""


@pytest.mark.parametrize("template", ["default", "letter", "digest"])
@pytest.mark.parametrize("issue_file", ["issues/sample.md", "issues/elements.md"])
def test_inlining_without_cssutils_validation_gives_the_same_html_byte_for_byte(
    workspace, template, issue_file
):
    from premailer import merge_style

    issue = dataclasses.replace(load_issue(Path(issue_file)), template=template)
    source = Renderer(load_config(workspace / "newsletter.toml")).render(issue).mjml
    ours = compile_mjml(source)
    assert getattr(merge_style.csstext_to_pairs, "unvalidated", False)  # the workaround is on
    shipped = subprocess.run(
        [sys.executable, "-c", SHIPPED], input=source.encode(), capture_output=True,
        check=True, env=os.environ, timeout=60,
    ).stdout.decode()  # fmt: skip
    assert ours == shipped


def test_compiling_mjml_imports_requests_only_when_something_uses_it():
    probe = (
        "import sys\n"
        "from newsletter.emailhtml import compile_mjml\n"
        "compile_mjml('<mjml><mj-body><mj-text>hi</mj-text></mj-body></mjml>')\n"
        "print('urllib3' in sys.modules)\n"
        "import requests\n"
        "print(requests.codes.ok, 'urllib3' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "200", "True"], done.stderr
