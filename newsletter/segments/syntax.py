"""The segment language: text -> tokens -> a small tree, parsed by hand (never eval'ed).

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | "tag:" NAME | COLUMN OP VALUE
    OP      := = | != | < | <= | > | >= | ~
    VALUE   := "quoted text" | 'quoted text' | a bare word (2026-01-01, UA, 42)

A mistake raises SegmentError whose message starts with the column it is at ("col 14: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.errors import NewsletterError

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")
KEYWORDS = ("and", "or", "not")
TAG_PREFIX = "tag:"
MAX_LENGTH = 2000  # characters: a segment is a line, not a program
MAX_DEPTH = 50  # nested parentheses and `not`s, so a hostile text cannot exhaust the stack
# A bare word: what a column name, a tag, a date, a number or a plain value is made of.
_WORD = re.compile(r"[\w.:/+@-]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class SegmentError(NewsletterError):
    """A segment that cannot be parsed, or names a column the list does not have."""


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "op", "(", ")", "end"
    text: str
    col: int  # 1-based column of its first character


# The tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tag:
    name: str


@dataclass(frozen=True)
class Compare:
    column: str
    op: str
    value: str
    number: bool = False  # an unquoted number: compared as a number, not as text
    col: int = 0  # where the column name is, for the unknown-column message


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Tag | Compare | Not | And | Or


# Tokens -----------------------------------------------------------------------------------


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise SegmentError(f"col {MAX_LENGTH + 1}: longer than {MAX_LENGTH} characters")
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(Token(char, char, i + 1))
            i += 1
        elif char in "=!<>~":
            two = text[i : i + 2]
            op = two if two in OPERATORS else char
            if op not in OPERATORS:  # a lone "!"
                raise SegmentError(f"col {i + 1}: '!' must be followed by '=' (!=)")
            tokens.append(Token("op", op, i + 1))
            i += len(op)
        elif char in "\"'":
            value, end = _string(text, i)
            tokens.append(Token("string", value, i + 1))
            i = end
        else:
            match = _WORD.match(text, i)
            if not match:
                raise SegmentError(f"col {i + 1}: unexpected character {char!r}")
            tokens.append(Token("word", match.group(), i + 1))
            i = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted value starting at `start`: its text (\\" and \\\\ escapes) and where it ends."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
        elif char == quote:
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise SegmentError(f"col {start + 1}: the quoted value is never closed (a missing {quote})")


# Parser -----------------------------------------------------------------------------------


def parse(text: str) -> Node:
    """The tree of a segment expression; SegmentError ("col N: ...") when it is not one."""
    parser = _Parser(tokenize(text))
    if parser.peek.kind == "end":
        raise SegmentError("col 1: the segment is empty")
    node = parser.expr(0)
    end = parser.peek
    if end.kind != "end":
        if end.kind == ")":
            raise SegmentError(f"col {end.col}: ')' without a matching '('")
        raise SegmentError(f"col {end.col}: expected 'and' or 'or' before {_shown(end)}")
    return node


def _shown(token: Token) -> str:
    if token.kind == "end":
        return "the end"
    if token.kind == "string":
        return f'"{token.text}"'
    return f"'{token.text}'"


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek
        if token.kind == "word" and token.text.lower() == word:
            self.at += 1
            return True
        return False

    def expr(self, depth: int) -> Node:
        items = [self.term(depth)]
        while self.keyword("or"):
            items.append(self.term(depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self, depth: int) -> Node:
        items = [self.factor(depth)]
        while self.keyword("and"):
            items.append(self.factor(depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self, depth: int) -> Node:
        token = self.peek
        if depth > MAX_DEPTH:
            raise SegmentError(f"col {token.col}: nested more than {MAX_DEPTH} deep")
        if self.keyword("not"):
            return Not(self.factor(depth + 1))
        if token.kind == "(":
            self.take()
            node = self.expr(depth + 1)
            close = self.peek
            if close.kind != ")":
                if close.kind == "end":
                    raise SegmentError(f"col {token.col}: '(' is never closed")
                raise SegmentError(
                    f"col {close.col}: expected ')' or 'and'/'or', found {_shown(close)}"
                )
            self.take()
            return node
        if token.kind == "word" and token.text.lower().startswith(TAG_PREFIX):
            self.take()
            name = token.text[len(TAG_PREFIX) :]
            if not name:
                raise SegmentError(
                    f"col {token.col + len(TAG_PREFIX)}: expected a tag name after 'tag:'"
                )
            return Tag(name)
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise SegmentError(
                f"col {token.col}: expected a column name, tag:NAME, 'not' or '(', "
                f"found {_shown(token)}"
            )
        self.take()
        if not COLUMN_NAME.fullmatch(token.text):
            raise SegmentError(f"col {token.col}: {token.text!r} is not a column name")
        op = self.peek
        if op.kind != "op":
            raise SegmentError(
                f"col {op.col}: expected an operator ({' '.join(OPERATORS)}) after "
                f"'{token.text}', found {_shown(op)}"
            )
        self.take()
        value = self.peek
        if value.kind == "string":
            self.take()
            return Compare(token.text, op.text, value.text, False, token.col)
        if value.kind == "word" and value.text.lower() not in KEYWORDS:
            self.take()
            number = bool(_NUMBER.fullmatch(value.text)) and op.text != "~"
            return Compare(token.text, op.text, value.text, number, token.col)
        raise SegmentError(f"col {value.col}: expected a value after '{op.text}'")


def columns_of(node: Node) -> list[Compare]:
    """The comparisons in a tree, in order (to check their columns exist)."""
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, Not):
        return columns_of(node.item)
    if isinstance(node, And | Or):
        return [c for item in node.items for c in columns_of(item)]
    return []


def is_number(text: str) -> bool:
    return bool(_NUMBER.fullmatch(text))
