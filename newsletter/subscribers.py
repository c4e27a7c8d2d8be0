"""Subscriber lists: CSV files in subscribers/, streamed when read, replaced atomically on change.

Reading never loads a whole list: rows stream through csv.reader with a bounded line length.
Every change is a read-modify-write inside a FileLock (`<file>.lock`), written to a temporary
file that is fsynced and renamed over the original, so concurrent writers keep each other's
changes and a crash leaves the old or the new file. Rows this module cannot parse are carried
through a rewrite unchanged, so no edit ever drops a row it did not mean to.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache, cached_property, partial
from itertools import chain
from pathlib import Path
from typing import TextIO

import email_validator
from filelock import FileLock, Timeout

from newsletter.errors import SubscriberError

STATUSES = ("subscribed", "unsubscribed", "bounced", "complained", "pending")
COLUMNS = ("email", "name", "status", "subscribed_at", "updated_at", "source")
SUPPRESSION_COLUMNS = ("email", "reason", "at")
SUPPRESSIONS = "suppressions"
FORMATS = ("auto", "mailchimp", "substack", "buttondown", "listmonk", "csv")
HASH_PREFIX = "sha256:"
MAX_LINE = 1 << 20  # characters; csv's own field limit (128 KiB) bounds quoted values
LOCK_TIMEOUT = 30.0

# How far a status is from "may be mailed": imports and merges only ever move rows upwards.
_RANK = {"subscribed": 0, "pending": 0, "unsubscribed": 1, "bounced": 2, "complained": 3}
_LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Names end up in From/To headers: no line breaks or other control characters.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ASCII_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_SURROGATE = re.compile(r"[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class Subscriber:
    email: str  # as given (used for sending)
    name: str = ""
    status: str = "subscribed"
    subscribed_at: str = ""
    updated_at: str = ""
    source: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)  # custom columns with a value
    line: int = 0  # line number in the file (for messages)

    @property
    def key(self) -> str:
        """The normalised, case-folded address: identity for dedup, the ledger and suppressions."""
        return email_key(self.email)

    def merge_fields(self) -> dict[str, str]:
        """Template context `subscriber`; empty values are left out so `default()` filters apply."""
        first, last = split_name(self.name)
        values = {
            "email": self.email,
            "name": self.name,
            "first_name": first,
            "last_name": last,
            "status": self.status,
            "source": self.source,
            **self.fields,
        }
        return {key: value for key, value in values.items() if value}


@dataclass(frozen=True)
class Problem:
    where: str
    line: int
    message: str

    def __str__(self) -> str:
        return (
            f"{self.where}:{self.line}: {self.message}"
            if self.line
            else f"{self.where}: {self.message}"
        )


@dataclass(frozen=True)
class Page:
    subscribers: list[Subscriber]
    total: int  # rows matching the filter, over all pages
    page: int
    per_page: int


@dataclass(frozen=True)
class ImportReport:
    list_name: str
    format: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    suppressed: int = 0  # bounced/complained/blocked rows added to the suppression file
    rejects_path: Path | None = None
    problems: tuple[Problem, ...] = ()
    ignored_columns: tuple[str, ...] = ()


# --- addresses -------------------------------------------------------------------------------


class InvalidEmail(ValueError):
    """An address email-validator refuses; str() is its reason."""


_domains: dict[str, tuple[str, int] | None] = {}
_CASE_INSENSITIVE = frozenset(email_validator.rfc_constants.CASE_INSENSITIVE_MAILBOX_NAMES)


def normalize_email(email: str, *, check_deliverability: bool = False) -> str:
    """email-validator's normalised form (IDNA domain, NFC); raises InvalidEmail."""
    if not check_deliverability:
        fast = _fast_normalize(email)
        if fast is not None:
            return fast
    try:
        result = email_validator.validate_email(
            email,
            check_deliverability=check_deliverability,
            dns_resolver=_resolver() if check_deliverability else None,
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    return result.normalized


def _fast_normalize(email: str) -> str | None:
    """Same answer as email-validator for plain ASCII local parts, with the domain check cached.

    A full validation costs ~50 µs; a million-row list needs ~1 µs. None means "ask the library".
    """
    local, at, domain = email.rpartition("@")
    if not at:
        return None
    plain = local.replace(".", "")  # letters, digits and inner dots need no regex
    if not (plain.isascii() and plain.isalnum() and local[0] != "." != local[-1]):
        if not _ASCII_LOCAL.fullmatch(local):
            return None
    elif ".." in local:
        return None
    known = _domains.get(domain, False)
    if known is False:
        known = _check_domain(domain)
    if known is None or len(local) + known[1] > 254:
        return None
    if local.lower() in _CASE_INSENSITIVE:
        local = local.lower()
    return local + known[0]


def _check_domain(domain: str) -> tuple[str, int] | None:
    """("@" + normalised domain, length it adds to the address at most), or None if invalid."""
    try:
        result = email_validator.validate_email(f"x@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        answer = None
    else:
        forms = (domain.encode(), result.domain.encode(), result.ascii_domain.encode())
        answer = ("@" + result.domain, 1 + max(map(len, forms)))
    if len(_domains) > 100_000:
        _domains.clear()
    _domains[domain] = answer
    return answer


@cache
def _resolver():
    return email_validator.caching_resolver(timeout=10)


def email_key(email: str) -> str:
    """Identity of an address: normalised and case-folded (an invalid one is just case-folded)."""
    try:
        return normalize_email(email.strip()).casefold()
    except InvalidEmail:
        return email.strip().casefold()


def _key_of(email: str) -> str:
    """The key of an address given to change or erase rows; an invalid one would match nothing."""
    try:
        return normalize_email(email.strip()).casefold()
    except InvalidEmail as exc:
        raise SubscriberError(f"invalid email address {email.strip()!r}: {exc}") from None


def _matcher(key: str) -> Callable[[str], bool]:
    """Whether a cell holds the address with this key; most rows are told apart cheaply."""
    local = key.rpartition("@")[0]

    def same(cell: str) -> bool:
        cell = cell.strip()
        # An ASCII address normalises to its own local part (case aside), so compare that first.
        if cell.isascii() and cell.rpartition("@")[0].casefold() != local:
            return False
        return email_key(cell) == key

    return same


def suppression_hash(key: str) -> str:
    """What `forget` keeps of an address: enough to recognise it, not to read it."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def is_suppressed(key: str, suppressed: set[str] | Mapping[str, str]) -> bool:
    """Whether a key, or the hash `forget` left of it, is in the suppression set."""
    return bool(suppressed) and (key in suppressed or suppression_hash(key) in suppressed)


def split_name(name: str) -> tuple[str, str]:
    """'Ada Lovelace' or 'Lovelace, Ada' -> ('Ada', 'Lovelace')."""
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


# --- files and names -------------------------------------------------------------------------


def list_path(subscribers_dir: Path, name: str) -> Path:
    """subscribers/<name>.csv; refuses names that could leave the folder or hit the suppressions."""
    if not _LIST_NAME.fullmatch(name):
        raise SubscriberError(
            f"invalid list name {name!r}: use letters, digits, '-' and '_' "
            "(a list is the file subscribers/NAME.csv)"
        )
    if name.casefold() == SUPPRESSIONS:
        raise SubscriberError(
            f"'{SUPPRESSIONS}' is the workspace suppression file, not a list; choose another name"
        )
    return subscribers_dir / f"{name}.csv"


def suppressions_path(subscribers_dir: Path) -> Path:
    return subscribers_dir / f"{SUPPRESSIONS}.csv"


def list_names(subscribers_dir: Path) -> list[str]:
    """Names of the lists in the folder (the suppression file and rejects files are not lists)."""
    if not subscribers_dir.is_dir():
        return []
    names = (p.stem for p in subscribers_dir.glob("*.csv") if p.is_file())
    return sorted(n for n in names if _LIST_NAME.fullmatch(n) and n.casefold() != SUPPRESSIONS)


def existing_list(subscribers_dir: Path, name: str) -> Path:
    """list_path, plus a clear error naming the known lists when the file does not exist."""
    path = list_path(subscribers_dir, name)
    if not path.is_file():
        known = ", ".join(list_names(subscribers_dir)) or "none yet"
        raise SubscriberError(f"no list {name!r}: {display(path)} does not exist (lists: {known})")
    return path


def display(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Columns:
    """A header: the names as written, where each known column is, and the custom ones."""

    names: tuple[str, ...]
    pos: Mapping[str, int]
    custom: tuple[tuple[str, int], ...]

    @cached_property
    def standard(self) -> tuple[int, ...]:
        """Positions of the list columns (email, name, status, ...), missing ones at the sentinel."""
        return tuple(self.pos.get(name, len(self.names)) for name in COLUMNS)

    @classmethod
    def parse(cls, header: Sequence[str], known: Sequence[str], where: str) -> _Columns:
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

    def index(self, name: str) -> int:
        """Position of a column; a missing one maps to the empty sentinel at the end of each row."""
        if name in self.pos:
            return self.pos[name]
        for custom, i in self.custom:
            if custom == name:
                return i
        return len(self.names)

    def extended(self, needed: Iterable[str], known: Sequence[str]) -> _Columns:
        names = list(self.names)
        for name in needed:
            if self.index(name) == len(self.names) and name not in names:
                names.append(name)
        if len(names) == len(self.names):
            return self
        return _Columns.parse(names, known, "")


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
class _Csv:
    where: str
    header: list[str]
    header_line: int
    bom: bool
    newline: str
    rows: Iterator[tuple[int, list[str]]]  # (first line of the row, values padded + sentinel)
    columns: _Columns | None = None  # set for list and suppression files


@contextmanager
def _read_csv(
    path: Path, *, sniff: bool = False, problems: list[Problem] | None = None
) -> Iterator[_Csv]:
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
        yield _Csv(where, header, header_line, bom, newline, rows)


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
            bad = _SURROGATE.search(line)
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


def _status(value: str) -> str:
    return value.strip().lower() or "subscribed"


def _subscriber(cols: _Columns, line: int, values: list[str]) -> Subscriber:
    """A row as a Subscriber, without checking it."""
    e, n, s, sa, ua, src = cols.standard
    return Subscriber(
        values[e].strip(),
        values[n].strip(),
        _status(values[s]),
        values[sa].strip(),
        values[ua].strip(),
        values[src],
        {name: value for name, i in cols.custom if (value := values[i])},
        line,
    )


def _check(
    email: str, name: str, status: str, dates: tuple[str, str], deliverability: bool = False
) -> tuple[str, list[str] | None]:
    """The key of a row's (stripped) values and what is wrong with them (None, usually)."""
    # This runs for every row of every list read: the common case takes the fewest steps.
    problems = None
    normalized = None if deliverability else _fast_normalize(email)
    if normalized is not None:
        key = normalized.casefold()
    elif not email:
        key, problems = "", ["missing email address"]
    else:
        try:
            key = normalize_email(email, check_deliverability=deliverability).casefold()
        except InvalidEmail as exc:
            key, problems = "", [f"invalid email address {email!r}: {exc}"]
    if status not in _RANK:
        problems = problems or []
        problems.append(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
    if not name.isprintable() and _HEADER_UNSAFE.search(name):
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
def _open_list(path: Path, known: Sequence[str] = COLUMNS, problems=None) -> Iterator[_Csv]:
    with _read_csv(path, problems=problems) as src:
        src.columns = _Columns.parse(src.header, known, f"{src.where}:{src.header_line}")
        yield src


def _checked(
    path: Path, problems: list[Problem] | None = None, deliverability: bool = False
) -> Iterator[tuple[_Columns, int, list[str], str, str]]:
    """(columns, line, values, key, status) of each row; the first bad row raises unless
    `problems` collects them (then the row's key is "" when its address is unusable)."""
    with _open_list(path, problems=problems) as src:
        cols = src.columns
        e, n, s, sa, ua, _ = cols.standard
        for line, values in src.rows:
            email, status = values[e].strip(), _status(values[s])
            dates = (values[sa].strip(), values[ua].strip())
            key, found = _check(email, values[n].strip(), status, dates, deliverability)
            if found:
                if problems is None:
                    raise SubscriberError(found[0], where=f"{src.where}:{line}")
                problems += [Problem(src.where, line, message) for message in found]
            yield cols, line, values, key, status


def iter_subscribers(path: Path) -> Iterator[Subscriber]:
    """Every row of a list file, streamed; the first malformed row raises naming file and line."""
    for cols, line, values, _, _ in _checked(path):
        yield _subscriber(cols, line, values)


def sendable(subscribers_dir: Path, list_name: str) -> Iterator[Subscriber]:
    """Subscribed rows minus suppressed addresses and repeated keys (the first one wins)."""
    path = existing_list(subscribers_dir, list_name)
    suppressed = load_suppressed(subscribers_dir)
    hashed = any(key.startswith(HASH_PREFIX) for key in suppressed)  # else skip hashing each key
    seen: set[str] = set()
    for cols, line, values, key, status in _checked(path):
        if status != "subscribed" or key in seen or key in suppressed:
            continue
        if hashed and suppression_hash(key) in suppressed:
            continue
        seen.add(key)
        yield _subscriber(cols, line, values)


def count(subscribers_dir: Path, list_name: str) -> dict[str, int]:
    """Rows by status, without checking them ('invalid' counts unknown statuses)."""
    counts = dict.fromkeys(STATUSES, 0)
    with _open_list(existing_list(subscribers_dir, list_name)) as src:
        index = src.columns.index("status")
        for _, values in src.rows:
            status = _status(values[index])
            if status in counts:
                counts[status] += 1
            else:
                counts["invalid"] = counts.get("invalid", 0) + 1
    return counts


def page(
    subscribers_dir: Path,
    list_name: str,
    *,
    status: str | None = None,
    number: int = 1,
    per_page: int = 50,
) -> Page:
    """One page of a list's rows, optionally only those with a status."""
    first = (max(number, 1) - 1) * per_page
    found: list[Subscriber] = []
    total = 0
    with _open_list(existing_list(subscribers_dir, list_name)) as src:
        index = src.columns.index("status")
        for line, values in src.rows:
            if status and _status(values[index]) != status:
                continue
            if first <= total < first + per_page:
                found.append(_subscriber(src.columns, line, values))
            total += 1
    return Page(found, total, max(number, 1), per_page)


def validate(
    subscribers_dir: Path, list_name: str | None = None, *, check_deliverability: bool = False
) -> list[Problem]:
    """Every problem in one list, or in all lists and the suppression file."""
    if list_name is not None:
        paths = [existing_list(subscribers_dir, list_name)]
    else:
        paths = [list_path(subscribers_dir, name) for name in list_names(subscribers_dir)]
    problems = [p for path in paths for p in validate_file(path, check_deliverability)]
    if list_name is None and suppressions_path(subscribers_dir).is_file():
        problems += _validate_suppressions(suppressions_path(subscribers_dir))
    return problems


def validate_file(path: Path, check_deliverability: bool = False) -> list[Problem]:
    """Every problem in one list file, each with its line number."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    where = display(path)
    try:
        for cols, line, values, key, _ in _checked(path, problems, check_deliverability):
            if key:
                first = seen.setdefault(key, line)
                if first != line:
                    email = values[cols.pos["email"]].strip()
                    problems.append(Problem(where, line, f"duplicate of line {first}: {email}"))
    except SubscriberError as exc:
        problems.append(_problem(exc))
    return sorted(problems, key=lambda p: p.line)


def _validate_suppressions(path: Path) -> list[Problem]:
    problems: list[Problem] = []
    try:
        with _open_list(path, SUPPRESSION_COLUMNS, problems=problems) as src:
            index = src.columns.index("email")
            for line, values in src.rows:
                email = values[index].strip()
                if email.lower().startswith(HASH_PREFIX):
                    if not re.fullmatch(r"[0-9a-f]{64}", email[len(HASH_PREFIX) :].lower()):
                        problems.append(Problem(src.where, line, f"malformed hash {email!r}"))
                    continue
                try:
                    normalize_email(email)
                except InvalidEmail as exc:
                    message = f"invalid email address {email!r}: {exc}"
                    problems.append(Problem(src.where, line, message))
    except SubscriberError as exc:
        problems.append(_problem(exc))
    return sorted(problems, key=lambda p: p.line)


def _problem(exc: SubscriberError) -> Problem:
    where, _, line = (exc.where or "").rpartition(":")
    if line.isdigit():
        return Problem(where, int(line), exc.message)
    return Problem(exc.where or "", 0, exc.message)


# --- writing ---------------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold `<file>.lock` for a read-modify-write; other processes wait up to LOCK_TIMEOUT."""
    lock = FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT)
    try:
        lock.acquire()
    except Timeout:
        raise SubscriberError(
            f"another process has held {path.name}.lock for {LOCK_TIMEOUT:g} s; try again",
            where=display(path),
        ) from None
    except OSError as exc:
        raise SubscriberError(f"cannot lock: {exc.strerror or exc}", where=display(path)) from None
    try:
        yield
    finally:
        lock.release()


class _Writer:
    """csv.writer, plus quotes around a lone CR when lines end in LF.

    csv only quotes the characters of its own line terminator, so with "\n" a value holding
    "\r" would be written bare and split the row when read back.
    """

    def __init__(self, file: TextIO, newline: str) -> None:
        self.plain = csv.writer(file, lineterminator=newline)
        self.quoted = csv.writer(file, lineterminator=newline, quoting=csv.QUOTE_ALL)
        self.check = "\r" not in newline

    def writerow(self, row: Sequence[str]) -> None:
        if self.check and "\r" in "".join(row):
            self.quoted.writerow(row)
        else:
            self.plain.writerow(row)


class _Output:
    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.commit = True


@contextmanager
def _atomic_write(path: Path, *, bom: bool = False) -> Iterator[_Output]:
    """Write a sibling temp file, fsync it and rename it over `path`; on any error, remove it."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SubscriberError(f"cannot write: {exc.strerror or exc}", where=display(path)) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
            out = _Output(f)
            yield out
            f.flush()
            os.fsync(f.fileno())
        if out.commit:
            os.chmod(tmp, _mode(path))
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


@cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


# An edit receives the (extended) columns and the rows, yields the rows to write, and returns
# whether it changed anything; when it did not, the original file is left untouched.
_Edit = Callable[[_Columns, Iterator[tuple[int, list[str]]]], Iterator[list[str]]]


def _rewrite(
    path: Path,
    needed: Sequence[str],
    edit: _Edit,
    *,
    known: Sequence[str] = COLUMNS,
    create: bool = True,
) -> bool:
    """Read-modify-write of one CSV file inside its lock."""
    try:
        return _rewrite_locked(path, needed, edit, known=known, create=create)
    except OSError as exc:
        raise SubscriberError(
            f"cannot update: {exc.strerror or exc}", where=display(path)
        ) from None


def _rewrite_locked(
    path: Path, needed: Sequence[str], edit: _Edit, *, known: Sequence[str], create: bool
) -> bool:
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        if path.is_file():
            source = _open_list(path, known)
        elif create:
            source = _empty(path, known, needed)
        else:
            raise SubscriberError("file not found", where=display(path))
        with source as src, _atomic_write(path, bom=src.bom) as out:
            cols = src.columns.extended(needed, known)
            width = len(cols.names)
            grow = [""] * (width - len(src.columns.names))
            rows = ((line, values[:-1] + grow + [""]) for line, values in src.rows)
            if not grow:
                rows = src.rows
            writer = _Writer(out.file, src.newline)
            writer.writerow(cols.names)
            edits = edit(cols, rows)
            while True:
                try:
                    row = next(edits)
                except StopIteration as stop:
                    changed = bool(stop.value)
                    break
                writer.writerow(row[:width])
            out.commit = changed
    return changed


@contextmanager
def _empty(path: Path, known: Sequence[str], needed: Sequence[str]) -> Iterator[_Csv]:
    names = [*known, *(n for n in needed if n not in known)]
    src = _Csv(display(path), names, 1, False, "\n", iter(()))
    src.columns = _Columns.parse(names, known, src.where)
    yield src


def _check_value(column: str, value: str) -> None:
    if "\0" in value or _SURROGATE.search(value):
        raise SubscriberError(f"{column}: contains a NUL byte or bytes that are not UTF-8")


def _checked_new(sub: Subscriber, *, deliverability: bool = False) -> str:
    """Refuse a subscriber that could not be read back; return its key."""
    for column, value in (("email", sub.email), ("name", sub.name), ("source", sub.source)):
        _check_value(column, value)
    dates = (sub.subscribed_at, sub.updated_at)
    key, problems = _check(sub.email, sub.name, sub.status, dates, deliverability)
    if problems:
        raise SubscriberError(problems[0])
    for name, value in sub.fields.items():
        if not name or name.strip() != name or name.lower() in COLUMNS:
            raise SubscriberError(f"invalid custom field name {name!r}")
        if _HEADER_UNSAFE.search(name):
            raise SubscriberError(f"custom field name {name!r} contains a control character")
        _check_value(name, value)
    return key


def _row(cols: _Columns, sub: Subscriber) -> list[str]:
    row = [""] * (len(cols.names) + 1)
    row[cols.index("email")] = sub.email
    row[cols.index("name")] = sub.name
    row[cols.index("status")] = sub.status
    row[cols.index("subscribed_at")] = sub.subscribed_at
    row[cols.index("updated_at")] = sub.updated_at
    row[cols.index("source")] = sub.source
    for name, value in sub.fields.items():
        row[cols.index(name)] = value
    return row


def write_subscribers(path: Path, subscribers: Iterable[Subscriber]) -> int:
    """Replace a list file with these subscribers (checked first), atomically and under its lock."""
    subs = list(subscribers)
    for sub in subs:
        try:
            _checked_new(sub)
        except SubscriberError as exc:
            raise SubscriberError(f"{sub.email!r}: {exc}") from None
    custom = list(dict.fromkeys(name for sub in subs for name in sub.fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path), _empty(path, COLUMNS, custom) as src, _atomic_write(path) as out:
        writer = _Writer(out.file, "\n")
        writer.writerow(src.columns.names)
        for sub in subs:
            writer.writerow(_row(src.columns, sub)[:-1])
    return len(subs)


# --- suppressions ----------------------------------------------------------------------------


def _suppression_key(value: str) -> str:
    value = value.strip()
    return value.lower() if value.lower().startswith(HASH_PREFIX) else email_key(value)


def suppression_reasons(subscribers_dir: Path) -> dict[str, str]:
    """Suppressed keys and erased hashes with their reasons; an unreadable file raises."""
    path = suppressions_path(subscribers_dir)
    if not path.is_file():
        return {}
    reasons: dict[str, str] = {}
    with _open_list(path, SUPPRESSION_COLUMNS) as src:
        e, r = src.columns.index("email"), src.columns.index("reason")
        for _, values in src.rows:
            if values[e].strip():
                reasons.setdefault(_suppression_key(values[e]), values[r].strip() or "suppressed")
    return reasons


def load_suppressed(subscribers_dir: Path) -> set[str]:
    """Keys (and the hashes `forget` leaves) that must never be mailed from any list."""
    return set(suppression_reasons(subscribers_dir))


def suppression_reason(key: str, reasons: Mapping[str, str]) -> str | None:
    """Why a key is suppressed, or None."""
    return reasons.get(key) or reasons.get(suppression_hash(key))


def add_suppression(subscribers_dir: Path, email: str, reason: str) -> None:
    """Never mail this address again from any list (hard bounce, complaint, global unsubscribe)."""
    add_suppressions(subscribers_dir, [(email, reason)])


def add_suppressions(subscribers_dir: Path, entries: Iterable[tuple[str, str]]) -> int:
    """Suppress several addresses in one locked write; returns how many were new."""
    wanted: dict[str, tuple[str, str]] = {}
    for email, reason in entries:
        email = email.strip()
        _check_value("email", email)
        _check_value("reason", reason)
        wanted.setdefault(_key_of(email), (email, reason))
    added = 0

    def edit(cols, rows):
        nonlocal added
        e, r, at = (cols.index(c) for c in SUPPRESSION_COLUMNS)
        present: set[str] = set()
        for _, values in rows:
            present.add(_suppression_key(values[e]))
            yield values
        stamp = _now()
        for key, (email, reason) in wanted.items():
            if not is_suppressed(key, present):
                row = [""] * (len(cols.names) + 1)
                row[e], row[r], row[at] = email, reason, stamp
                added += 1
                yield row
        return added > 0

    if wanted:
        _rewrite(
            suppressions_path(subscribers_dir), SUPPRESSION_COLUMNS, edit, known=SUPPRESSION_COLUMNS
        )
    return added


def _known_status(status: str) -> None:
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")


def _refuse_suppressed(subscribers_dir: Path, key: str, email: str) -> None:
    # Called with the list's lock held: `forget` writes its hash before it takes list locks,
    # so an edit either sees the hash or runs before `forget` edits the list.
    reason = suppression_reason(key, suppression_reasons(subscribers_dir))
    if reason:
        raise SubscriberError(_suppressed_message(email, reason))


def _suppressed_message(email: str, reason: str) -> str:
    if reason == "erased":
        return f"{email} was erased with `forget`; it cannot be added again"
    return (
        f"{email} is suppressed ({reason}) in subscribers/{SUPPRESSIONS}.csv; "
        "remove that line first if they really asked to be mailed again"
    )


# --- changing lists --------------------------------------------------------------------------


def set_status(
    subscribers_dir: Path, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    """Set the status of every row with this address (locked, atomic); whether a row changed."""
    _, changed, _ = _update_status(subscribers_dir, list_name, email, status, source=source)
    return changed > 0


def remove_subscriber(
    subscribers_dir: Path, list_name: str, email: str, *, source: str = ""
) -> tuple[bool, str]:
    """Mark an address unsubscribed, keeping the row; (changed, status it had)."""
    found, changed, previous = _update_status(
        subscribers_dir,
        list_name,
        email,
        "unsubscribed",
        source=source,
        only=("subscribed", "pending"),
    )
    if not found:
        raise SubscriberError(f"{email.strip()} is not in list {list_name!r}")
    return changed > 0, previous


def _update_status(
    subscribers_dir: Path,
    list_name: str,
    email: str,
    status: str,
    *,
    source: str,
    only: Sequence[str] | None = None,
) -> tuple[int, int, str]:
    _known_status(status)
    _check_value("source", source)
    path = existing_list(subscribers_dir, list_name)
    key = _key_of(email)
    same = _matcher(key)
    stamp = _now()
    found = changed = 0
    previous = ""

    def edit(cols, rows):
        nonlocal found, changed, previous
        if status in ("subscribed", "pending"):
            _refuse_suppressed(subscribers_dir, key, email.strip())
        e, s, u = cols.index("email"), cols.index("status"), cols.index("updated_at")
        sa, src = cols.index("subscribed_at"), cols.index("source")
        for _, values in rows:
            if same(values[e]):
                found += 1
                current = _status(values[s])
                previous = previous or current
                if current != status and (only is None or current in only):
                    values[s], values[u] = status, stamp
                    if source:
                        values[src] = source
                    if status == "subscribed" and not values[sa].strip():
                        values[sa] = stamp
                    changed += 1
            yield values
        return changed > 0

    needed = ["status", "updated_at"] + (["source"] if source else [])
    needed += ["subscribed_at"] if status == "subscribed" else []
    _rewrite(path, needed, edit, create=False)
    return found, changed, previous


def add_subscriber(
    subscribers_dir: Path,
    list_name: str,
    email: str,
    *,
    name: str = "",
    fields: Mapping[str, str] | None = None,
    status: str = "subscribed",
    source: str = "",
    resubscribe: bool = False,
    check_deliverability: bool = False,
) -> str:
    """Add an address (or update its name and fields); returns 'added', 'updated' or 'unchanged'.

    An unsubscribed, bounced or complained row is only subscribed again with `resubscribe`,
    and a suppressed address never is.
    """
    _known_status(status)
    for key in fields or {}:
        if not _FIELD_NAME.fullmatch(key) or key.lower() in COLUMNS:
            raise SubscriberError(
                f"invalid field name {key!r}: use letters, digits, '_' and '-', "
                f"and none of {', '.join(COLUMNS)}"
            )
    path = list_path(subscribers_dir, list_name)
    stamp = _now()
    new = Subscriber(
        email=email.strip(),
        name=name.strip(),
        status=status,
        subscribed_at=stamp if status == "subscribed" else "",
        updated_at=stamp,
        source=source,
        fields=dict(fields or {}),
    )
    key = _checked_new(new, deliverability=check_deliverability)
    same = _matcher(key)
    result = "added"

    def edit(cols, rows):
        nonlocal result
        if status in ("subscribed", "pending"):
            _refuse_suppressed(subscribers_dir, key, new.email)
        e, s = cols.index("email"), cols.index("status")
        for line, values in rows:
            if same(values[e]):
                current = _status(values[s])
                if result == "added":
                    result = "unchanged"
                    if _RANK.get(current, 0) > 0 and status == "subscribed" and not resubscribe:
                        raise SubscriberError(
                            f"{new.email} is {current} in list {list_name!r} (line {line}); "
                            "add --resubscribe if they asked to be subscribed again"
                        )
                if _update_row(cols, values, new, current, resubscribe):
                    result = "updated"
            yield values
        if result == "added":
            yield _row(cols, new)
        return result != "unchanged"

    _rewrite(path, (*COLUMNS, *new.fields), edit)
    return result


def _update_row(
    cols: _Columns, values: list[str], new: Subscriber, current: str, resubscribe: bool
) -> bool:
    changed = False
    target = current
    if new.status == "subscribed" and (current == "pending" or resubscribe):
        target = "subscribed"
    if target != current:
        values[cols.index("status")] = target
        if not values[cols.index("subscribed_at")].strip():
            values[cols.index("subscribed_at")] = new.updated_at
        if new.source:
            values[cols.index("source")] = new.source
        changed = True
    updates = ({"name": new.name} if new.name else {}) | dict(new.fields)
    for column, value in updates.items():
        i = cols.index(column)
        if values[i].strip() != value:
            values[i] = value
            changed = True
    if changed:
        values[cols.index("updated_at")] = new.updated_at
    return changed


def forget(subscribers_dir: Path, email: str) -> dict[str, int]:
    """GDPR erasure: drop the address from every list, keep only its hash; rows removed per list."""
    key = _key_of(email)
    same = _matcher(key)
    digest = suppression_hash(key)

    def edit_suppressions(cols, rows):
        e, r, at = (cols.index(c) for c in SUPPRESSION_COLUMNS)
        changed, hashed = False, False
        for _, values in rows:
            found = _suppression_key(values[e])
            if found == key:
                changed = True  # the plain address goes; the hash below replaces it
                continue
            hashed = hashed or found == digest
            yield values
        if not hashed:
            row = [""] * (len(cols.names) + 1)
            row[e], row[r], row[at] = digest, "erased", _now()
            changed = True
            yield row
        return changed

    # The hash goes in first, so an erasure interrupted half-way still blocks a re-import.
    _rewrite(
        suppressions_path(subscribers_dir),
        SUPPRESSION_COLUMNS,
        edit_suppressions,
        known=SUPPRESSION_COLUMNS,
    )
    removed: dict[str, int] = {}
    for list_name in list_names(subscribers_dir):
        dropped = 0

        def edit(cols, rows):
            nonlocal dropped
            e = cols.index("email")
            for _, values in rows:
                if same(values[e]):
                    dropped += 1
                else:
                    yield values
            return dropped > 0

        _rewrite(list_path(subscribers_dir, list_name), ("email",), edit, create=False)
        if dropped:
            removed[list_name] = dropped
    return removed


# --- export ----------------------------------------------------------------------------------


def export(
    subscribers_dir: Path,
    list_name: str,
    *,
    statuses: Sequence[str] = (),
    to: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Write a list (all rows, or those with the given statuses) as CSV; returns the row count."""
    for status in statuses:
        _known_status(status)
    path = existing_list(subscribers_dir, list_name)
    if to is not None and to.resolve().parent == subscribers_dir.resolve() and to.suffix == ".csv":
        raise SubscriberError(
            f"refusing to write {display(to)}: it would replace a list or the suppression file; "
            f"export to a file outside {display(subscribers_dir)}/"
        )
    with _open_list(path) as src:
        target = _atomic_write(to, bom=src.bom) if to is not None else None
        with target or _Stream(stream) as out:
            writer = _Writer(out.file, src.newline)
            writer.writerow(src.columns.names)
            width, index, written = len(src.columns.names), src.columns.index("status"), 0
            for _, values in src.rows:
                if not statuses or _status(values[index]) in statuses:
                    writer.writerow(values[:width])
                    written += 1
    return written


class _Stream:
    def __init__(self, stream: TextIO | None) -> None:
        self.file = stream or sys.stdout

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.file.flush()


# --- import ----------------------------------------------------------------------------------

# status value (lower case) -> (our status, reason to add it to the suppression file or "")
_GENERIC_STATUSES = {
    "": ("subscribed", ""),
    "subscribed": ("subscribed", ""),
    "active": ("subscribed", ""),
    "confirmed": ("subscribed", ""),
    "pending": ("pending", ""),
    "unconfirmed": ("pending", ""),
    "unsubscribed": ("unsubscribed", ""),
    "bounced": ("bounced", "bounced"),
    "cleaned": ("bounced", "bounced"),
    "complained": ("complained", "complained"),
}
_JSON = "*json"  # target of a column holding a JSON object of custom fields
# Column names (as slugs) every format understands; "" means "ignore this column".
_COMMON = {
    "email": "email",
    "email_address": "email",
    "e_mail": "email",
    "mail": "email",
    "name": "name",
    "full_name": "name",
    "display_name": "name",
    "first_name": "first_name",
    "firstname": "first_name",
    "fname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "lname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "status": "status",
    "subscribed_at": "subscribed_at",
    "source": "source",
    "updated_at": "",
    "rejected_line": "",
    "rejected_reason": "",
}
_STANDARD_TARGETS = ("email", "name", "status", "subscribed_at", "source")


@dataclass(frozen=True)
class _Format:
    name: str
    columns: Mapping[str, str] = field(default_factory=dict)  # in priority order per target
    status_columns: tuple[str, ...] = ()  # the service's own status column(s)
    statuses: Mapping[str, tuple[str, str]] = field(default_factory=lambda: _GENERIC_STATUSES)
    # Mailchimp has no status column: the export file (subscribed/unsubscribed/cleaned) is it.
    header_status: Callable[[set[str]], tuple[str, str]] | None = None


def _mailchimp_status(slugs: set[str]) -> tuple[str, str]:
    if "clean_time" in slugs:
        return "bounced", "bounced"
    if "unsub_time" in slugs:
        return "unsubscribed", ""
    return "subscribed", ""


_MAILCHIMP_SYSTEM = (
    *("member_rating", "optin_ip", "confirm_ip", "latitude", "longitude", "gmtoff", "dstoff"),
    *("timezone", "cc", "region", "last_changed", "leid", "euid", "unsub_time", "unsub_reason"),
    *("unsub_campaign_title", "unsub_campaign_id", "unsub_reason_other", "clean_time"),
    *("clean_campaign_title", "clean_campaign_id"),
)
_BUTTONDOWN_SUBSCRIBED = (
    *("regular", "premium", "trialed", "unpaid", "gifted", "churning", "paused", "past_due"),
)
_BUTTONDOWN_IGNORED = (
    *("id", "secondary_id", "referrer_url", "source", "utm_source", "utm_medium", "utm_campaign"),
)
_FORMATS = {
    "csv": _Format("csv"),
    "mailchimp": _Format(
        "mailchimp",
        {
            "email_address": "email",
            "confirm_time": "subscribed_at",
            "optin_time": "subscribed_at",
            **dict.fromkeys(_MAILCHIMP_SYSTEM, ""),
        },
        header_status=_mailchimp_status,
    ),
    "substack": _Format(
        "substack",
        {
            "created_at": "subscribed_at",
            "email_disabled": "status",
            **dict.fromkeys(("expiry", "first_payment_at", "prefer_digests"), ""),
        },
        ("email_disabled",),
        {
            "": ("subscribed", ""),
            "false": ("subscribed", ""),
            "true": ("unsubscribed", ""),
        },
    ),
    "buttondown": _Format(
        "buttondown",
        {
            "creation_date": "subscribed_at",
            "subscriber_type": "status",
            "type": "status",
            "metadata": _JSON,
            **dict.fromkeys(_BUTTONDOWN_IGNORED, ""),
        },
        ("subscriber_type", "type"),
        {
            **dict.fromkeys(_BUTTONDOWN_SUBSCRIBED, ("subscribed", "")),
            "unactivated": ("pending", ""),
            "unsubscribed": ("unsubscribed", ""),
            "removed": ("unsubscribed", ""),
            "spammy": ("unsubscribed", "spammy"),
            "blocked": ("unsubscribed", "blocked"),
            "undeliverable": ("bounced", "bounced"),
            "complained": ("complained", "complained"),
        },
    ),
    "listmonk": _Format(
        "listmonk",
        {"uuid": "", "attributes": _JSON, "created_at": "subscribed_at", "updated_at": ""},
        ("status",),
        {
            "enabled": ("subscribed", ""),
            "disabled": ("unsubscribed", ""),
            "blocklisted": ("unsubscribed", "blocklisted"),
        },
    ),
}


def detect_format(header: Sequence[str]) -> str:
    """Which service exported a CSV file, recognised by its header."""
    slugs = {_slug(name) for name in header}
    if "subscriber_type" in slugs or {"creation_date", "email"} <= slugs:
        return "buttondown"
    mailchimp = {"member_rating", "optin_time", "confirm_time", "leid", "euid", "last_changed"}
    if "email_address" in slugs and slugs & mailchimp:
        return "mailchimp"
    if slugs & {"active_subscription", "email_disabled"}:
        return "substack"
    if "attributes" in slugs and slugs & {"uuid", "status"}:
        return "listmonk"
    return "csv"


def _slug(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip().casefold()).strip("_")


@dataclass(frozen=True)
class _Plan:
    format: str
    targets: Mapping[str, tuple[int, ...]]  # field -> columns, best first
    status: tuple[int, Mapping[str, tuple[str, str]]] | None  # column and its value map
    default: tuple[str, str]  # (status, suppression reason) when there is no status column
    json: tuple[int, ...]
    ignored: tuple[str, ...]


def _plan(
    fmt: _Format, header: Sequence[str], mapping: Mapping[str, str], existing: Mapping[str, str]
) -> _Plan:
    """Decide which column feeds which field; `existing` maps slugs to the list's custom columns."""
    slugs = [_slug(name) for name in header]
    chosen: dict[int, str] = {}
    for column, target in mapping.items():
        chosen[_find_column(header, slugs, column, target)] = _map_target(column, target.strip())
    by_user = set(chosen)
    table = {**_COMMON, **fmt.columns}
    order = {slug: n for n, slug in enumerate(table)}
    for i, slug in enumerate(slugs):
        if i in chosen:
            continue
        if not header[i].strip():
            chosen[i] = ""
        elif slug in table:
            chosen[i] = table[slug]
        else:
            chosen[i] = existing.get(slug) or slug or header[i].strip()
    targets: dict[str, list[int]] = {}
    for i in sorted(chosen, key=lambda i: (i not in by_user, order.get(slugs[i], len(order)), i)):
        if chosen[i]:
            targets.setdefault(chosen[i], []).append(i)
    status = None
    if "status" in targets:
        i = targets["status"][0]
        native = slugs[i] in fmt.status_columns
        status = (i, fmt.statuses if native else _GENERIC_STATUSES)
    ignored = tuple(header[i].strip() or f"(column {i + 1})" for i, t in chosen.items() if not t)
    default = fmt.header_status(set(slugs)) if fmt.header_status else ("subscribed", "")
    return _Plan(
        format=fmt.name,
        targets={t: tuple(ix) for t, ix in targets.items() if t not in ("status", _JSON)},
        status=status,
        default=default,
        json=tuple(targets.get(_JSON, ())),
        ignored=ignored,
    )


def _find_column(header: Sequence[str], slugs: list[str], column: str, target: str) -> int:
    """A --map column: by exact name, then ignoring case, then by slug."""
    names = [name.strip() for name in header]
    for candidates, wanted in (
        (names, column.strip()),
        ([name.casefold() for name in names], column.strip().casefold()),
        (slugs, _slug(column)),
    ):
        if wanted in candidates:
            return candidates.index(wanted)
    raise SubscriberError(
        f"--map {column}={target}: the file has no column {column!r} (columns: {', '.join(header)})"
    )


def _map_target(column: str, target: str) -> str:
    if target == "updated_at":
        raise SubscriberError(f"--map {column}={target}: updated_at is set when a row changes")
    if target and target not in _STANDARD_TARGETS and not _FIELD_NAME.fullmatch(target):
        raise SubscriberError(
            f"--map {column}={target}: a field name is letters, digits, '_' and '-' "
            "(or leave it empty to skip the column)"
        )
    return target


@dataclass(frozen=True, slots=True)
class _Incoming:
    line: int
    key: str
    email: str
    name: str
    status: str
    suppress: str  # reason to add to the suppression file, or ""
    subscribed_at: str
    source: str
    fields: Mapping[str, str]


class _Rejected(Exception):
    """An import row that cannot be taken; str() says why."""


def _incoming(
    plan: _Plan, line: int, values: list[str], deliverability: bool, existing: Mapping[str, str]
) -> _Incoming:
    def first(target: str, strip: bool = True) -> str:
        for i in plan.targets.get(target, ()):
            if values[i].strip():
                return values[i].strip() if strip else values[i]
        return ""

    email = first("email")
    if not email:
        raise _Rejected("missing email address")
    try:
        key = normalize_email(email, check_deliverability=deliverability).casefold()
    except InvalidEmail as exc:
        raise _Rejected(f"invalid email address {email!r}: {exc}") from None
    fields: dict[str, str] = {}
    for i in plan.json:
        fields.update(_json_fields(values[i], existing))
    for target in plan.targets:
        if target not in _STANDARD_TARGETS and (value := first(target, strip=False)):
            fields[target] = value
    name = first("name") or " ".join(
        part
        for part in (fields.get("first_name", "").strip(), fields.get("last_name", "").strip())
        if part
    )
    if _HEADER_UNSAFE.search(name):
        raise _Rejected("name contains a line break or control character")
    status, suppress = plan.default
    if plan.status is not None:
        index, known = plan.status
        raw = values[index].strip().lower()
        if raw not in known:
            expected = ", ".join(sorted(v for v in known if v))
            raise _Rejected(f"unknown status {raw!r} for a {plan.format} file ({expected})")
        status, suppress = known[raw]
    subscribed_at = first("subscribed_at")
    if subscribed_at:
        try:
            subscribed_at = _iso(subscribed_at)
        except ValueError:
            raise _Rejected(f"subscribed_at {subscribed_at!r} is not a date") from None
    return _Incoming(
        line=line,
        key=key,
        email=email,
        name=name,
        status=status,
        suppress=suppress,
        subscribed_at=subscribed_at,
        source=first("source") or f"import:{plan.format}",
        fields=fields,
    )


def _json_fields(text: str, existing: Mapping[str, str]) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise _Rejected("attributes are not valid JSON") from None
    if not isinstance(data, dict):
        raise _Rejected("attributes are not a JSON object")
    fields = {}
    for key, value in data.items():
        slug = _slug(key)
        if not slug:
            continue
        name = existing.get(slug) or (f"attr_{slug}" if slug in COLUMNS else slug)
        if value is None or value == "":
            continue
        text_value = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if "\0" in text_value or _SURROGATE.search(text_value):
            raise _Rejected(f"attribute {key!r} contains a NUL or an unpaired surrogate")
        fields[name] = text_value
    return fields


_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))? ([+-]\d\d)(\d\d)(?: \S+)*")


