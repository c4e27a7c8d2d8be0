"""MJML -> responsive HTML (mjml-python), with premailer inlining the CSS that belongs inline."""

from __future__ import annotations

import functools
import logging
import re
import types

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
        )
        .transform(pretty_print=False)
        .replace(' data-premailer="ignore"', "")
    )
    if doctype and not _DOCTYPE.match(inlined):
        inlined = doctype.group().strip() + inlined
    return inlined


@functools.cache
def _premailer():
    """premailer's Premailer class, imported once with two fixes for speed (output unchanged).

    - `requests` (about 30 ms to import) serves only external stylesheets, which
      allow_network=False never fetches: it is loaded lazily, on first use, if ever.
    - merge_styles() re-parses each element's inline style with cssutils validation on,
      whatever disable_validation says (premailer 3.10 calls csstext_to_pairs(style)
      without `validate`), and the first validation compiles dozens of cssutils' profile
      regexes per process. Validation only logs, it never changes what is parsed
      (tests/test_emailhtml.py pins the output byte for byte), so the function
      merge_styles() calls gets validate=False unless told otherwise.
    """
    import sys

    if "requests" not in sys.modules:
        sys.modules["requests"] = _ImportedOnFirstUse("requests")
    from premailer import Premailer, merge_style

    original = merge_style.csstext_to_pairs
    lock = getattr(original, "_lock", None)
    if lock is not None and not hasattr(original, "validating"):  # guard: a premailer we know

        def csstext_to_pairs(csstext, validate=False):
            return original(csstext, validate=validate)

        csstext_to_pairs._lock = lock  # the original's body reads the lock through this name
        csstext_to_pairs.validating = original
        merge_style.csstext_to_pairs = csstext_to_pairs
    return Premailer


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in for a module until an attribute is asked for; then imports the real one,
    which takes its place in sys.modules. (importlib.util.LazyLoader would load it at once:
    the `import` statement itself reads the module's __spec__.)"""

    def __getattr__(self, name: str):
        import importlib
        import sys

        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)
