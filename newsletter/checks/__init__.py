"""The sample message -> the problems a subscriber would notice: `run_checks` runs every checker.

Each checker is a small function of a Context yielding Problems (content.py, links.py);
client support (compat), the spam score (spam) and broken links (linkcheck) are members
whose results come in from the caller, because they are slow or need a network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.checks import compat, content, contrast, links, spam
from newsletter.checks.context import Context
from newsletter.checks.model import ERROR, WARNING, Problem, Sample
from newsletter.config import Config
from newsletter.render import Rendered

if TYPE_CHECKING:
    from newsletter.checks.linkcheck import LinkResult

__all__ = ["CHECKERS", "ERROR", "WARNING", "Problem", "Sample", "run_checks"]

# In the order their problems are listed.
CHECKERS = (
    content.size,
    content.subject,
    links.unsubscribe,
    content.address,
    content.leftovers,
    links.images,
    links.links,
    content.placeholders,
    content.init_placeholders,
    content.mjml,
    contrast.theme_contrast,
)


def run_checks(
    config: Config,
    rendered: Rendered,
    sample: Sample,
    *,
    compat_reports: list[compat.FeatureReport] | None = None,
    spam_report: spam.SpamReport | None = None,
    link_results: list[LinkResult] | None = None,
    sending: bool = False,
) -> list[Problem]:
    """Every checker on the sample, then client support, and the spam and link results given."""
    context = Context(config, rendered, sample, sending)
    problems = [problem for checker in CHECKERS for problem in checker(context)]
    problems += compat.check_compat(sample.html, reports=compat_reports)
    if spam_report is not None:
        problems += spam.spam_problems(spam_report)
    if link_results is not None:
        from newsletter.checks import linkcheck  # urllib and threads, only for --check-links

        problems += linkcheck.link_problems(link_results, rendered.issue.path)
    return problems