def _iso(value: str) -> str:
    """A service's timestamp as ISO 8601; listmonk writes Go's time.String() format."""
    match = _GO_TIME.fullmatch(value)
    if match:
        date, clock, fraction, hours, minutes = match.groups()
        micro = f".{(fraction or '0')[:6]:0<6}" if fraction else ""
        value = f"{date}T{clock}{micro}{hours}:{minutes}"
    return datetime.fromisoformat(value).isoformat()


def import_file(
    subscribers_dir: Path,
    list_name: str,
    file: Path,
    *,
    format: str = "auto",
    mapping: Mapping[str, str] | None = None,
    update: bool = False,
    check_deliverability: bool = False,
) -> ImportReport:
    """Merge an export (ours, Mailchimp, Substack, Buttondown, listmonk) into a list.

    New addresses are added; existing rows only become less mailable (an unsubscribe, bounce or
    complaint in the file is applied) unless `update`, which also refreshes names and fields.
    Suppressed addresses are refused; rows that cannot be taken go to FILE.rejects.csv.
    """
    if format not in FORMATS:
        raise SubscriberError(f"unknown format {format!r} (expected one of: {', '.join(FORMATS)})")
    path = list_path(subscribers_dir, list_name)
    if path.exists() and file.resolve() == path.resolve():
        raise SubscriberError(f"{display(file)} is the list itself; nothing to import")
    existing = _custom_columns(path)
    rejects: dict[int, str] = {}
    incoming: dict[str, _Incoming] = {}
    with _read_csv(file, sniff=True) as src:
        fmt = _FORMATS[detect_format(src.header) if format == "auto" else format]
        plan = _plan(fmt, src.header, mapping or {}, existing)
        if "email" not in plan.targets:
            raise SubscriberError(
                f"no email column (columns: {', '.join(src.header)}); "
                "name it with --map COLUMN=email",
                where=f"{src.where}:{src.header_line}",
            )
        rows = 0
        for line, values in src.rows:
            rows += 1
            try:
                new = _incoming(plan, line, values, check_deliverability, existing)
            except _Rejected as exc:
                rejects[line] = str(exc)
                continue
            first = incoming.setdefault(new.key, new)
            if first is not new:
                rejects[line] = f"duplicate of line {first.line}"
                if _RANK[new.status] > _RANK[first.status]:
                    # The same address twice: the less mailable status wins.
                    incoming[new.key] = replace(first, status=new.status, suppress=new.suppress)
        if not rows:
            raise SubscriberError("no rows after the header; nothing to import", where=src.where)
        where = src.where

    counts = _merge_into(subscribers_dir, path, incoming, rejects, update)
    suppressed = add_suppressions(
        subscribers_dir, [(new.email, new.suppress) for new in incoming.values() if new.suppress]
    )
    rejects_path = _write_rejects(file, rejects) if rejects else None
    return ImportReport(
        list_name=list_name,
        format=fmt.name,
        added=counts[0],
        updated=counts[1],
        unchanged=counts[2],
        rejected=len(rejects),
        suppressed=suppressed,
        rejects_path=rejects_path,
        problems=tuple(Problem(where, line, reason) for line, reason in sorted(rejects.items())),
        ignored_columns=plan.ignored,
    )


