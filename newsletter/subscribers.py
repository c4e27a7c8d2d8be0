"""Subscriber lists: CSV files in subscribers/, read by streaming, changed by locked atomic rewrites.

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
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
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
MAX_LINE = 1 << 20  # characters; a longer line is not a subscriber row (csv's field limit is 128 KiB)
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
        return f"{self.where}:{self.line}: {self.message}" if self.line else f"{self.where}: {self.message}"


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


_domains: dict[str, tuple[str, str] | None] = {}


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
    if not at or not _ASCII_LOCAL.fullmatch(local):
        return None
    known = _domains.get(domain, False)
    if known is False:
        known = _check_domain(domain)
    if known is None:
        return None
    unicode_domain, ascii_domain = known
    longest = max(len(domain.encode()), len(unicode_domain.encode()), len(ascii_domain))
    if len(local) + 1 + longest > 254:
        return None
    if local.lower() in email_validator.rfc_constants.CASE_INSENSITIVE_MAILBOX_NAMES:
        local = local.lower()
    return f"{local}@{unicode_domain}"


def _check_domain(domain: str) -> tuple[str, str] | None:
    try:
        result = email_validator.validate_email(f"x@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        answer = None
    else:
        answer = (result.domain, result.ascii_domain)
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


def suppression_hash(key: str) -> str:
    """What `forget` keeps of an address: enough to recognise it, not to read it."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def is_suppressed(key: str, suppressed: set[str] | Mapping[str, str]) -> bool:
    """Whether a key, or the hash `forget` left of it, is in the suppression set."""
    return key in suppressed or suppression_hash(key) in suppressed


def split_name(name: str) -> tuple[str, str]:
    """'Ada Lovelace' or 'Lovelace, Ada' -> ('Ada', 'Lovelace')."""
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


# --- files and names -------------------------------------------------------------------------


def list_path(subscribers_dir: Path, name: str) -> Path:
    """subscribers/<name>.csv, refusing names that could leave the folder or hit the suppressions."""
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
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            message, line = _csv_message(exc), offset + previous + 1
            terminal = "end of data" in str(exc) or "field limit" in str(exc)
            if problems is None or terminal:
                raise SubscriberError(message, where=f"{where}:{line}") from None
            problems.append(Problem(where, line, message))
            previous = reader.line_num
            continue
        line, previous = offset + previous + 1, reader.line_num
        if len(values) <= 1 and not (values and values[0].strip()):
            continue  # a blank line
        if len(values) > width:
            if any(values[width:]):
                message = (
                    f"{len(values)} values but the header has {width} columns "
                    "(a comma in a value that is not in quotes?)"
                )
                if problems is None:
                    raise SubscriberError(message, where=f"{where}:{line}")
                problems.append(Problem(where, line, message))
                continue
            del values[width:]  # trailing empty cells, as spreadsheets write them
        values.extend(pad[len(values) :])
        yield line, values


def _status(value: str) -> str:
    return value.strip().lower() or "subscribed"


def _subscriber(cols: _Columns, line: int, values: list[str]) -> Subscriber:
    """A row as a Subscriber, without checking it."""
    pos, end = cols.pos, len(cols.names)
    return Subscriber(
        email=values[pos["email"]].strip(),
        name=values[pos.get("name", end)].strip(),
        status=_status(values[pos.get("status", end)]),
        subscribed_at=values[pos.get("subscribed_at", end)].strip(),
        updated_at=values[pos.get("updated_at", end)].strip(),
        source=values[pos.get("source", end)],
        fields={name: value for name, i in cols.custom if (value := values[i])},
        line=line,
    )


def _check(sub: Subscriber, *, deliverability: bool = False) -> tuple[str, list[str]]:
    """The subscriber's key and what is wrong with it (nothing, usually)."""
    problems: list[str] = []
    key = ""
    if not sub.email:
        problems.append("missing email address")
    else:
        try:
            key = normalize_email(sub.email, check_deliverability=deliverability).casefold()
        except InvalidEmail as exc:
            problems.append(f"invalid email address {sub.email!r}: {exc}")
    if sub.status not in _RANK:
        problems.append(f"unknown status {sub.status!r} (expected one of: {', '.join(STATUSES)})")
    if _HEADER_UNSAFE.search(sub.name):
        problems.append(
            "name contains a line break or control character (names go into mail headers)"
        )
    for column, value in (("subscribed_at", sub.subscribed_at), ("updated_at", sub.updated_at)):
        if value and not _is_iso(value):
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


def _checked(path: Path, *, deliverability: bool = False) -> Iterator[tuple[Subscriber, str]]:
    with _open_list(path) as src:
        for line, values in src.rows:
            sub = _subscriber(src.columns, line, values)
            key, problems = _check(sub, deliverability=deliverability)
            if problems:
                raise SubscriberError(problems[0], where=f"{src.where}:{line}")
            yield sub, key


