"""Creating folders and files: private ones for anything holding addresses, and one clear
error when something is in the way."""

from __future__ import annotations

import os
from pathlib import Path

from newsletter.errors import OutputError

PRIVATE_FILE = 0o600  # lists, suppressions, the ledger, the event store, outbox messages
PRIVATE_FOLDER = 0o700  # folders that hold them and that the tool creates


def show(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def make_folder(folder: Path, *, private: bool = False) -> Path:
    """`mkdir -p folder`; folders it creates are 0700 when private; existing ones are left be."""
    if folder.is_dir():
        return folder
    missing = []
    for parent in (folder, *folder.parents):
        if parent.is_dir():
            break
        missing.append(parent)
    mode = PRIVATE_FOLDER if private else 0o777
    for path in reversed(missing):
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            if not path.is_dir():
                raise _in_the_way(path, folder) from None
        except NotADirectoryError:
            raise _in_the_way(path.parent, folder) from None
        except OSError as exc:
            raise OutputError(
                f"cannot create {show(folder)}/: {exc.strerror or exc}", where=show(path)
            ) from None
    return folder


def _in_the_way(obstacle: Path, folder: Path) -> OutputError:
    return OutputError(
        f"is a file, not a folder; cannot create {show(folder)}/ (move or remove the file)",
        where=show(obstacle),
    )


def create_private(path: Path) -> None:
    """Create path empty and 0600 unless it exists (SQLite then gives -wal/-shm that mode too)."""
    make_folder(path.parent, private=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    except OSError as exc:
        raise OutputError(f"cannot create: {exc.strerror or exc}", where=show(path)) from None
