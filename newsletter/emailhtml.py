"""MJML -> responsive HTML (mjml-python), with premailer inlining the CSS that belongs inline."""

from __future__ import annotations

import functools
import logging
import re

from newsletter.errors import TemplateError

_INLINE_STYLE = re.compile(r"<mj-style\s+inline=\"inline\"\s*>(.*?)</mj-style>", re.S)
_DOCTYPE = re.compile(r"\s*<!doctype[^>]*>", re.I)
_PADDING = re.compile(r'(\spadding(?:-[a-z]+)?=")([^"]*)(")')
_BARE_ZERO = re.compile(r"(?<![\w.])0(?![\w.%])")


def _unitless_zeros(source: str) -> str:
    """`padding="0 28px"` -> `padding="0px 28px"`.

    mrml drops a padding shorthand holding a unitless 0 when it works out an image's box,
    so a full-width image in a padded column got width="600" where npm mjml writes 544,
    and Outlook for Windows, which sizes images by that attribute, overflowed.
    """
    return _PADDING.sub(lambda m: m[1] + _BARE_ZERO.sub("0px", m[2]) + m[3], source)


def compile_mjml(source: str, where: str = "MJML") -> str:
    """MJML -> HTML; `<mj-style inline="inline">` rules are inlined (premailer) into the result."""
    from mjml import mjml2html

    from newsletter.deferimport import defer_import

    # premailer imports requests (~30 ms) to fetch external stylesheets, which it never does
    # here (allow_network=False): imported only if something else uses it.
    defer_import("requests")
    inline_rules = _INLINE_STYLE.findall(source)
    try:
        html = mjml2html(_unitless_zeros(_INLINE_STYLE.sub("", source)), disable_comments=True)
    except ValueError as exc:
        raise TemplateError(f"invalid MJML: {exc}{_xml_hint(source)}", where=where) from None
    return inline_css(html, inline_rules)


def _xml_hint(source: str) -> str:
    """Where an XML parser trips over the rendered MJML: mrml's own errors have no line."""
    from lxml import etree

    try:
        etree.fromstring(source.encode(), etree.XMLParser(recover=False, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        return f" (rendered MJML line {exc.lineno}: {exc.msg})"
    return ""


def inline_css(html: str, rules: list[str]) -> str:
    """Inline the given CSS into style attributes; the head's own <style> blocks stay as written.

    MJML's head styles are resets, Outlook fixes, media queries and dark-mode rules that
    work only from a <style> block; inlining them would bloat every cell towards Gmail's
    102 KB clip for nothing, so premailer is told to leave them alone.
    """
    Premailer = _premailer()
    # lxml serializes the tree without the doctype, which puts every client in quirks mode.
    doctype = _DOCTYPE.match(html)
    html = html.replace("<style", '<style data-premailer="ignore"')
    inlined = (
        Premailer(
            html,
            css_text=rules,
            remove_classes=False,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            allow_network=False,
            # premailer turns a rule's CSS width into a width attribute (img: "100%"); Outlook
            # sizes images by the pixel width MJML wrote, so those attributes stay MJML's.
            disable_basic_attributes=["width", "height"],
            align_floating_images=False,  # done by _align_floated_images, without validating
        )
        .transform(pretty_print=False)
        .replace(' data-premailer="ignore"', "")
    )
    if doctype and not _DOCTYPE.match(inlined):
        inlined = doctype.group().strip() + inlined
    return _align_floated_images(inlined)


@functools.cache
def _premailer():
    """premailer's Premailer, its element styles parsed without cssutils' validation.

    premailer 3.10 validates each element's own style attribute (merge_styles calls
    csstext_to_pairs without `validate`) and each image's (align_floating_images), whatever
    disable_validation says. Validating changes nothing it writes, but compiles dozens of
    cssutils' large property regexes in every process: 80 of the 95 ms inlining took.
    """
    from premailer import Premailer, merge_style

    parse = merge_style.csstext_to_pairs
    if getattr(parse, "_lock", None) is not None and not hasattr(parse, "unvalidated"):

        def unvalidated(csstext: str, validate: bool = False):
            return parse(csstext, validate=validate)

        unvalidated._lock = parse._lock  # premailer's function takes it by its own name
        unvalidated.unvalidated = True
        merge_style.csstext_to_pairs = unvalidated
    return Premailer


_IMG = re.compile(r"<img\b[^>]*>", re.I)
_FLOAT = re.compile(r"""\bstyle="[^"]*?\bfloat\s*:\s*(left|right)\b""", re.I)


def _align_floated_images(html: str) -> str:
    """align="left|right" on images floated left or right, as premailer's align_floating_images
    does: Outlook ignores CSS floats but honours the attribute."""
    if "float" not in html:
        return html

    def aligned(tag: re.Match) -> str:
        text = tag.group()
        floated = _FLOAT.search(text)
        if floated is None or re.search(r"\salign=", text, re.I):
            return text
        return f'{text[:4]} align="{floated[1].lower()}"{text[4:]}'

    return _IMG.sub(aligned, html)
