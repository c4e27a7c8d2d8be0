"""The email's language and writing direction: `lang` and `dir` from front matter or config."""

from __future__ import annotations

import re

# BCP 47 in the shape mail clients and screen readers use: a 2-3 letter language, then
# optional script, region or variant subtags (en, pt-BR, zh-Hant-TW, de-CH-1996).
_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
DIRECTIONS = ("ltr", "rtl", "auto")


def lang_problem(value: object) -> str | None:
    """Why a `lang` value is not a language tag, or None when it is one."""
    if isinstance(value, str) and _TAG.fullmatch(value):
        return None
    return f"lang: expected a language tag such as en or pt-BR, got {value!r}"


def dir_problem(value: object) -> str | None:
    """Why a `dir` value is not ltr, rtl or auto, or None when it is."""
    if value in DIRECTIONS:
        return None
    return f"dir: expected ltr, rtl or auto, got {value!r}"
