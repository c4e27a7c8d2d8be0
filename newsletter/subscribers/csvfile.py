"""Reading list files: streamed CSV rows with bounded lines, header parsing and row checks."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, partial
from itertools import chain
from pathlib import Path
from typing import TextIO

from newsletter.errors import SubscriberError
from newsletter.subscribers.model import (
    COLUMNS,
    HEADER_UNSAFE,
    STATUS_RANK,
    STATUSES,
    SURROGATE,
    TAGS,
    InvalidEmail,
    Problem,
    Subscriber,
    display,
    fast_normalize,
    normalize_email,
    parse_tags,
)

MAX_LINE = 1 << 20  # characters; csv's own field limit (128 KiB) bounds quoted values


@dataclass(frozen=True)
class Columns:
    """A header: the names as written, where each known column is, and the custom ones."""

    names: tuple[str, ...]
    pos: Mapping[str, int]
    custom: tuple[tuple[str, int], ...]

    @cached_property
    def standard(self) -> tuple[int, ...]:
        """Positions of the list columns (email, name, status, ...), missing ones at the sentinel."""
        return tuple(self.pos.get(name, len(self.names)) for name in COLUMNS)

    @classmethod
    def parse(cls, header: Sequence[str], known: Sequence[str], where: str) -> Columns:
        names = tuple(name.strip() for name in header)
        pos: dict[str, int] = {}
        custom: list[tuple[str, int]] = []
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if not name:
                raise SubscriberError(f"column {i + 1} of the header has no name", where=where)
            lowered = name.lower()
            ident = lowered if lowered in known else name
            if ident in seen:
                raise SubscriberError(
                    f"column {name!r} appears twice (columns {seen[ident] + 1} and {i + 1})",
                    where=where,
                )
            seen[ident] = i
            if lowered in known:
                pos[lowered] = i
            else:
                custom.append((name, i))
        if "email" not in pos:
            raise SubscriberError(_no_email_message(names), where=where)
        return cls(names, pos, tuple(custom))

    @cached_property
    def tags_at(self) -> int:
        """Position of the `tags` column (any case), or the empty sentinel."""
        for custom, i in self.custom:
            if custom.lower() == TAGS:
                return i
        return len(self.names)

    @cached_property
    def fields(self) -> tuple[tuple[str, int], ...]:
        """The custom columns that are the subscriber's fields (all but `tags`)."""
        return tuple((name, i) for name, i in self.custom if name.lower() != TAGS)

    def index(self, name: str) -> int:
        """Position of a column; a missing one maps to the empty sentinel at the end of each row."""
        if name in self.pos:
            return self.pos[name]
        if name == TAGS:
            return self.tags_at
        for custom, i in self.custom:
            if custom == name:
                return i
        return len(self.names)

    def extended(self, needed: Iterable[str], known: Sequence[str]) -> Columns:
        names = list(self.names)
        for name in needed:
            if self.index(name) == len(self.names) and name not in names:
                names.append(name)
        if len(names) == len(self.names):
            return self
        return Columns.parse(names, known, "")


def _no_email_message(names: Sequence[str]) -> str:
    if len(names) == 1:
        for delimiter, label in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
            if delimiter in names[0]:
                return (
                    f"no 'email' column: the header is separated by {label}; "
                    "subscriber lists are comma-separated"
                )
    return f"no 'email' column (columns: {', '.join(names) or 'none'})"


@dataclass
class CsvSource:
    where: str
    header: list[str]
    header_line: int
    bom: bool
    newline: str
    rows: Iterator[tuple[int, list[str]]]  # (first line of the row, values padded + sentinel)
    columns: Columns | None = None  # set for list and suppression files