def _custom_columns(path: Path) -> dict[str, str]:
    """Slug -> name of the list's custom columns, so imported fields land in them."""
    if not path.is_file():
        return {}
    with _open_list(path) as src:
        return {_slug(name): name for name, _ in src.columns.custom}


def _merge_into(
    subscribers_dir: Path,
    path: Path,
    incoming: dict[str, _Incoming],
    rejects: dict[int, str],
    update: bool,
) -> tuple[int, int, int]:
    stamp = _now()
    added = 0
    results: dict[str, bool] = {}  # key -> whether any row with it changed

    def edit(cols, rows):
        nonlocal added
        reasons = suppression_reasons(subscribers_dir)  # under the list's lock, as in add
        e = cols.index("email")
        for _, values in rows:
            key = email_key(values[e])
            new = incoming.get(key)
            if new is not None:
                changed = _merge_row(cols, values, new, update, stamp)
                results[key] = results.get(key, False) or changed
            yield values
        for key, new in incoming.items():
            if key in results:
                continue
            reason = suppression_reason(key, reasons)
            if reason:
                rejects[new.line] = (
                    "erased with `forget`; it cannot be imported again"
                    if reason == "erased"
                    else f"suppressed ({reason}) in subscribers/{SUPPRESSIONS}.csv"
                )
                continue
            added += 1
            yield _row(
                cols,
                Subscriber(
                    email=new.email,
                    name=new.name,
                    status=new.status,
                    subscribed_at=new.subscribed_at,
                    updated_at=stamp,
                    source=new.source,
                    fields=new.fields,
                ),
            )
        return added > 0 or any(results.values())

    custom = dict.fromkeys(name for new in incoming.values() for name in new.fields)
    _rewrite(path, (*COLUMNS, *custom), edit)
    updated = sum(results.values())
    return added, updated, len(results) - updated


