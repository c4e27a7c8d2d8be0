"""What a send that died left behind: the per-issue send lock, and its journals applied."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from newsletter.sending import journal

if TYPE_CHECKING:
    from newsletter.sending.ledger import Ledger


def issue_lock(folder: Path, issue: str) -> FileLock | None:
    """The send lock of an issue, taken; None when a send (another process) holds it."""
    lock = FileLock(folder / f"send-{issue}.lock", thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def apply_journals(ledger: Ledger, issue: str | None = None) -> None:
    """Apply the journals of sends that died (journal.py): of `issue`, whose lock the caller
    holds, or of every issue that nobody is sending now."""
    if ledger.path is None:
        return
    folder = ledger.path.parent
    for path, replay in journal.left_behind(folder):
        if replay is None or (issue is not None and replay.issue != issue):
            continue  # a newer program's, or unreadable: left for it / for a person
        lock = issue_lock(folder, replay.issue) if issue is None else None
        if issue is None and lock is None:
            continue  # that send is alive: its journal is not done
        try:
            ledger.settle(replay)
            path.unlink(missing_ok=True)
        finally:
            if lock is not None:
                lock.release()
