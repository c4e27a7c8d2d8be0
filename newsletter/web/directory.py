"""From a token's address id back to a row of a list, without keeping addresses anywhere else.

A token carries address_id(secret, list, key), never the address. The directory streams the
list once, hashing each row's key, and keeps id -> key in memory. Keys never change when a row
changes, so a cached entry stays right while the file is rewritten; the index is rebuilt only
when an id is missing and the file has changed since it was built (a new subscriber).
Only ids from tokens whose signature has been verified are looked up, so a forged token never
costs a scan. A malformed row does not stop the index: the rows around it are found, and a
lookup says when the list could not be read whole (the id may be in the part not read).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from newsletter import subscribers as subs
from newsletter.errors import SubscriberError
from newsletter.optouts import address_ids


@dataclass
class _Index:
    stamp: tuple[int, int, int] | None = None
    ids: dict[str, str] = field(default_factory=dict)
    complete: bool = True  # every row could be read
    lock: threading.Lock = field(default_factory=threading.Lock)  # held for lookups only
    building: threading.Lock = field(default_factory=threading.Lock)  # held while rebuilding


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class Directory:
    """Address id -> row key for each list of the workspace, rebuilt when a list changes."""

    def __init__(self, subscribers_dir: Path, secret: bytes) -> None:
        self.folder = subscribers_dir
        self.secret = secret
        self._indexes: dict[str, _Index] = {}
        self._lock = threading.Lock()

    def path(self, list_name: str) -> Path | None:
        try:
            path = subs.list_path(self.folder, list_name)
        except SubscriberError:
            return None
        return path if path.is_file() else None

    def key_for(self, list_name: str, ident: str) -> str | None:
        """The key of the row whose address id this is, or None."""
        return self.lookup(list_name, ident)[0]

    def lookup(self, list_name: str, ident: str) -> tuple[str | None, bool]:
        """(the key of the row whose address id this is or None, whether the whole list was
        read); never raises for a malformed list. Ids already indexed are answered at once,
        also while a changed list is being indexed again (one rebuild at a time)."""
        path = self.path(list_name)
        if path is None:
            return None, True
        with self._lock:
            index = self._indexes.setdefault(list_name, _Index())
        with index.lock:
            key = index.ids.get(ident)
            if key is not None or _stamp(path) == index.stamp:
                return key, index.complete
        with index.building:
            with index.lock:  # another thread may have rebuilt it meanwhile
                if _stamp(path) == index.stamp:
                    return index.ids.get(ident), index.complete
            stamp = _stamp(path)
            ids, complete = address_ids(path, self.secret, list_name)
            with index.lock:
                index.ids, index.complete, index.stamp = ids, complete, stamp
                return ids.get(ident), complete

    def warm(self) -> None:
        """Index every list (at start, in the background), so the first unsubscribe of a big
        list does not wait for the whole file to be hashed."""
        try:
            names = subs.list_names(self.folder)
        except (OSError, SubscriberError):
            return
        for name in names:
            self.lookup(name, "")

    def resolve(self, list_name: str, ids: set[str]) -> tuple[dict[str, str], bool]:
        """({address id: key} of those ids found, whether the whole list was read): the
        journal's resolver (optouts.Resolver), from the index."""
        found, complete = {}, True
        for ident in ids:
            key, whole = self.lookup(list_name, ident)
            complete = complete and whole
            if key:
                found[ident] = key
        return found, complete

    def row(self, list_name: str, key: str) -> subs.Subscriber | None:
        """The first row of the list with this key (streamed), or None (also when the list
        cannot be read as far as that row)."""
        path = self.path(list_name)
        if path is None:
            return None
        try:
            for row in subs.iter_rows(path, []):
                if row.key == key:
                    return row
        except SubscriberError:
            pass
        return None