def _merge_row(cols: _Columns, values: list[str], new: _Incoming, update: bool, stamp: str) -> bool:
    """Apply an imported row to an existing one; statuses only move away from 'subscribed'."""
    s, sa = cols.index("status"), cols.index("subscribed_at")
    current = _status(values[s])
    changed = False
    if current in _RANK:
        target = current
        if _RANK[new.status] > _RANK[current]:
            target = new.status
        elif update and current == "pending" and new.status == "subscribed":
            target = "subscribed"
        if target != current:
            values[s] = target
            values[cols.index("source")] = new.source
            if target == "subscribed" and not values[sa].strip():
                values[sa] = new.subscribed_at or stamp
            changed = True
    if update:
        updates = {"name": new.name, **new.fields}
        if not values[sa].strip():
            updates["subscribed_at"] = new.subscribed_at
        for column, value in updates.items():
            i = cols.index(column)
            if value and values[i] != value:
                values[i] = value
                changed = True
    if changed:
        values[cols.index("updated_at")] = stamp
    return changed


def rejects_path_for(file: Path) -> Path:
    """Where an import writes the rows it could not take: next to the input."""
    return file.with_name(f"{file.stem}.rejects.csv")


def _write_rejects(file: Path, rejects: Mapping[int, str]) -> Path:
    target = rejects_path_for(file)
    with _read_csv(file, sniff=True) as src, _atomic_write(target, bom=src.bom) as out:
        writer = _Writer(out.file, src.newline)
        writer.writerow(["rejected_line", "rejected_reason", *src.header])
        for line, values in src.rows:
            if line in rejects:
                writer.writerow([str(line), rejects[line], *values[: len(src.header)]])
    return target


# --- for newsletter serve (web unsubscribe, webhooks) ----------------------------------------


def iter_rows(path: Path) -> Iterator[Subscriber]:
    """Every row of a list file as written, streamed, without checking addresses or statuses.

    For lookups that must keep working when one row is malformed (an unsubscribe link must).
    """
    with _open_list(path) as src:
        for line, values in src.rows:
            yield _subscriber(src.columns, line, values)


def downgrade_status(
    subscribers_dir: Path, list_name: str, email: str, status: str, *, source: str = ""
) -> bool:
    """Move this address's rows to a less mailable status, never back up (locked, atomic).

    A bounce after a complaint leaves `complained`; an unsubscribe leaves `bounced`.
    Whether a row changed.
    """
    _known_status(status)
    only = tuple(s for s in STATUSES if _RANK[s] < _RANK[status])
    _, changed, _ = _update_status(
        subscribers_dir, list_name, email, status, source=source, only=only
    )
    return changed > 0