def iter_subscribers(path: Path) -> Iterator[Subscriber]:
    """Every row of a list file, streamed; the first malformed row raises naming file and line."""
    for sub, _ in _checked(path):
        yield sub


def sendable(subscribers_dir: Path, list_name: str) -> Iterator[Subscriber]:
    """Subscribed rows minus suppressed addresses and repeated keys (the first one wins)."""
    path = existing_list(subscribers_dir, list_name)
    suppressed = load_suppressed(subscribers_dir)
    seen: set[str] = set()
    for sub, key in _checked(path):
        if sub.status != "subscribed" or key in seen or is_suppressed(key, suppressed):
            continue
        seen.add(key)
        yield sub


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
    try:
        with _open_list(path, problems=problems) as src:
            for line, values in src.rows:
                sub = _subscriber(src.columns, line, values)
                key, messages = _check(sub, deliverability=check_deliverability)
                problems += [Problem(src.where, line, message) for message in messages]
                if key:
                    first = seen.setdefault(key, line)
                    if first != line:
                        problems.append(
                            Problem(src.where, line, f"duplicate of line {first}: {sub.email}")
                        )
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
            f"another process has held {path.name}.lock for {LOCK_TIMEOUT:.0f} s; try again",
            where=display(path),
        ) from None
    except OSError as exc:
        raise SubscriberError(f"cannot lock: {exc.strerror or exc}", where=display(path)) from None
    try:
        yield
    finally:
        lock.release()


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
            writer = csv.writer(out.file, lineterminator=src.newline)
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
    key, problems = _check(sub, deliverability=deliverability)
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
        writer = csv.writer(out.file, lineterminator="\n")
        writer.writerow(src.columns.names)
        for sub in subs:
            writer.writerow(_row(src.columns, sub)[:-1])
    return len(subs)


# --- suppressions ----------------------------------------------------------------------------


def _suppression_key(value: str) -> str:
    value = value.strip()
    return value.lower() if value.lower().startswith(HASH_PREFIX) else email_key(value)


def suppression_reasons(subscribers_dir: Path) -> dict[str, str]:
    """Suppressed keys (and erased hashes) with their reasons; unreadable files raise (fail closed)."""
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
        try:
            key = normalize_email(email).casefold()
        except InvalidEmail as exc:
            raise SubscriberError(f"invalid email address {email!r}: {exc}") from None
        wanted.setdefault(key, (email, reason))
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
        _rewrite(suppressions_path(subscribers_dir), SUPPRESSION_COLUMNS, edit, known=SUPPRESSION_COLUMNS)
    return added


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
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
    _check_value("source", source)
    path = existing_list(subscribers_dir, list_name)
    key = email_key(email)
    if status in ("subscribed", "pending"):
        reason = suppression_reason(key, suppression_reasons(subscribers_dir))
        if reason:
            raise SubscriberError(_suppressed_message(email.strip(), reason))
    stamp = _now()
    found = changed = 0
    previous = ""

    def edit(cols, rows):
        nonlocal found, changed, previous
        e, s, u = cols.index("email"), cols.index("status"), cols.index("updated_at")
        sa, src = cols.index("subscribed_at"), cols.index("source")
        for _, values in rows:
            if email_key(values[e]) == key:
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
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
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
    if status in ("subscribed", "pending"):
        reason = suppression_reason(key, suppression_reasons(subscribers_dir))
        if reason:
            raise SubscriberError(_suppressed_message(new.email, reason))
    result = "added"

    def edit(cols, rows):
        nonlocal result
        e, s = cols.index("email"), cols.index("status")
        for line, values in rows:
            if email_key(values[e]) == key:
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
    key = email_key(email)
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
                if email_key(values[e]) == key:
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
        if status not in STATUSES:
            raise SubscriberError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
    path = existing_list(subscribers_dir, list_name)
    if to is not None and to.resolve().parent == subscribers_dir.resolve() and to.suffix == ".csv":
        raise SubscriberError(
            f"refusing to write {display(to)}: it would replace a list or the suppression file; "
            f"export to a file outside {display(subscribers_dir)}/"
        )
    with _open_list(path) as src:
        target = _atomic_write(to, bom=src.bom) if to is not None else None
        with target or _Stream(stream) as out:
            writer = csv.writer(out.file, lineterminator=src.newline)
            writer.writerow(src.columns.names)
            width, index, written = len(src.columns.names), src.columns.index("status"), 0
            for _, values in src.rows:
                if not statuses or _status(values[index]) in statuses:
                    writer.writerow(values[:width])
                    written += 1
    return written


class _Stream:
    def __init__(self, stream: TextIO | None) -> None:
        import sys

        self.file = stream or sys.stdout

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.file.flush()
