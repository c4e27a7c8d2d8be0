"""Merge fields: per-recipient `{{ … }}` expressions swapped for tokens before Jinja runs,
then filled in for each recipient with one join."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import jinja2

from newsletter.errors import TemplateError

PER_RECIPIENT = frozenset({"subscriber", "unsubscribe_url"})
TOKEN = re.compile(r"zzm(\d+)zz")
_EXPR = re.compile(r"\{\{(-|\+)?(.*?)(-|\+)?\}\}", re.S)
_STMT = re.compile(r"\{%(.*?)%\}", re.S)


@dataclass(frozen=True)
class MergeField:
    source: str  # the Jinja expression as written
    where: str  # file:line it came from
    evaluate: Any  # compiled expression: context -> value


@dataclass
class MergeRegistry:
    """Per-recipient expressions found in templates and the issue, numbered by token."""

    env: jinja2.Environment
    fields: list[MergeField] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def protect(self, source: str, where: str, first_line: int = 1) -> str:
        """Replace each per-recipient {{ expression }} with a literal token; refuse them in {% %}."""
        for match in _STMT.finditer(source):
            if uses_recipient(self.env, "{{" + match.group(1).strip() + "}}"):
                line = first_line + source.count("\n", 0, match.start())
                raise TemplateError(
                    "subscriber fields can only be used inside {{ … }}, not in {% … %}",
                    where=f"{where}:{line}",
                )

        def swap(match: re.Match) -> str:
            expr = match.group(2).strip()
            if not uses_recipient(self.env, "{{" + expr + "}}"):
                return match.group(0)
            line = first_line + source.count("\n", 0, match.start())
            token = self.token_for(expr, f"{where}:{line}")
            opening, closing = match.group(1) or "", match.group(3) or ""
            return "{{" + f"{opening} {token!r} {closing}" + "}}"

        return _EXPR.sub(swap, source)

    def token_for(self, expr: str, where: str) -> str:
        if expr not in self._index:
            try:
                compiled = self.env.compile_expression(expr, undefined_to_none=False)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    f"invalid merge field {{{{ {expr} }}}}: {exc.message}", where=where
                ) from None
            self._index[expr] = len(self.fields)
            self.fields.append(MergeField(expr, where, compiled))
        return f"zzm{self._index[expr]}zz"


def uses_recipient(env: jinja2.Environment, source: str) -> bool:
    try:
        tokens = list(env.lex(source))
    except jinja2.TemplateSyntaxError:
        return False  # let the real compile report it with its line
    previous = None
    for _, kind, value in tokens:
        if kind == "name" and value in PER_RECIPIENT and previous != ".":
            return True
        previous = value if kind == "operator" else None
    return False


_SIMPLE_FIELD = re.compile(
    r"""subscriber\.([A-Za-z_]\w*)(?:\s*\|\s*default\(\s*(?:"([^"\\{}]*)"|'([^'\\{}]*)')\s*\))?"""
)


def simple_field(source: str) -> tuple[str | None, str | None] | None:
    """(field, default) for `subscriber.x` or `subscriber.x | default("…")`; (None, None) for
    `unsubscribe_url`; None for any other expression."""
    source = source.strip()
    if source == "unsubscribe_url":
        return None, None
    match = _SIMPLE_FIELD.fullmatch(source)
    if not match or hasattr(dict, match.group(1)):  # Jinja would find dict.items, .keys, …
        return None
    default = match.group(2) if match.group(2) is not None else match.group(3)
    return match.group(1), default


@functools.lru_cache(maxsize=64)
def compile_all(env: jinja2.Environment, source: str):
    """One compiled expression per set of merge fields: re-renders of an issue reuse it."""
    return env.compile_expression(source, undefined_to_none=False)


def fill(parts: list[str], values: dict[int, str]) -> str:
    """Join TOKEN.split() output, putting values[i] where token i was."""
    if len(parts) == 1:
        return parts[0]
    out = parts[:]
    for i in range(1, len(parts), 2):
        out[i] = values[int(parts[i])]
    return "".join(out)
