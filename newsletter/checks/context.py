"""What every checker looks at: config, the render, the sample message and its parsed HTML."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from newsletter.checks.locate import Locator
from newsletter.checks.model import Sample
from newsletter.config import Config
from newsletter.render import Rendered


@dataclass
class Context:
    """The inputs of one check run; the parsed HTML and source lines are worked out once."""

    config: Config
    rendered: Rendered
    sample: Sample
    sending: bool = False  # a send refuses what a preview only warns about

    @cached_property
    def locate(self) -> Locator:
        return Locator(self.config, self.rendered)

    @cached_property
    def doc(self):
        """The sample's HTML as an lxml document, or None when it does not parse."""
        import lxml.html

        try:
            return lxml.html.document_fromstring(self.sample.html)
        except (ValueError, lxml.etree.ParserError):
            return None

    @cached_property
    def anchors(self) -> list:
        return self.doc.xpath("//a") if self.doc is not None else []


def text_of(element) -> str:
    """An element's text with whitespace collapsed."""
    return " ".join(element.text_content().split())
