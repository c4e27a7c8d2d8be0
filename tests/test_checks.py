"""run_checks is the one list of problems: preview, the studio and send all report what it finds."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_studio import Running
from typer.testing import CliRunner

from newsletter import sending
from newsletter.checks import Problem, run_checks
from newsletter.cli import app
from newsletter.config import load_config
from newsletter.issue import load_issue
from newsletter.render import Renderer
from newsletter.sample import sample_message
from newsletter.tokens import load_secret

# Issues whose problems span every kind of checker: errors, warnings, client support.
ISSUES = ["problems/no-unsubscribe.md", "problems/links.md", "problems/no-preheader.md"]


def run_checks_directly(workspace: Path, issue: str) -> list[str]:
    config = load_config(workspace / "newsletter.toml")
    loaded = load_issue(Path("issues") / issue)
    rendered = Renderer(config).render(loaded)
    list_name = loaded.list or config.list
    sample = sample_message(config, rendered, list_name, load_secret(config.state_dir))
    return [str(problem) for problem in run_checks(config, rendered, sample)]


def reported_by_preview(issue: str) -> list[str]:
    output = CliRunner().invoke(app, ["preview", f"issues/{issue}"]).output
    listed = output.split("\nChecks:    ", 1)[1].split("\nWrote ", 1)[0].split("\n")[1:]
    return [line.removeprefix("  ") for line in listed]


def reported_by_studio(workspace: Path, issue: str) -> list[str]:
    running = Running(workspace, issue)
    try:
        with httpx.Client(base_url=running.url, timeout=10) as http:
            problems = http.get("/api/state").json()["problems"]
    finally:
        running.stop()
    return [str(Problem(**problem)) for problem in problems]


@pytest.mark.parametrize("issue", ISSUES)
def test_preview_studio_and_send_report_exactly_what_run_checks_finds(workspace, issue):
    expected = run_checks_directly(workspace, issue)
    assert expected

    assert reported_by_preview(issue) == expected
    assert reported_by_studio(workspace, issue) == expected

    config = load_config(workspace / "newsletter.toml")
    errors = [p for p in expected if ": error " in p]
    if errors:
        with pytest.raises(sending.ChecksFailed) as refused:
            sending.prepare(config, Path("issues") / issue, provider="outbox")
        assert f"the issue has {len(errors)} error(s)" in str(refused.value)
        assert f"(first: {errors[0]})" in str(refused.value)
    else:
        prepared = sending.prepare(config, Path("issues") / issue, provider="outbox")
        assert [str(p) for p in prepared.checked.problems] == expected
