"""The state folder's SQLite files, opened one way: private, WAL, a schema version, their own error."""

from __future__ import annotations

import os
import sqlite3
import stat
import time

import pytest

from newsletter.optouts import Journal, JournalError
from newsletter.sending.ledger import Ledger
from newsletter.web.events import EventStore, EventStoreError
from newsletter.web.requests import RequestStore, RequestStoreError


@pytest.fixture(autouse=True)
def normal_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


STORES = {
    "events": (lambda state: EventStore.for_workspace(state), "events.sqlite3", EventStoreError),
    "journal": (lambda state: Journal(state), "optouts.sqlite3", JournalError),
    "requests": (
        lambda state: RequestStore.for_workspace(state),
        "optin.sqlite3",
        RequestStoreError,
    ),
}


@pytest.mark.parametrize("store", STORES)
def test_each_store_is_a_private_wal_file_with_a_schema_version(tmp_path, store):
    opener, name, _ = STORES[store]
    state = tmp_path / ".newsletter"
    with opener(state):
        db = sqlite3.connect(state / name)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        db.close()
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.glob(f"{name}*")} == {
            name: 0o600,
            f"{name}-wal": 0o600,
            f"{name}-shm": 0o600,
        }
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


@pytest.mark.parametrize("store", STORES)
def test_each_store_refuses_a_schema_from_a_newer_version_with_its_own_error(tmp_path, store):
    opener, name, error = STORES[store]
    state = tmp_path / ".newsletter"
    state.mkdir()
    sqlite3.connect(state / name).execute("PRAGMA user_version = 2")
    with pytest.raises(error, match="has schema version 2, newer than this program's 1: upgrade"):
        opener(state)


def test_opt_in_requests_from_before_the_schema_version_still_open(tmp_path):
    state = tmp_path / ".newsletter"
    state.mkdir()
    old = sqlite3.connect(state / "optin.sqlite3")
    old.execute(
        "CREATE TABLE requests (list TEXT NOT NULL, address_id TEXT NOT NULL, "
        "request_id TEXT NOT NULL, row_status TEXT NOT NULL, row_updated TEXT NOT NULL, "
        "requested_at TEXT NOT NULL, confirmed_at TEXT, PRIMARY KEY (list, address_id))"
    )
    old.execute("INSERT INTO requests VALUES ('main', 'id1', 'r1', 'pending', 't', 't', NULL)")
    old.commit()
    old.close()
    with RequestStore.for_workspace(state) as store:
        found = store.get("main", "id1", "r1")
    assert found is not None and found.row_status == "pending"


def test_a_store_that_is_not_a_database_is_reported_by_name(tmp_path):
    state = tmp_path / ".newsletter"
    state.mkdir()
    (state / "optouts.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(JournalError, match="cannot open the opt-out journal"):
        Journal(state)


def test_the_in_memory_ledger_needs_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Ledger(None) as ledger:
        assert ledger.counts("issue") == {}
    assert list(tmp_path.iterdir()) == []


def test_writes_arriving_together_are_committed_together_each_once():
    from concurrent.futures import ThreadPoolExecutor

    from newsletter.db import GroupCommit

    batches: list[list[int]] = []

    def commit(items: list[int]) -> None:
        time.sleep(0.02)  # an fsync: what the others gather behind
        batches.append(list(items))

    group = GroupCommit(commit)
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(group.submit, range(200)))
    assert sorted(i for batch in batches for i in batch) == list(range(200))
    assert len(batches) < 50


def test_a_group_commit_hands_each_writer_its_own_items_result():
    from concurrent.futures import ThreadPoolExecutor

    from newsletter.db import GroupCommit

    def commit(items: list[int]) -> list[int]:
        time.sleep(0.02)
        return [i * 10 for i in items]

    group = GroupCommit(commit)
    with ThreadPoolExecutor(50) as pool:
        assert list(pool.map(group.submit, range(200))) == [i * 10 for i in range(200)]


def test_several_items_submitted_at_once_share_a_commit_and_get_their_own_results():
    from concurrent.futures import ThreadPoolExecutor

    from newsletter.db import GroupCommit

    batches: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        time.sleep(0.02)
        batches.append(list(items))
        return [i * 10 for i in items]

    group = GroupCommit(commit)
    chunks = [list(range(start, start + 20)) for start in range(0, 200, 20)]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(group.submit_many, chunks))
    assert results == [[i * 10 for i in chunk] for chunk in chunks]
    for chunk in chunks:  # a chunk is never split across commits
        assert any(
            chunk == batch[batch.index(chunk[0]) : batch.index(chunk[0]) + 20]
            for batch in batches
            if chunk[0] in batch
        )
    assert GroupCommit(lambda items: None).submit_many(["a", "b"]) == [None, None]


def test_a_failed_group_commit_fails_every_write_in_it_and_only_those():
    from newsletter.db import GroupCommit

    def commit(items: list[str]) -> None:
        if "bad" in items:
            raise OSError("disk full")

    group = GroupCommit(commit)
    with pytest.raises(OSError, match="disk full"):
        group.submit("bad")
    group.submit("good")  # the next batch commits


def test_concurrent_unsubscribes_are_all_kept_in_the_journal(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    journal = Journal(tmp_path)
    with ThreadPoolExecutor(40) as pool:
        list(
            pool.map(lambda i: journal.unsubscribe("main", f"id{i}", None, "one-click"), range(120))
        )
    assert len(journal.unsubscribes("main")) == 120
