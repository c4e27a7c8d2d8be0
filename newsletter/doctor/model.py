"""What a doctor run says: one verdict per rule, and the report they make."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"  # works today, but worth changing; does not fail the run
    FAIL = "fail"
    SKIP = "skip"  # could not be checked from here (e.g. serve not reachable)


@dataclass(frozen=True)
class Verdict:
    rule: str  # spf, dkim, dmarc, unsubscribe, mx, postal_address, from_domain
    status: Status
    summary: str  # one line: what was found
    fix: list[str] = field(default_factory=list)  # what to change: a record to publish, a setting
    details: list[str] = field(default_factory=list)  # what was looked at, for --json and -v

    def as_dict(self) -> dict:
        data = asdict(self)
        data["status"] = str(self.status)
        return data


@dataclass(frozen=True)
class Report:
    domain: str
    provider: str
    verdicts: list[Verdict]

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status is Status.FAIL]

    @property
    def passed(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict:
        return {
            "domain": self.domain,
            "provider": self.provider,
            "passed": self.passed,
            "verdicts": [v.as_dict() for v in self.verdicts],
        }


def verdict(rule: str, status: Status, summary: str, *fix: str, details=()) -> Verdict:
    return Verdict(rule, status, summary, list(fix), list(details))
