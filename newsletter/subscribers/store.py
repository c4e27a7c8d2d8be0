"""Changing list files: a read-modify-write inside a file lock, written to a temp file and renamed."""

from __future__ import annotations

import csv
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from filelock import FileLock, Timeout

from newsletter.errors import SubscriberError
from newsletter.files import PRIVATE_FILE, make_folder
from newsletter.subscribers.csvfile import Columns, CsvSource, check_row, open_list, status_of
from newsletter.subscribers.model import (
    COLUMNS,
    HEADER_UNSAFE,
    SURROGATE,
    TAGS,
    Subscriber,
    checked_tags,
    display,
    format_tags,
    utc_now,
)
from newsletter.subscribers.withdrawn import Fold, fold_for

LOCK_TIMEOUT = 30.0


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


class Writer:
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
def atomic_write(path: Path, *, bom: bool = False) -> Iterator[_Output]:
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
    """An existing file keeps its mode; a new one holds addresses, so only its owner reads it."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return PRIVATE_FILE


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
_Edit = Callable[[Columns, Iterator[tuple[int, list[str]]]], Iterator[list[str]]]


def rewrite(
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
        make_folder(path.parent, private=True)
    with _locked(path):
        fold = fold_for(path)  # asked under the lock: what is withdrawn now, nothing missed
        if fold is not None and fold.withdrawn:
            needed = (*needed, *(c for c in _FOLDED if c not in needed))
        else:
            fold = None
        if path.is_file():
            source = open_list(path, known)
        elif create:
            source = _empty(path, known, needed)
        else:
            raise SubscriberError("file not found", where=display(path))
        with source as src, atomic_write(path, bom=src.bom) as out:
            cols = src.columns.extended(needed, known)
            width = len(cols.names)
            grow = [""] * (width - len(src.columns.names))
            rows = ((line, values[:-1] + grow + [""]) for line, values in src.rows)
            if not grow:
                rows = src.rows
            writer = Writer(out.file, src.newline)
            writer.writerow(cols.names)
            if fold is not None:
                rows = _folded(fold, cols, rows)
            edits = edit(cols, rows)
            while True:
                try:
                    row = next(edits)
                except StopIteration as stop:
                    changed = bool(stop.value)
                    break
                writer.writerow(row[:width])
            out.commit = changed or (fold is not None and fold.changed > 0)
        if fold is not None:
            fold.done()  # the file holds them now (or never had their rows)
    return changed


_FOLDED = ("status", "updated_at", "source")


def _folded(
    fold: Fold, cols: Columns, rows: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    """The rows with what the fold withdraws applied, counted in fold.changed."""
    e, s, u, src = (cols.index(c) for c in ("email", *_FOLDED))
    withdrawn, stamp = fold.withdrawn, utc_now()
    for line, values in rows:
        if len(values) > max(e, s):
            moved = withdrawn.change(values[e], status_of(values[s]))
            if moved is not None:
                values[s], values[u] = moved[0], stamp
                if moved[1]:
                    values[src] = moved[1]
                fold.changed += 1
        yield line, values


@contextmanager
def _empty(path: Path, known: Sequence[str], needed: Sequence[str]) -> Iterator[CsvSource]:
    names = [*known, *(n for n in needed if n not in known)]
    src = CsvSource(display(path), names, 1, False, "\n", iter(()))
    src.columns = Columns.parse(names, known, src.where)
    yield src


def check_value(column: str, value: str) -> None:
    if "\0" in value or SURROGATE.search(value):
        raise SubscriberError(f"{column}: contains a NUL byte or bytes that are not UTF-8")


def checked_new(sub: Subscriber, *, deliverability: bool = False) -> str:
    """Refuse a subscriber that could not be read back; return its key."""
    for column, value in (("email", sub.email), ("name", sub.name), ("source", sub.source)):
        check_value(column, value)
    dates = (sub.subscribed_at, sub.updated_at)
    key, problems = check_row(sub.email, sub.name, sub.status, dates, deliverability)
    if problems:
        raise SubscriberError(problems[0])
    checked_tags(sub.tags)
    for name, value in sub.fields.items():
        if not name or name.strip() != name or name.lower() in (*COLUMNS, TAGS):
            raise SubscriberError(f"invalid custom field name {name!r}")
        if HEADER_UNSAFE.search(name):
            raise SubscriberError(f"custom field name {name!r} contains a control character")
        check_value(name, value)
    return key


def row_values(cols: Columns, sub: Subscriber) -> list[str]:
    row = [""] * (len(cols.names) + 1)
    row[cols.index("email")] = sub.email
    row[cols.index("name")] = sub.name
    row[cols.index("status")] = sub.status
    row[cols.index("subscribed_at")] = sub.subscribed_at
    row[cols.index("updated_at")] = sub.updated_at
    row[cols.index("source")] = sub.source
    for name, value in sub.fields.items():
        row[cols.index(name)] = value
    if sub.tags:
        row[cols.index(TAGS)] = format_tags(sub.tags)
    return row


def write_subscribers(path: Path, subscribers: Iterable[Subscriber]) -> int:
    """Replace a list file with these subscribers (checked first), atomically and under its lock."""
    subs = list(subscribers)
    for sub in subs:
        try:
            checked_new(sub)
        except SubscriberError as exc:
            raise SubscriberError(f"{sub.email!r}: {exc}") from None
    custom = list(dict.fromkeys(name for sub in subs for name in sub.fields))
    if any(sub.tags for sub in subs):
        custom.append(TAGS)
    make_folder(path.parent, private=True)
    with _locked(path), _empty(path, COLUMNS, custom) as src, atomic_write(path) as out:
        writer = Writer(out.file, "\n")
        writer.writerow(src.columns.names)
        for sub in subs:
            writer.writerow(row_values(src.columns, sub)[:-1])
    return len(subs)