@contextmanager
def read_csv(
    path: Path, *, sniff: bool = False, problems: list[Problem] | None = None
) -> Iterator[CsvSource]:
    """Open a CSV file for streaming; structural problems raise (or, given `problems`, are kept)."""
    where = display(path)
    try:
        with path.open("rb") as raw:
            bom = raw.read(3) == codecs.BOM_UTF8
        f = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise SubscriberError("file not found", where=where) from None
    except OSError as exc:
        raise SubscriberError(f"cannot read: {exc.strerror or exc}", where=where) from None
    with f:
        lines = _lines(f, path, where)
        first = ""
        skipped = 0
        for first in lines:
            if first.strip():
                break
            skipped += 1
        if not first.strip():
            raise SubscriberError(
                "the file is empty; the first line must be a header naming the columns, "
                "at least 'email'",
                where=where,
            )
        delimiter = _sniff(first) if sniff else ","
        reader = csv.reader(chain([first], lines), delimiter=delimiter, strict=True)
        reader_where = f"{where}:{skipped + 1}"
        try:
            header = next(reader)
        except csv.Error as exc:
            raise SubscriberError(_csv_message(exc), where=reader_where) from None
        newline = "\r\n" if first.endswith("\r\n") else "\n"
        header_line = skipped + reader.line_num
        rows = _rows(reader, len(header), where, skipped, problems)
        yield CsvSource(where, header, header_line, bom, newline, rows)


def _lines(f: TextIO, path: Path, where: str) -> Iterator[str]:
    """Physical lines, refusing over-long lines (without reading them whole), NULs and bad UTF-8."""
    readline = partial(f.readline, MAX_LINE)
    number = 0
    while True:
        try:
            line = readline()
        except UnicodeDecodeError:
            raise _utf8_error(path, where) from None
        if not line:
            return
        number += 1
        if len(line) >= MAX_LINE and line[-1] not in "\r\n":
            raise SubscriberError(
                f"line longer than {MAX_LINE:,} characters: this is not a subscriber list "
                "(or a quote is missing)",
                where=f"{where}:{number}",
            )
        if "\0" in line:
            raise SubscriberError(
                "NUL byte: the file is binary or UTF-16; save it as CSV UTF-8",
                where=f"{where}:{number}",
            )
        yield line


def _utf8_error(path: Path, where: str) -> SubscriberError:
    # The decoder works ahead in blocks, so find the line again to name it.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        for number, line in enumerate(iter(partial(f.readline, MAX_LINE), ""), 1):
            if number == 1 and line[:2] in ("\udcff\udcfe", "\udcfe\udcff"):
                return SubscriberError("the file is UTF-16; save it as CSV UTF-8", where=where)
            bad = SURROGATE.search(line)
            if bad:
                byte = ord(bad.group()) - 0xDC00
                return SubscriberError(
                    f"not valid UTF-8 (byte 0x{byte:02x}); save the file as CSV UTF-8",
                    where=f"{where}:{number}",
                )
    return SubscriberError("not valid UTF-8; save the file as CSV UTF-8", where=where)


def _sniff(line: str) -> str:
    if "," in line:
        return ","
    return ";" if ";" in line else "\t" if "\t" in line else ","


