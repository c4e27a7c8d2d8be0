"""What the checks take and give: the sample message in, Problems out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    """One thing a subscriber would notice, with its code, severity and place."""

    code: str
    severity: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity} {self.code}: {self.message}"


@dataclass(eq=False)
class Sample:
    """The exact message one reader gets: its parts, unsubscribe link and (on demand) bytes."""

    to: str
    subject: str
    html: str
    text: str
    unsubscribe_url: str  # the https link, or the mailto one without base_url
    build_eml: Callable[[], bytes] = field(repr=False)

    @cached_property
    def eml(self) -> bytes:
        """The whole message as sent (built once, and only for the checks that read it)."""
        return self.build_eml()
