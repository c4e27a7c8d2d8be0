"""HTML pages from templates/web/: the workspace's own first, then the built-in ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from newsletter.config import Config

BUILTIN = Path(__file__).resolve().parent.parent / "templates" / "web"
# Flags a page may be given; undefined names are errors (StrictUndefined) to catch typos.
PAGE_DEFAULTS: dict[str, Any] = {"expired_form": False, "error": None, "confirm": False, "csrf": {}}


class Pages:
    """Renders pages and the confirmation message; every value is HTML-escaped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        folders = [config.templates_dir / "web", BUILTIN]
        # Workspace templates are input, not code (see render.Renderer).
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader([str(f) for f in folders]),
            autoescape=jinja2.select_autoescape(("html", "html.j2"), default_for_string=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.text_env = self.env.overlay(autoescape=False)
        self.publication = {
            "name": config.name,
            "postal_address": config.postal_address,
            "base_url": (config.base_url or "").rstrip("/") or None,
        }

    def render(self, name: str, **context: Any) -> str:
        template = self.env.get_template(f"{name}.html.j2")
        return template.render({**PAGE_DEFAULTS, "publication": self.publication, **context})

    def render_text(self, name: str, **context: Any) -> str:
        template = self.text_env.get_template(f"{name}.txt.j2")
        return template.render(publication=self.publication, **context)
