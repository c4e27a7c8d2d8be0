"""Where a snippet of the output came from: the issue or template file and line, for messages."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from newsletter.config import Config
from newsletter.render import BUILTIN_TEMPLATES, Rendered


class Locator:
    """Finds the file and line a snippet of the output came from, for messages."""

    def __init__(self, config: Config, rendered: Rendered) -> None:
        self.issue_path = str(rendered.issue.path)
        self.template = (rendered.issue.template or config.template) + ".mjml.j2"
        self.config_file = str(config.path or "newsletter.toml")
        self._issue = rendered.issue.path
        self._folders = (config.templates_dir, BUILTIN_TEMPLATES)

    @cached_property
    def _files(self) -> list[tuple[str, list[str]]]:
        """(label, lines) of the issue and every template, read once and only when needed."""
        paths = [self._issue]
        for folder in self._folders:
            if folder.is_dir():
                paths.extend(sorted(folder.rglob("*.j2")))
        files = []
        for path in paths:
            try:
                lines = path.read_text(encoding="utf-8").split("\n")
            except OSError:
                continue
            files.append((str(path) if path == self._issue else _rel(path), lines))
        return files

    def find(self, snippet: str, fallback: str, *alternatives: str) -> str:
        """file:line of the first source line holding the snippet (or an alternative)."""
        for wanted in (snippet, *alternatives):
            where = self._search(wanted) if wanted else None
            if where:
                return where
        return fallback

    def _search(self, snippet: str) -> str | None:
        for label, lines in self._files:
            for number, line in enumerate(lines, 1):
                if snippet in line:
                    return f"{label}:{number}"
        return None


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(BUILTIN_TEMPLATES.parent.parent))
    except ValueError:
        return str(path)
