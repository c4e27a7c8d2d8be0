"""Markdown -> HTML and Markdown -> plain text, from one parse of the same source."""

from __future__ import annotations

import functools
import re
import textwrap

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

WIDTH = 72
_TAG = re.compile(r"<[^>]*>")


@functools.cache
def _md() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def inline_html(source: str) -> str:
    return _md().renderInline(source)


def convert(source: str, width: int = WIDTH) -> tuple[str, str]:
    """(HTML, plain text) of a Markdown source, from a single parse; the text has paragraphs
    wrapped and links as readable URLs."""
    md = _md()
    tokens = md.parse(source)
    html = md.renderer.render(tokens, md.options, {})
    tree = SyntaxTreeNode(tokens)
    blocks = [b for b in (_block(child, width) for child in tree.children) if b]
    return html, "\n\n".join(blocks)


def inline_text(source: str) -> str:
    tree = SyntaxTreeNode(_md().parse(source))
    return " ".join(_inline(node) for node in tree.walk() if node.type == "inline").strip()


def wrap(text: str, width: int, first: str = "", rest: str = "") -> str:
    lines = []
    for para_line in text.split("\n"):
        wrapped = textwrap.wrap(
            para_line,
            width=width,
            initial_indent=first if not lines else rest,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines.extend(wrapped or [first if not lines else rest])
    return "\n".join(line.rstrip() for line in lines)


def image_text(alt: str | None, src: str | None) -> str:
    """An image in the text part: its alt text and where it is; nothing for a decorative one."""
    if not alt:
        return ""
    return f"[{alt}] ({src})" if src else f"[{alt}]"


def html_text(source: str) -> str:
    """The words of a piece of raw HTML, tags dropped, whitespace collapsed."""
    import html

    return " ".join(html.unescape(_TAG.sub(" ", source)).split())


def _block(node: SyntaxTreeNode, width: int) -> str:
    kind = node.type
    if kind == "paragraph":
        return wrap(_inline(node.children[0]), width)
    if kind == "heading":
        return _inline(node.children[0]).upper()
    if kind in ("bullet_list", "ordered_list"):
        items = []
        start = int(node.attrs.get("start", 1)) if kind == "ordered_list" else 1
        for number, item in enumerate(node.children, start):
            marker = f"{number}. " if kind == "ordered_list" else "- "
            inner = "\n".join(_block(child, width - len(marker)) for child in item.children)
            first, _, rest = inner.partition("\n")
            pad = " " * len(marker)
            rest = "\n".join(pad + line if line else line for line in rest.split("\n"))
            items.append(marker + first + ("\n" + rest if rest else ""))
        return "\n".join(items)
    if kind == "blockquote":
        inner = "\n\n".join(_block(child, width - 2) for child in node.children)
        return "\n".join(("> " + line).rstrip() for line in inner.split("\n"))
    if kind in ("fence", "code_block"):
        return "\n".join("    " + line for line in node.content.rstrip("\n").split("\n"))
    if kind == "hr":
        return "-" * 20
    if kind == "html_block":
        # the HTML shows what raw HTML says, so the text part says it too (MPART_ALT_DIFF)
        return wrap(html_text(node.content), width)
    if kind == "table":
        rows = []
        for row in node.walk():
            if row.type == "tr":
                rows.append(" | ".join(_inline(cell.children[0]) for cell in row.children))
        return "\n".join(rows)
    return "\n\n".join(_block(child, width) for child in node.children)


def _inline(node: SyntaxTreeNode) -> str:
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind == "text":
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "code_inline":
            out.append(child.content)
        elif kind == "image":
            alt = _inline(child) or child.content
            out.append(image_text(alt, str(child.attrs.get("src", ""))))
        elif kind == "link":
            label = _inline(child)
            href = str(child.attrs.get("href", ""))
            out.append(label if not href or href == label else f"{label} ({href})")
        elif kind in ("html_inline",):
            continue
        else:
            out.append(_inline(child))
    return "".join(out)
