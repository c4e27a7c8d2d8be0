"""No lost rows: concurrent writers in real processes, a writer killed mid-write, a failed write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from newsletter import subscribers as subs
from newsletter.errors import SubscriberError
from newsletter.subscribers.store import Writer

REPO = Path(__file__).resolve().parent.parent

# Each worker waits for the start file, then adds its own addresses while toggling a shared row.
WORKER = """
import sys, time
from pathlib import Path
from newsletter import subscribers as subs

folder, tag, count, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not start.exists():
    time.sleep(0.002)
for i in range(count):
    subs.add_subscriber(folder, "main", f"{tag}{i}@example.org", name=f"{tag} {i}")
    subs.set_status(folder, "main", "alan@example.com", "pending" if i % 2 else "unsubscribed")
"""

# A writer that stops (for good) at a chosen point of a rewrite, so the test can SIGKILL it there.
STALLING_WRITER = """
import os, sys, time
from pathlib import Path
from newsletter import subscribers as subs
from newsletter.subscribers.store import Writer

folder, marker, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def stall(*args):
    marker.write_text(point)
    time.sleep(120)

if point == "fsync":  # every row is in the temporary file, not yet flushed or renamed
    os.fsync = stall
else:  # half of the rows are written
    write = Writer.writerow
    def writerow(self, row):
        if row[0] == "grace@example.net":
            stall()
        write(self, row)
    Writer.writerow = writerow
subs.set_status(folder, "main", "ada@example.org", "unsubscribed")
"""


def python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO)


@pytest.fixture
def folder(workspace: Path) -> Path:
    return workspace / "subscribers"


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_two_processes_editing_one_list_both_keep_their_changes(folder, tmp_path):
    start = tmp_path / "start"
    workers = [python(WORKER, str(folder), tag, "40", str(start)) for tag in ("a", "b")]
    time.sleep(0.3)  # let both interpreters start, so they really overlap
    start.touch()
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    keys = [row.key for row in subs.iter_subscribers(folder / "main.csv")]
    assert len(keys) == len(set(keys)) == 3 + 80
    assert {f"{tag}{i}@example.org" for tag in "ab" for i in range(40)} <= set(keys)
    assert subs.validate(folder) == []
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize("point", ["rows", "fsync"])
def test_a_writer_killed_mid_write_leaves_the_old_file_and_frees_the_lock(
    folder, tmp_path, monkeypatch, point
):
    path = folder / "main.csv"
    before = path.read_bytes()
    marker = tmp_path / "stalled"
    writer = python(STALLING_WRITER, str(folder), str(marker), point)
    try:
        wait_for(marker)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert path.read_bytes() == before  # the old file, whole
    assert len(list(folder.glob(".main.csv.*.tmp"))) == 1  # the abandoned temporary file
    assert subs.list_names(folder) == ["main"]
    monkeypatch.setattr("newsletter.subscribers.store.LOCK_TIMEOUT", 5.0)
    assert subs.set_status(folder, "main", "ada@example.org", "unsubscribed")  # lock is free
    assert subs.count(folder, "main")["unsubscribed"] == 2


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(folder, monkeypatch):
    path = folder / "main.csv"
    before = path.read_bytes()
    write = Writer.writerow

    def full_disk(self, row):
        if row[0] == "grace@example.net":
            raise OSError(28, "No space left on device")
        write(self, row)

    monkeypatch.setattr(Writer, "writerow", full_disk)
    with pytest.raises(SubscriberError) as caught:
        subs.add_subscriber(folder, "main", "new@example.org")
    assert str(caught.value) == "subscribers/main.csv: cannot update: No space left on device"
    assert path.read_bytes() == before
    assert not list(folder.glob(".*.tmp"))


def test_an_interrupted_edit_leaves_the_old_file(folder, monkeypatch):
    path = folder / "main.csv"
    before = path.read_bytes()

    def interrupted(self, row):
        raise KeyboardInterrupt

    monkeypatch.setattr(Writer, "writerow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        subs.forget(folder, "ada@example.org")
    assert path.read_bytes() == before
    assert not list(folder.glob(".*.tmp"))


def test_a_list_locked_by_another_process_for_too_long_is_reported(folder, monkeypatch):
    monkeypatch.setattr("newsletter.subscribers.store.LOCK_TIMEOUT", 0.2)
    with FileLock(f"{folder / 'main.csv'}.lock"), pytest.raises(SubscriberError) as caught:
        subs.remove_subscriber(folder, "main", "ada@example.org")
    assert str(caught.value) == (
        "subscribers/main.csv: another process has held main.csv.lock for 0.2 s; try again"
    )
