"""A send worker's write-ahead journal: each step of a batch, one line, as it happens.

The ledger marks a whole batch in flight in one statement and records its outcomes in one
transaction once the batch is over: an SQLite commit per message cost a send through a
fast SMTP server an eighth of its speed. In between, each worker appends a line per step
(the messages about to be handed over, then each answer) to a journal of its own, with no
fsync: a `kill -9` loses nothing the kernel already has. When a send dies,
the ledger applies its journals before anything reads it (Ledger opens, claims, plans), so
only the message a connection was handing over is left in flight (unknown). A power cut
is out of scope: it can lose the last lines, whose messages then stay in flight and count
as unknown, never as sent: what the ledger promised without a journal.

One file per worker, `.newsletter/send-<issue>.<run>-<worker>.journal`, 0600 (it names
recipients), emptied once its batch is in the ledger and removed when the worker ends.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.errors import SendError
from newsletter.files import PRIVATE_FILE, show

_FORMAT = 1
_PATTERN = "send-*.journal"
_OPEN = os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_SIZE = 1 << 20  # bytes mapped at first: a batch's steps fit many times over
GO = "go"  # the last line about a key: it was being handed over, no answer yet
IDLE = "idle"  # the last line about a key: marked in flight, not handed over


class Journal:
    """The append-only journal of one worker of one run, written through a shared mapping.

    A store into the mapping is in the page cache at once, as safe from a kill as a write(2),
    but it keeps the GIL: a system call per message would hand it to another thread and
    wait to get it back, which cost a fast send more than the write itself.
    """

    def __init__(self, state_dir: Path, issue: str, run: int, worker: int) -> None:
        self.path = state_dir / f"send-{issue}.{run}-{worker}.journal"
        try:
            self._fd = os.open(self.path, _OPEN, PRIVATE_FILE)
            self._map = self._mapped(_SIZE)
        except OSError as exc:
            raise self._error(exc) from None
        self._pos = 0
        self.append([["journal", _FORMAT, issue, run]])
        self._header = self._pos

    def _mapped(self, size: int) -> mmap.mmap:
        os.ftruncate(self._fd, size)  # sparse: the disk holds only what is written
        return mmap.mmap(self._fd, size)

    def _error(self, exc: OSError) -> SendError:
        reason = exc.strerror or exc
        return SendError(f"cannot write the send journal: {reason}", where=show(self.path))

    def append(self, lines: list[list]) -> None:
        """Write lines into the page cache (no fsync: see the module docstring)."""
        data = "".join([json.dumps(line) + "\n" for line in lines]).encode()
        end = self._pos + len(data)
        if end > len(self._map):  # a batch with more to say than the file holds: grow it
            try:
                self._map.close()
                self._map = self._mapped(max(end, 2 * len(self._map)))
            except OSError as exc:
                raise self._error(exc) from None
        self._map[self._pos : end] = data
        self._pos = end

    def clear(self) -> None:
        """Forget the steps written so far: their batch is in the ledger now."""
        if self._pos > self._header:
            self._map[self._header : self._pos] = bytes(self._pos - self._header)
            self._pos = self._header

    def close(self) -> None:
        """Close; remove the file unless it holds steps the ledger may not have."""
        self._map.close()
        os.close(self._fd)
        if self._pos == self._header:
            self.path.unlink(missing_ok=True)


@dataclass
class Replay:
    """What a journal says became of each key it names: its answer (key, state, provider_id,
    error), GO (handed over, no answer) or IDLE (marked in flight, never handed over)."""

    issue: str
    run: int
    last: dict[str, tuple | str] = field(default_factory=dict)


def left_behind(state_dir: Path) -> Iterator[tuple[Path, Replay | None]]:
    """Journals in state_dir (a send that died left them), each read; None when unreadable."""
    for path in sorted(state_dir.glob(_PATTERN)):
        yield path, read(path)


def read(path: Path) -> Replay | None:
    """The steps in a journal, in order; a line cut short by the crash ends them."""
    try:
        written = path.read_bytes().partition(b"\0")[0]  # the rest of the file is unused
    except OSError:
        return None
    replay = None
    for raw in written.split(b"\n")[:-1]:  # what follows the last newline was cut short
        try:
            line = json.loads(raw)
        except ValueError:
            return replay
        if replay is None:
            if line[:2] != ["journal", _FORMAT]:
                return None
            replay = Replay(line[2], line[3])
        elif line[0] == "open":  # ["open", batch, key, ...]: as the ledger marks them
            replay.last.update(dict.fromkeys(line[2:], IDLE))
        elif line[0] == GO:
            replay.last.update(dict.fromkeys(line[2:], GO))
        else:  # ["done", key, state, provider_id, error]
            replay.last[line[1]] = tuple(line[1:])
    return replay
