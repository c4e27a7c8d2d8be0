"""email.eml -> SpamAssassin's score and the rules that fired, offline (local tests only)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from newsletter.checks.model import ERROR, WARNING, Problem
from newsletter.spamproc import (
    COMMAND,
    ENV,
    INSTALL_HINT,
    OFF,
    SPAMD_ENV,
    SpamAssassinError,
    Started,
    find_spamassassin,
    start,
    unavailable,
)

# Callers (preview, the studio, tests, the benchmark) ask this module for all of it.
__all__ = [
    "COMMAND", "ENV", "INSTALL_HINT", "OFF", "SPAMD_ENV", "SpamAssassinError", "Started",
    "find_spamassassin", "start", "unavailable", "score", "score_started", "parse_report",
    "spam_problems", "check_message", "SpamReport", "SpamCheck", "Rule",
]  # fmt: skip

WARN_ABOVE = 2.0
ERROR_ABOVE = 5.0
_SUMMARY = re.compile(r"Content analysis details:\s+\((-?[\d.]+) points, (-?[\d.]+) required\)")
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")
_MORE = re.compile(r"^\s{20,}(\S.*)$")


@dataclass(frozen=True)
class Rule:
    name: str
    score: float
    description: str

    def __str__(self) -> str:
        return f"{self.score:+.1f} {self.name}: {self.description}"


@dataclass(frozen=True)
class SpamReport:
    score: float
    required: float
    rules: list[Rule] = field(default_factory=list)

    @property
    def scoring(self) -> list[Rule]:
        """The rules that moved the score (not the informational 0.0 ones)."""
        return [r for r in self.rules if abs(r.score) >= 0.05]


def score(eml: bytes, executable: str | None = None, timeout: float = 60.0) -> SpamReport:
    """Run SpamAssassin on one message; SpamAssassinError when it is missing or fails."""
    return score_started(Started(executable), eml, timeout)


def score_started(started: Started, eml: bytes, timeout: float = 60.0) -> SpamReport:
    """The report of a SpamAssassin started earlier, once it has scored the message."""
    stdout, stderr = started.output(eml, timeout)
    report = parse_report(stdout)
    if report is None:
        error = stderr.strip().splitlines()
        raise SpamAssassinError(
            f"{started.name} gave no report (exit {started.process.returncode})"
            + (f": {error[-1]}" if error else "")
        )
    return report


def parse_report(output: str) -> SpamReport | None:
    """The score and rules from the report `spamassassin --test-mode` appends to the message."""
    start = output.rfind("Content analysis details:")
    summary = _SUMMARY.search(output, start) if start >= 0 else None
    if summary is None:
        return None
    rules: list[Rule] = []
    table = output[summary.end() :].split("\n")
    for line in table:
        match = _RULE.match(line)
        if match:
            rules.append(Rule(match.group(2), float(match.group(1)), match.group(3).strip()))
        elif rules and (more := _MORE.match(line)):
            last = rules[-1]
            rules[-1] = Rule(last.name, last.score, f"{last.description} {more.group(1).strip()}")
        elif rules and not line.strip():
            break
    return SpamReport(float(summary.group(1)), float(summary.group(2)), rules)


def spam_problems(report: SpamReport) -> list[Problem]:
    """A warning above 2.0 points, an error above 5.0, naming the rules that scored."""
    if report.score <= WARN_ABOVE:
        return []
    severity = ERROR if report.score > ERROR_ABOVE else WARNING
    fired = ", ".join(f"{r.name} ({r.score:+.1f})" for r in report.scoring) or "none"
    limit = ERROR_ABOVE if severity == ERROR else WARN_ABOVE
    return [
        Problem(
            "spam-score",
            severity,
            "email.eml",
            f"SpamAssassin scores {report.score:.1f} points (above {limit:.1f}); rules: {fired}",
        )
    ]


@dataclass(frozen=True)
class SpamCheck:
    """What `newsletter preview` shows: one line, and the problems for the check list."""

    line: str
    problems: list[Problem] = field(default_factory=list)
    report: SpamReport | None = None


def check_message(eml: bytes, started: Started | str | None = None) -> SpamCheck:
    """Score a message when SpamAssassin is installed; say in one line why not otherwise."""
    started = start() if started is None else started
    if isinstance(started, str):
        return SpamCheck(started)
    try:
        report = score_started(started, eml)
    except SpamAssassinError as exc:
        return SpamCheck(f"not scored: {exc}")
    rules = ", ".join(f"{r.name} {r.score:+.1f}" for r in report.rules) or "no rules fired"
    total = report.score if report.score != 0 else 0.0  # SpamAssassin prints -0.0
    return SpamCheck(
        f"{total:.1f} points ({started.label}; warns above {WARN_ABOVE:.1f}): {rules}",
        spam_problems(report),
        report,
    )