def _csv_message(exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return 'a quoted value starting on this line is never closed (a missing ")'
    if "field larger than field limit" in text:
        return (
            f"a value longer than {csv.field_size_limit():,} characters "
            '(probably a missing closing ")'
        )
    if "expected after" in text:
        return 'text after a closing quote: quote the whole value and double any " inside it'
    return text


def _rows(
    reader, width: int, where: str, offset: int, problems: list[Problem] | None
) -> Iterator[tuple[int, list[str]]]:
    pad = [""] * (width + 1)
    previous = reader.line_num
    while True:
        try:
            for values in reader:  # the common path: no per-row try or next() call
                line, previous = offset + previous + 1, reader.line_num
                size = len(values)
                if size <= 1 and not (values and values[0].strip()):
                    continue  # a blank line
                if size == width:
                    values.append("")
                elif size < width:
                    values.extend(pad[size:])
                elif any(values[width:]):
                    message = (
                        f"{size} values but the header has {width} columns "
                        "(a comma in a value that is not in quotes?)"
                    )
                    if problems is None:
                        raise SubscriberError(message, where=f"{where}:{line}")
                    problems.append(Problem(where, line, message))
                    continue
                else:
                    del values[width:]  # trailing empty cells, as spreadsheets write them
                    values.append("")
                yield line, values
            return
        except csv.Error as exc:
            message, line = _csv_message(exc), offset + previous + 1
            terminal = "end of data" in str(exc) or "field limit" in str(exc)
            if problems is None or terminal:
                raise SubscriberError(message, where=f"{where}:{line}") from None
            problems.append(Problem(where, line, message))
            previous = reader.line_num


def status_of(value: str) -> str:
    return value.strip().lower() or "subscribed"


def to_subscriber(cols: Columns, line: int, values: list[str], key: str = "") -> Subscriber:
    """A row as a Subscriber, without checking it (key: its key, when already known)."""
    e, n, s, sa, ua, src = cols.standard
    return Subscriber(
        values[e].strip(),
        values[n].strip(),
        status_of(values[s]),
        values[sa].strip(),
        values[ua].strip(),
        values[src],
        {name: value for name, i in cols.fields if (value := values[i])},
        line,
        key,
        parse_tags(values[cols.tags_at]) if cols.tags_at < len(cols.names) else (),
    )


def check_row(
    email: str, name: str, status: str, dates: tuple[str, str], deliverability: bool = False
) -> tuple[str, list[str] | None]:
    """The key of a row's (stripped) values and what is wrong with them (None, usually)."""
    # This runs for every row of every list read: the common case takes the fewest steps.
    problems = None
    normalized = None if deliverability else fast_normalize(email)
    if normalized is not None:
        key = normalized.casefold()
    elif not email:
        key, problems = "", ["missing email address"]
    else:
        try:
            key = normalize_email(email, check_deliverability=deliverability).casefold()
        except InvalidEmail as exc:
            key, problems = "", [f"invalid email address {email!r}: {exc}"]
    if status not in STATUS_RANK:
        problems = problems or []
        problems.append(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
    if not name.isprintable() and HEADER_UNSAFE.search(name):
        problems = problems or []
        problems.append(
            "name contains a line break or control character (names go into mail headers)"
        )
    if (dates[0] and not _is_iso(dates[0])) or (dates[1] and not _is_iso(dates[1])):
        for column, value in zip(("subscribed_at", "updated_at"), dates, strict=True):
            if value and not _is_iso(value):
                problems = problems or []
                problems.append(
                    f"{column} {value!r} is not an ISO 8601 date (like 2024-05-01T09:30:00+00:00)"
                )
    return key, problems


def _is_iso(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@contextmanager
def open_list(path: Path, known: Sequence[str] = COLUMNS, problems=None) -> Iterator[CsvSource]:
    with read_csv(path, problems=problems) as src:
        src.columns = Columns.parse(src.header, known, f"{src.where}:{src.header_line}")
        yield src


def checked_rows(
    path: Path, problems: list[Problem] | None = None, deliverability: bool = False
) -> Iterator[tuple[Columns, int, list[str], str, str]]:
    """(columns, line, values, key, status) of each row; the first bad row raises unless
    `problems` collects them (then the row's key is "" when its address is unusable)."""
    with open_list(path, problems=problems) as src:
        cols = src.columns
        e, n, s, sa, ua, _ = cols.standard
        for line, values in src.rows:
            email, status = values[e].strip(), status_of(values[s])
            dates = (values[sa].strip(), values[ua].strip())
            key, found = check_row(email, values[n].strip(), status, dates, deliverability)
            if found:
                if problems is None:
                    raise SubscriberError(found[0], where=f"{src.where}:{line}")
                problems += [Problem(src.where, line, message) for message in found]
            yield cols, line, values, key, status


def iter_subscribers(path: Path) -> Iterator[Subscriber]:
    """Every row of a list file, streamed; the first malformed row raises naming file and line."""
    for cols, line, values, key, _ in checked_rows(path):
        yield to_subscriber(cols, line, values, key)


def iter_rows(path: Path, problems: list[Problem] | None = None) -> Iterator[Subscriber]:
    """Every row of a list file as written, streamed, without checking addresses or statuses.

    For lookups that must keep working when one row is malformed (an unsubscribe link must).
    Given `problems`, rows that cannot be read (too many values) are kept there and skipped;
    what cannot be read past (a quote never closed) still raises, after the rows before it.
    """
    with open_list(path, problems=problems) as src:
        for line, values in src.rows:
            yield to_subscriber(src.columns, line, values)
