"""An exact set of strings at a fraction of a Python set's memory: the keys `sendable` has yielded.

A set of a million address strings costs about 110 bytes an address (the str objects and
the set's slots). `Seen` keeps each key as its UTF-8 bytes plus an end byte, one after the
other in a single bytearray, and finds them through an open-addressing table of 64-bit
slots in an array('Q'), kept between 1/3 and 2/3 full: 12-24 bytes of table and
len(key) + 1 bytes of text per key, about 40-50 bytes for a typical address.

It is exact, never probabilistic: a slot holds 28 bits of the key's hash and where the
key's bytes start, and a key only counts as seen when its bytes equal the stored ones.
Keys whose hashes collide cost a comparison, never a subscriber. (A set of 64-bit
fingerprints would take 12-24 bytes a key but drop a subscriber whenever two addresses
share one: a chance of about n²/2^65, 3e-8 for a million addresses. Two fingerprints,
128 bits, would take 24-48 bytes and make that n²/2^129: negligible, but not none.)
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

_END = b"\xff"  # never occurs in UTF-8, so it ends each key in the bytearray
# A slot is tag << 36 | (where the key starts + 1); 0 is an empty slot. The tag is 28 bits
# of Python's own string hash: seeded per process, so a crafted list cannot make probing
# slow, and free in `sendable`, which has already looked each key up in a set. Tags place
# the keys, so growing needs no rehashing; past 2**28 slots (some 180 million keys) they
# place them less evenly: slower, never wrong.
_TAG_BITS = 28
_TAG = (1 << _TAG_BITS) - 1
_OFFSET_BITS = 64 - _TAG_BITS  # up to 64 GiB of keys
_OFFSET = (1 << _OFFSET_BITS) - 1
_MIN_SLOTS = 8  # a power of two, like every size of the table


class Seen:
    """A set of strings that only grows; `add` says whether a key is new."""

    def __init__(self) -> None:
        self._text = bytearray()
        self._slots = array("Q", [0]) * _MIN_SLOTS
        self._count = 0
        self._limit = 2 * _MIN_SLOTS // 3  # more keys than this, and the table doubles

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: str) -> bool:
        return bool(self._slots[self._find(key, hash(key) & _TAG)])

    def __iter__(self) -> Iterator[str]:
        """The keys in the order they were added."""
        text, start = self._text, 0
        while start < len(text):
            end = text.index(_END, start)
            yield text[start:end].decode("utf-8", "surrogatepass")
            start = end + 1

    def add(self, key: str) -> bool:
        """Add a key; True when it was not there before."""
        tag = hash(key) & _TAG
        slots = self._slots
        i = self._find(key, tag)
        if slots[i]:
            return False
        text = self._text
        start = len(text)
        if start >= _OFFSET:
            raise MemoryError(f"more than {_OFFSET:,} bytes of keys")
        text += key.encode("utf-8", "surrogatepass")
        text += _END
        slots[i] = tag << _OFFSET_BITS | (start + 1)
        self._count += 1
        if self._count > self._limit:
            self._grow()
        return True

    def _find(self, key: str, tag: int) -> int:
        """The slot holding this key, or the empty slot where it would go."""
        slots, mask = self._slots, len(self._slots) - 1
        i, perturb = tag & mask, tag
        stored = None
        while slot := slots[i]:
            if slot >> _OFFSET_BITS == tag:  # the same 28 hash bits: compare the bytes
                if stored is None:
                    stored = key.encode("utf-8", "surrogatepass") + _END
                start = (slot & _OFFSET) - 1
                if self._text[start : start + len(stored)] == stored:
                    return i
            # CPython's own probe sequence: it uses every tag bit, then visits every slot.
            perturb >>= 5
            i = (5 * i + 1 + perturb) & mask
        return i

    def _grow(self) -> None:
        """Twice the slots; each slot moves as it is, placed by the tag it holds."""
        size = 2 * len(self._slots)
        slots, mask = array("Q", [0]) * size, size - 1
        for slot in self._slots:
            if slot:
                tag = slot >> _OFFSET_BITS
                i, perturb = tag & mask, tag
                while slots[i]:  # no key is there twice: the first empty slot is its own
                    perturb >>= 5
                    i = (5 * i + 1 + perturb) & mask
                slots[i] = slot
        self._slots = slots
        self._limit = 2 * size // 3
