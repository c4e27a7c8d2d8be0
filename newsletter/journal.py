"""A send worker's write-ahead journal: each step of a batch, one line, as it happens.

The ledger marks a whole batch in flight in one statement and records its outcomes in one
transaction once the batch is over: an SQLite commit per message cost a send through a
fast SMTP server an eighth of its speed. In between, each worker appends a line per step
(the messages about to be handed over, then each answer) to a journal of its own: a plain
write, no fsync, because a `kill -9` loses nothing the kernel already has. When a send dies,
the ledger applies its journals before anything reads it (Ledger opens, claims, plans), so
only the message a connection was handing over is left in flight (unknown). A power cut
is out of scope: it can lose the last lines, whose messages then stay in flight and count
as unknown, never as sent: what the ledger promised without a journal.

One file per worker, `.newsletter/send-<issue>.<run>-<worker>.journal`, 0600 (it names
recipients), emptied once its batch is in the ledger and removed when the worker ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.errors import SendError
from newsletter.files import PRIVATE_FILE, show

_FORMAT = 1
_PATTERN = "send-*.journal"
_OPEN = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
GO = "go"  # the last line about a key: it was being handed over, no answer yet


class Journal:
    """The append-only journal of one worker of one run."""

    def __init__(self, state_dir: Path, issue: str, run: int, worker: int) -> None:
        self.path = state_dir / f"send-{issue}.{run}-{worker}.journal"
        try:
            self._fd = os.open(self.path, _OPEN, PRIVATE_FILE)
        except OSError as exc:
            raise SendError(
                f"cannot create the send journal: {exc.strerror or exc}", where=show(self.path)
            ) from None
        self.append([["journal", _FORMAT, issue, run]])
        self._header = os.fstat(self._fd).st_size
        self._empty = True  # of steps

    def append(self, lines: list[list]) -> None:
        """Write lines through to the kernel (no fsync: see the module docstring)."""
        data = "".join([json.dumps(line, ensure_ascii=False) + "\n" for line in lines]).encode()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            raise SendError(
                f"cannot write the send journal: {exc.strerror or exc}", where=show(self.path)
            ) from None
        self._empty = False

    def clear(self) -> None:
        """Forget the steps written so far: their batch is in the ledger now."""
        if not self._empty:
            os.ftruncate(self._fd, self._header)
            self._empty = True

    def close(self) -> None:
        """Close; remove the file unless it holds steps the ledger may not have."""
        os.close(self._fd)
        if self._empty:
            self.path.unlink(missing_ok=True)


@dataclass
class Replay:
    """What a journal says happened: per key its answer (key, state, provider_id, error) or
    GO (handed over, unanswered), and the batches it was kept for."""

    issue: str
    run: int
    batches: set[int] = field(default_factory=set)
    last: dict[str, tuple | str] = field(default_factory=dict)


def left_behind(state_dir: Path) -> Iterator[tuple[Path, Replay | None]]:
    """Journals in state_dir (a send that died left them), each read; None when unreadable."""
    for path in sorted(state_dir.glob(_PATTERN)):
        yield path, read(path)


def read(path: Path) -> Replay | None:
    """The steps in a journal, in order; a line cut short by the crash ends it."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return None
    replay = None
    for raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:
            break  # the last, partial line
        if replay is None:
            if line[:2] != ["journal", _FORMAT]:
                return None
            replay = Replay(line[2], line[3])
        elif line[0] == "open":
            replay.batches.add(line[1])
        elif line[0] == GO:
            replay.last.update(dict.fromkeys(line[2:], GO))
        else:  # ["done", key, state, provider_id, error]
            replay.last[line[1]] = tuple(line[1:])
    return replay
